package barrier

import (
	"fmt"
	"slices"
	"strconv"
)

// Limits and defaults of Config.
const (
	// MaxInputs is the largest number of inputs an Aligner accepts.
	MaxInputs = 1 << 16
	// DefaultMaxHeldItems is used when Config.MaxHeldItems is 0.
	DefaultMaxHeldItems = 1 << 16
	// DefaultMaxPendingAborts is used when Config.MaxPendingAborts is 0.
	DefaultMaxPendingAborts = 64
)

// Config configures an Aligner.
type Config struct {
	// Inputs is the number of inputs (upstream channels), at least 1.
	Inputs int
	// Mode is ExactlyOnce (aligned) or AtLeastOnce (counting only).
	Mode Mode
	// MaxHeldBytes bounds the sizes (as passed to Data) of the records held
	// during an alignment. When holding one more record would pass it, the
	// checkpoint being aligned is aborted and everything is released.
	// Required (> 0) in ExactlyOnce mode; unused in AtLeastOnce mode.
	MaxHeldBytes int64
	// MaxHeldItems bounds the number of records (Data calls) held during an
	// alignment, like MaxHeldBytes. 0 means DefaultMaxHeldItems.
	MaxHeldItems int
	// MaxPendingAborts bounds how many coordinator aborts of checkpoints
	// whose barriers have not arrived yet are remembered. When one more
	// arrives, every checkpoint up to the oldest remembered one is given up.
	// 0 means DefaultMaxPendingAborts.
	MaxPendingAborts int
}

// Stats counts what an Aligner did.
type Stats struct {
	Completed      uint64 // checkpoints snapshotted
	Subsumed       uint64 // given up because a newer barrier arrived
	BufferFull     uint64 // given up because the hold buffer was full
	Aborted        uint64 // stopped by Abort while aligning
	IgnoredBarrier uint64 // stale barriers, and barriers of aborted checkpoints
	Held           uint64 // records held (Data calls)
}

// Aligner is the barrier alignment state machine of one operator subtask.
// It is a pure core: it owns no goroutine, reads no clock and does no I/O.
// The operator feeds it the events of its inputs in arrival order and
// carries out the returned actions in order. It is not safe for concurrent
// use.
//
// The slice returned by each method is owned by the Aligner and is valid
// only until the next method call; copy what must outlive it.
type Aligner[T any] struct {
	cfg Config

	aligning bool
	cur      CheckpointID // checkpoint being aligned, when aligning
	// passed: every checkpoint id <= passed is over for this aligner
	// (completed, given up, or older than one that was started).
	passed  CheckpointID
	arrived []bool // arrived[i]: input i delivered barrier cur
	ended   []bool
	nEnded  int
	// lastBarrier[i]: the highest barrier id input i delivered.
	lastBarrier []CheckpointID
	// pendingAborts: sorted ids > passed (and > cur) that the coordinator
	// aborted before their barriers started an alignment here.
	pendingAborts []CheckpointID

	held      []heldItem[T] // arrival order across inputs
	heldBytes int64

	stats Stats
	out   []Action[T]
}

type heldItem[T any] struct {
	input int
	item  T
	size  int64
}

// New returns an Aligner for cfg.
func New[T any](cfg Config) (*Aligner[T], error) {
	if cfg.Inputs < 1 || cfg.Inputs > MaxInputs {
		return nil, fmt.Errorf("%w: inputs is %d, must be between 1 and %d", ErrInvalidConfig, cfg.Inputs, MaxInputs)
	}
	switch cfg.Mode {
	case ExactlyOnce:
		if cfg.MaxHeldBytes < 1 {
			return nil, fmt.Errorf("%w: max held bytes is %d, must be at least 1 in exactly-once mode", ErrInvalidConfig, cfg.MaxHeldBytes)
		}
	case AtLeastOnce:
		if cfg.MaxHeldBytes < 0 {
			return nil, fmt.Errorf("%w: max held bytes is %d, must not be negative", ErrInvalidConfig, cfg.MaxHeldBytes)
		}
	default:
		return nil, fmt.Errorf("%w: mode %v: use ExactlyOnce or AtLeastOnce", ErrInvalidConfig, cfg.Mode)
	}
	if cfg.MaxHeldItems < 0 {
		return nil, fmt.Errorf("%w: max held items is %d, must not be negative", ErrInvalidConfig, cfg.MaxHeldItems)
	}
	if cfg.MaxHeldItems == 0 {
		cfg.MaxHeldItems = DefaultMaxHeldItems
	}
	if cfg.MaxPendingAborts < 0 {
		return nil, fmt.Errorf("%w: max pending aborts is %d, must not be negative", ErrInvalidConfig, cfg.MaxPendingAborts)
	}
	if cfg.MaxPendingAborts == 0 {
		cfg.MaxPendingAborts = DefaultMaxPendingAborts
	}
	return &Aligner[T]{
		cfg:         cfg,
		arrived:     make([]bool, cfg.Inputs),
		ended:       make([]bool, cfg.Inputs),
		lastBarrier: make([]CheckpointID, cfg.Inputs),
	}, nil
}

// Config returns the configuration, with defaults filled in.
func (a *Aligner[T]) Config() Config { return a.cfg }

// Aligning returns the checkpoint being aligned (in AtLeastOnce mode: whose
// barriers are being counted), if any; (0, false) otherwise.
func (a *Aligner[T]) Aligning() (CheckpointID, bool) {
	if !a.aligning {
		return 0, false
	}
	return a.cur, true
}

// Blocked reports whether records from input are being held: ExactlyOnce
// mode, a checkpoint is being aligned and input delivered its barrier.
// It is false for an input out of range.
func (a *Aligner[T]) Blocked(input int) bool {
	if input < 0 || input >= a.cfg.Inputs {
		return false
	}
	return a.cfg.Mode == ExactlyOnce && a.aligning && a.arrived[input] && !a.ended[input]
}

// HeldBytes returns the total size of the held records.
func (a *Aligner[T]) HeldBytes() int64 { return a.heldBytes }

// HeldItems returns the number of held records.
func (a *Aligner[T]) HeldItems() int { return len(a.held) }

// Ended reports whether input has ended.
func (a *Aligner[T]) Ended(input int) bool {
	return input >= 0 && input < a.cfg.Inputs && a.ended[input]
}

// Stats returns the counters.
func (a *Aligner[T]) Stats() Stats { return a.stats }

// reset starts a new output batch. It drops the references the previous
// batch held so that released items can be collected.
func (a *Aligner[T]) reset() {
	clear(a.out)
	a.out = a.out[:0]
}

func (a *Aligner[T]) emit(kind ActionKind, id CheckpointID, reason string) {
	a.out = append(a.out, Action[T]{Kind: kind, ID: id, Input: -1, Reason: reason})
}

func (a *Aligner[T]) protocolError(input int, id CheckpointID, err error) []Action[T] {
	a.out = append(a.out, Action[T]{Kind: Error, ID: id, Input: input, Reason: err.Error(), Err: err})
	return a.out
}

// checkInput returns a non-nil error when input is unusable. what names the
// event; for a barrier its id is added.
func (a *Aligner[T]) checkInput(input int, what string, id CheckpointID) error {
	if (input >= 0 && input < a.cfg.Inputs) && !a.ended[input] {
		return nil
	}
	if what == "barrier" {
		what = "barrier " + strconv.FormatUint(uint64(id), 10)
	}
	if input < 0 || input >= a.cfg.Inputs {
		return fmt.Errorf("%w: %s on input %d, inputs are 0..%d", ErrInputRange, what, input, a.cfg.Inputs-1)
	}
	if a.ended[input] {
		return fmt.Errorf("%w: %s on input %d after its end", ErrInputEnded, what, input)
	}
	return nil
}

// Data handles a record batch item of size bytes from input. If the input
// is blocked the item is held and no action is returned; otherwise the
// result is one Process action for it. When holding it would pass a limit,
// the checkpoint being aligned is given up: AbortCheckpoint, then Process
// for every held item and for this one, in arrival order.
func (a *Aligner[T]) Data(input int, item T, size int64) []Action[T] {
	a.reset()
	if err := a.checkInput(input, "data", 0); err != nil {
		return a.protocolError(input, 0, err)
	}
	if size < 0 {
		return a.protocolError(input, 0, fmt.Errorf("%w: data on input %d has size %d", ErrNegativeSize, input, size))
	}
	if a.Blocked(input) {
		if len(a.held) < a.cfg.MaxHeldItems && size <= a.cfg.MaxHeldBytes-a.heldBytes {
			a.held = append(a.held, heldItem[T]{input: input, item: item, size: size})
			a.heldBytes += size
			a.stats.Held++
			return a.out
		}
		a.stats.BufferFull++
		a.giveUp(ReasonBufferFull)
	}
	a.out = append(a.out, Action[T]{Kind: Process, Input: input, Item: item})
	return a.out
}

// Barrier handles barrier id from input. See the package documentation for
// what it starts, completes, subsumes or ignores. A barrier whose id is not
// greater than the last one the input delivered yields an Error action.
func (a *Aligner[T]) Barrier(input int, id CheckpointID) []Action[T] {
	a.reset()
	if err := a.checkInput(input, "barrier", id); err != nil {
		return a.protocolError(input, id, err)
	}
	if id == 0 {
		return a.protocolError(input, id, fmt.Errorf("%w: input %d delivered barrier 0; ids start at 1", ErrBarrierOrder, input))
	}
	if last := a.lastBarrier[input]; id <= last {
		return a.protocolError(input, id, fmt.Errorf("%w: input %d delivered barrier %d after barrier %d", ErrBarrierOrder, input, id, last))
	}
	a.lastBarrier[input] = id
	switch {
	case id <= a.passed, a.pendingAborted(id):
		a.stats.IgnoredBarrier++
		return a.out
	case a.aligning && id == a.cur:
		a.arrived[input] = true
		a.maybeComplete()
		return a.out
	case a.aligning: // id > a.cur
		a.stats.Subsumed++
		a.giveUp(ReasonSubsumedPrefix + strconv.FormatUint(uint64(id), 10))
	}
	a.start(id, input)
	return a.out
}

// EndOfInput handles the end of input. An ended input counts as having
// delivered every barrier; when it was the last input the alignment waited
// for, the checkpoint completes. When every input has ended, AllEnded is
// emitted (last).
func (a *Aligner[T]) EndOfInput(input int) []Action[T] {
	a.reset()
	if err := a.checkInput(input, "end", 0); err != nil {
		return a.protocolError(input, 0, err)
	}
	a.ended[input] = true
	a.nEnded++
	if a.aligning {
		a.maybeComplete()
	}
	if a.nEnded == a.cfg.Inputs {
		a.emit(AllEnded, 0, "")
	}
	return a.out
}

// Abort handles the coordinator's abort of checkpoint id. If id is being
// aligned, the alignment stops and the held items are released (Process
// actions, in arrival order); nothing else is emitted. Barriers of id that
// arrive later are ignored. Aborting a checkpoint that is over is a no-op.
func (a *Aligner[T]) Abort(id CheckpointID) []Action[T] {
	a.reset()
	switch {
	case id <= a.passed:
	case a.aligning && id == a.cur:
		a.stats.Aborted++
		a.finish()
	default: // a future checkpoint
		i, found := slices.BinarySearch(a.pendingAborts, id)
		if found {
			break
		}
		a.pendingAborts = slices.Insert(a.pendingAborts, i, id)
		if len(a.pendingAborts) > a.cfg.MaxPendingAborts {
			// Forget the oldest pending abort by giving up every checkpoint
			// up to it: never snapshotting is always safe.
			oldest := a.pendingAborts[0]
			if a.aligning { // a.cur < oldest
				a.stats.Aborted++
				a.giveUp(ReasonTooManyAborts)
			}
			a.setPassed(oldest)
		}
	}
	return a.out
}

func (a *Aligner[T]) pendingAborted(id CheckpointID) bool {
	_, found := slices.BinarySearch(a.pendingAborts, id)
	return found
}

// setPassed raises passed and drops the pending aborts it covers.
func (a *Aligner[T]) setPassed(id CheckpointID) {
	if id <= a.passed {
		return
	}
	a.passed = id
	i, _ := slices.BinarySearch(a.pendingAborts, id+1)
	a.pendingAborts = slices.Delete(a.pendingAborts, 0, i)
}

// start begins aligning id, whose first barrier came from input.
func (a *Aligner[T]) start(id CheckpointID, input int) {
	a.aligning = true
	a.cur = id
	a.setPassed(id - 1)
	clear(a.arrived)
	a.arrived[input] = true
	a.maybeComplete()
}

// maybeComplete completes the alignment when every input delivered the
// barrier or ended.
func (a *Aligner[T]) maybeComplete() {
	for i, arrived := range a.arrived {
		if !arrived && !a.ended[i] {
			return
		}
	}
	a.stats.Completed++
	a.emit(Snapshot, a.cur, "")
	a.emit(ForwardBarrier, a.cur, "")
	a.finish()
}

// giveUp abandons the alignment of a.cur with an AbortCheckpoint action.
func (a *Aligner[T]) giveUp(reason string) {
	a.emit(AbortCheckpoint, a.cur, reason)
	a.finish()
}

// finish ends the alignment of a.cur and releases the held items.
func (a *Aligner[T]) finish() {
	for _, h := range a.held {
		a.out = append(a.out, Action[T]{Kind: Process, Input: h.input, Item: h.item})
	}
	clear(a.held)
	a.held = a.held[:0]
	a.heldBytes = 0
	a.aligning = false
	a.setPassed(a.cur)
	clear(a.arrived)
}
