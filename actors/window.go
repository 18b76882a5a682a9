package actors

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirstream/weir/barrier"
)

// WindowConfig configures one subtask of the keyed tumbling window operator.
type WindowConfig struct {
	Task   string
	Index  int
	Inputs int
	// OutIndex is this subtask's index on its targets' input side.
	OutIndex int
	// SizeMillis is the window size in milliseconds.
	SizeMillis   int64
	Targets      []*actor.PID
	Credits      int
	BatchRecords int
	// Checkpoint is nil when checkpoints are off.
	Checkpoint *Checkpointing
	Metrics    *Metrics
	Log        *slog.Logger
}

// accumulator is the state of one key in one window. With checkpoints on
// it is copy-on-write across captures: one whose epoch is older than the
// window's is read by the snapshot worker and never changed again; the
// actor replaces it with a copy before changing it.
type accumulator struct {
	count int64
	sum   float64
	epoch uint64
}

type windowKey struct {
	start int64
	key   string
}

// Window is the keyed event-time tumbling window operator: count and sum
// per key and window, fired when the combined watermark passes the window's
// last millisecond. Barriers are aligned across its inputs by a
// barrier.Aligner; its keyed state is written to its Pebble store at each
// snapshot (only what changed since the previous one).
type Window struct {
	cfg    WindowConfig
	out    *Output
	inputs []inputState
	wm     int64
	// windows maps a window start to the accumulators of its keys.
	windows map[int64]map[string]*accumulator
	// dirty holds the window keys changed or fired since the last snapshot,
	// with their accumulator (nil once fired: the entry is deleted).
	dirty map[windowKey]*accumulator
	// epoch counts captures; see accumulator.
	epoch   uint64
	aligner *barrier.Aligner[any]
	stash   []any // input held while the output is blocked
	done    bool
	// triggered is the newest checkpoint triggered, lastSnap the newest
	// snapshotted: a finished window snapshots the ones it missed.
	triggered, lastSnap uint64
	failed              bool
}

type inputState struct {
	wm    int64
	idle  bool
	ended bool
}

// NewWindow returns the producer of a window operator actor.
func NewWindow(cfg WindowConfig) actor.Producer {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = &Metrics{}
	}
	return func() actor.Actor {
		w := &Window{cfg: cfg, wm: math.MinInt64, windows: map[int64]map[string]*accumulator{}, dirty: map[windowKey]*accumulator{}}
		w.inputs = make([]inputState, cfg.Inputs)
		for i := range w.inputs {
			w.inputs[i].wm = math.MinInt64
		}
		return w
	}
}

// Receive implements actor.Actor.
func (w *Window) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		w.out = NewOutput(w.cfg.Targets, w.cfg.OutIndex, ctx.Self(), w.cfg.Credits, w.cfg.BatchRecords)
		if err := w.start(); err != nil {
			w.fail(ctx, err)
		}
	case *Credit:
		w.out.OnCredit(ctx, m)
		w.unstash(ctx)
	case *Batch, *Watermark, *Idle, *EndOfInput, *Barrier:
		if w.out.Blocked() || len(w.stash) > 0 {
			w.stash = append(w.stash, m)
			return
		}
		w.input(ctx, m)
	case *CheckpointAbort:
		w.run(ctx, w.aligner.Abort(barrier.CheckpointID(m.ID)))
	case *TriggerCheckpoint:
		// Barriers come in band; a finished window gets no more of them
		// and acks later checkpoints with its final state.
		if m.ID > w.triggered {
			w.triggered = m.ID
		}
		w.snapshotFinished(ctx)
	case *CheckpointComplete:
	case *actor.Stopping:
		if err := w.cfg.Checkpoint.close(); err != nil {
			w.cfg.Log.Warn("close state store", "task", w.cfg.Task, "err", err)
		}
	}
}

func (w *Window) fail(ctx actor.Context, err error) {
	if !w.failed {
		w.failed = true
		ctx.Send(ctx.Parent(), &Failed{Task: w.cfg.Task, Err: err})
	}
}

func (w *Window) start() error {
	mode := barrier.AtLeastOnce
	var maxHeld int64
	if cp := w.cfg.Checkpoint; cp.Enabled() && cp.ExactlyOnce {
		mode = barrier.ExactlyOnce
		maxHeld = cp.MaxHeldBytes
		if maxHeld <= 0 {
			maxHeld = 64 << 20
		}
	}
	a, err := barrier.New[any](barrier.Config{Inputs: w.cfg.Inputs, Mode: mode, MaxHeldBytes: maxHeld})
	if err != nil {
		return fmt.Errorf("window %s: %w", w.cfg.Task, err)
	}
	w.aligner = a
	return w.restore()
}

func (w *Window) unstash(ctx actor.Context) {
	for len(w.stash) > 0 && !w.out.Blocked() {
		m := w.stash[0]
		w.stash[0] = nil
		w.stash = w.stash[1:]
		w.input(ctx, m)
	}
}

// input feeds one message of an input to the aligner.
func (w *Window) input(ctx actor.Context, m any) {
	if w.failed {
		return
	}
	switch m := m.(type) {
	case *Batch:
		w.run(ctx, w.aligner.Data(m.In, m, int64(len(m.Records))*48))
	case *Watermark:
		w.run(ctx, w.aligner.Data(m.In, m, 0))
	case *Idle:
		w.run(ctx, w.aligner.Data(m.In, m, 0))
	case *EndOfInput:
		// Held in order behind the input's records while it is blocked.
		w.run(ctx, w.aligner.Data(m.In, m, 0))
	case *Barrier:
		w.run(ctx, w.aligner.Barrier(m.In, barrier.CheckpointID(m.ID)))
	}
}

// run carries out the aligner's actions in order. Processing an end of
// input feeds the aligner again; its actions run in turn.
func (w *Window) run(ctx actor.Context, acts []barrier.Action[any]) {
	queue := slices.Clone(acts)
	for len(queue) > 0 && !w.failed {
		a := queue[0]
		queue = queue[1:]
		switch a.Kind {
		case barrier.Process:
			if eoi, ok := a.Item.(*EndOfInput); ok {
				w.endInput(eoi.In)
				queue = append(slices.Clone(w.aligner.EndOfInput(eoi.In)), queue...)
				continue
			}
			w.process(ctx, a.Item)
		case barrier.Snapshot:
			w.snapshot(ctx, uint64(a.ID))
		case barrier.ForwardBarrier:
			id := uint64(a.ID)
			w.out.Broadcast(ctx, func(in int) any { return &Barrier{In: in, ID: id} })
		case barrier.AbortCheckpoint:
			ctx.Send(ctx.Parent(), &CheckpointDecline{Task: w.cfg.Task, ID: uint64(a.ID), Reason: a.Reason})
		case barrier.AllEnded:
			w.fire(ctx, math.MaxInt64)
			w.out.Broadcast(ctx, func(in int) any { return &EndOfInput{In: in} })
			w.done = true
			w.snapshotFinished(ctx)
		case barrier.Error:
			w.fail(ctx, fmt.Errorf("window %s: %v", w.cfg.Task, a.Err))
		}
	}
}

func (w *Window) endInput(in int) {
	w.inputs[in].ended = true
}

func (w *Window) process(ctx actor.Context, item any) {
	switch m := item.(type) {
	case *Batch:
		w.add(m.Records)
		ctx.Send(m.From, &Credit{Out: m.Out, N: 1})
	case *Watermark:
		in := &w.inputs[m.In]
		in.idle = false
		if m.TS > in.wm {
			in.wm = m.TS
		}
		w.advance(ctx)
	case *Idle:
		w.inputs[m.In].idle = true
		w.advance(ctx)
	}
}

func (w *Window) add(recs []Record) {
	size := w.cfg.SizeMillis
	track := w.cfg.Checkpoint.Enabled()
	for i := range recs {
		r := &recs[i]
		start := r.TS - r.TS%size
		if start+size-1 <= w.wm {
			w.cfg.Metrics.LateDropped.Add(1)
			continue
		}
		keys := w.windows[start]
		if keys == nil {
			keys = map[string]*accumulator{}
			w.windows[start] = keys
		}
		a := keys[r.Key]
		if a == nil {
			a = &accumulator{epoch: w.epoch}
			keys[r.Key] = a
		} else if a.epoch != w.epoch {
			// Captured by a snapshot in flight: change a copy.
			a = &accumulator{count: a.count, sum: a.sum, epoch: w.epoch}
			keys[r.Key] = a
		}
		a.count++
		a.sum += r.Val
		if track {
			w.dirty[windowKey{start, r.Key}] = a
		}
	}
}

// advance recomputes the combined watermark: the minimum over inputs that
// are neither idle nor ended. All idle: no progress.
func (w *Window) advance(ctx actor.Context) {
	wm := int64(math.MaxInt64)
	active := 0
	for _, in := range w.inputs {
		if in.idle || in.ended {
			continue
		}
		active++
		if in.wm < wm {
			wm = in.wm
		}
	}
	if active == 0 || wm <= w.wm {
		return
	}
	w.fire(ctx, wm)
}

// fire emits and forgets every window whose last millisecond is <= wm.
func (w *Window) fire(ctx actor.Context, wm int64) {
	if wm > w.wm {
		w.wm = wm
	}
	size := w.cfg.SizeMillis
	track := w.cfg.Checkpoint.Enabled()
	// Results go to the first target: window subtask i feeds sink subtask
	// i alone (a forward edge).
	const t = 0
	for start, keys := range w.windows {
		if start+size-1 > wm {
			continue
		}
		for k, a := range keys {
			w.out.Emit(ctx, t, Record{Key: k, TS: start, Val: a.sum, Count: a.count})
			if track {
				w.dirty[windowKey{start, k}] = nil
			}
		}
		delete(w.windows, start)
	}
	w.out.Flush(ctx)
	if wm != math.MaxInt64 {
		out := wm
		w.out.Broadcast(ctx, func(in int) any { return &Watermark{In: in, TS: out} })
	}
}

// windowOpState is the window operator's state beside its keyed state.
type windowOpState struct {
	Watermark int64 `json:"watermark"`
	SizeMs    int64 `json:"sizeMs"`
}

// Keyed state layout in the store: key group (2 bytes, big endian), window
// start (8 bytes, big endian), key; value: count (8 bytes) and sum (8 bytes,
// IEEE 754 bits).

// snapshot captures what changed since the last snapshot and hands it to
// the snapshot worker. The capture is O(1): the set of changed entries is
// handed over whole (a new one starts), and the accumulators in it are
// never changed again (see accumulator), so the worker encodes them while
// processing goes on.
func (w *Window) snapshot(ctx actor.Context, id uint64) {
	cp := w.cfg.Checkpoint
	if !cp.Enabled() {
		return
	}
	entries, op := w.captureState()
	w.lastSnap = id
	cp.snapshot(ctx, w.cfg.Task, id, entries, op)
}

// snapshotFinished snapshots the newest triggered checkpoint once the
// window has finished, if no barrier brought it.
func (w *Window) snapshotFinished(ctx actor.Context) {
	if w.done && !w.failed && w.triggered > w.lastSnap {
		w.snapshot(ctx, w.triggered)
	}
}

// captureState ends the current epoch: it returns a function that encodes
// the entries changed in it (safe to call on another goroutine) and the
// operator state.
func (w *Window) captureState() (func() ([]StateEntry, error), []byte) {
	dirty := w.dirty
	w.dirty = map[windowKey]*accumulator{}
	w.epoch++
	op, _ := json.Marshal(windowOpState{Watermark: w.wm, SizeMs: w.cfg.SizeMillis})
	return func() ([]StateEntry, error) { return encodeEntries(dirty), nil }, op
}

// encodeEntries encodes changed entries into one arena; a nil accumulator
// (a fired window) deletes its entry.
func encodeEntries(dirty map[windowKey]*accumulator) []StateEntry {
	size := 0
	for wk := range dirty {
		size += 10 + len(wk.key) + 16
	}
	arena := make([]byte, 0, size)
	entries := make([]StateEntry, 0, len(dirty))
	for wk, a := range dirty {
		start := len(arena)
		arena = binary.BigEndian.AppendUint16(arena, uint16(KeyGroup(wk.key)))
		arena = binary.BigEndian.AppendUint64(arena, uint64(wk.start))
		arena = append(arena, wk.key...)
		e := StateEntry{Key: arena[start:len(arena):len(arena)]}
		if a != nil {
			vs := len(arena)
			arena = binary.BigEndian.AppendUint64(arena, uint64(a.count))
			arena = binary.BigEndian.AppendUint64(arena, math.Float64bits(a.sum))
			e.Value = arena[vs:len(arena):len(arena)]
		}
		entries = append(entries, e)
	}
	return entries
}

// restore rebuilds the windows from the restored store.
func (w *Window) restore() error {
	cp := w.cfg.Checkpoint
	if !cp.Enabled() || cp.OpState == nil {
		return nil
	}
	var op windowOpState
	if err := json.Unmarshal(cp.OpState, &op); err != nil {
		return fmt.Errorf("window %s: state of checkpoint %d is unreadable: %w", w.cfg.Task, cp.RestoredFrom, err)
	}
	if op.SizeMs != w.cfg.SizeMillis {
		return fmt.Errorf("window %s: checkpoint %d has %dms windows, the job has %dms; use a fresh checkpoint.dir to change window.size",
			w.cfg.Task, cp.RestoredFrom, op.SizeMs, w.cfg.SizeMillis)
	}
	w.wm = op.Watermark
	it, err := cp.Store.NewIter(nil)
	if err != nil {
		return fmt.Errorf("window %s: read restored state: %w", w.cfg.Task, err)
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		v, err := it.Value()
		if err != nil {
			return fmt.Errorf("window %s: read restored state: %w", w.cfg.Task, err)
		}
		if len(k) < 10 || len(v) != 16 {
			return fmt.Errorf("window %s: checkpoint %d holds a malformed state entry (key %d bytes, value %d bytes)", w.cfg.Task, cp.RestoredFrom, len(k), len(v))
		}
		start := int64(binary.BigEndian.Uint64(k[2:10]))
		key := string(k[10:])
		keys := w.windows[start]
		if keys == nil {
			keys = map[string]*accumulator{}
			w.windows[start] = keys
		}
		keys[key] = &accumulator{count: int64(binary.BigEndian.Uint64(v[:8])), sum: math.Float64frombits(binary.BigEndian.Uint64(v[8:]))}
		n++
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("window %s: read restored state: %w", w.cfg.Task, err)
	}
	w.cfg.Log.Info("window state restored", "task", w.cfg.Task, "checkpoint", cp.RestoredFrom, "entries", n, "watermark", w.wm)
	return nil
}
