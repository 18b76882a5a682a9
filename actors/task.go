package actors

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirstream/weir/barrier"
	"github.com/weirstream/weir/operator"
)

// TaskConfig configures one subtask of a dataflow operator run by the
// generic task actor.
type TaskConfig struct {
	Task  string
	Index int
	// Inputs is the number of senders; InputOf maps a sender (Batch.In) to
	// the operator's input number (nil: every sender is input 0).
	Inputs  int
	InputOf []int
	// Targets are the downstream subtasks; InputIndexes is this task's
	// index on each target's input side.
	Targets      []*actor.PID
	InputIndexes []int
	Credits      int
	// NewOperator builds the operator; send hands a full typed batch to
	// target t (see Output.EmitData). flush, when not nil, sends what the
	// operator's emitters hold; the task calls it after every operator call.
	NewOperator func(send func(t int, data any, n int)) (op operator.Operator, flush func(), err error)
	// Checkpoint is nil when checkpoints are off.
	Checkpoint *Checkpointing
	Metrics    *Metrics
	// Stats, when set, receives the subtask's figures (see TaskStats).
	Stats *TaskStats
	Log   *slog.Logger
	// Now is the processing-time clock (default time.Now).
	Now func() time.Time
}

type inputState struct {
	wm    int64
	idle  bool
	ended bool
}

// procTick asks the task to fire the processing-time timers due by now.
type procTick struct{ at int64 }

// Task is the one actor shell that runs any operator.Operator: it aligns
// barriers over its inputs (barrier.Aligner), combines their watermarks,
// holds input while its output waits for credits, fires processing-time
// timers and hands snapshots to the snapshot worker. The operator sees
// batches, watermarks and end of input, one call at a time.
type Task struct {
	cfg     TaskConfig
	op      operator.Operator
	flush   func()
	out     *Output
	ctx     actor.Context // the context of the message being handled
	inputs  []inputState
	wm      int64
	idleOut bool
	aligner *barrier.Aligner[any]
	stash   []any
	done    bool
	failed  bool
	// triggered is the newest checkpoint triggered, lastSnap the newest
	// snapshotted: a finished task snapshots the ones it missed.
	triggered, lastSnap uint64
	// procAt is the processing time a procTick is scheduled for (0: none).
	procAt int64
	timer  *time.Timer
}

// NewTask returns the producer of a task actor.
func NewTask(cfg TaskConfig) actor.Producer {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = &Metrics{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Stats = cfg.Stats.orNew()
	return func() actor.Actor {
		t := &Task{cfg: cfg, wm: math.MinInt64}
		t.inputs = make([]inputState, cfg.Inputs)
		for i := range t.inputs {
			t.inputs[i].wm = math.MinInt64
		}
		return t
	}
}

// Receive implements actor.Actor.
func (t *Task) Receive(ctx actor.Context) {
	t.ctx = ctx
	switch m := ctx.Message().(type) {
	case *actor.Started:
		t.out = NewOutput(t.cfg.Targets, 0, ctx.Self(), t.cfg.Credits)
		if t.cfg.InputIndexes != nil {
			t.out.SetInputIndexes(t.cfg.InputIndexes)
		}
		t.out.SetStats(t.cfg.Stats)
		if err := t.start(); err != nil {
			t.fail(err)
			return
		}
		t.afterCall()
	case *Credit:
		t.out.OnCredit(ctx, m)
		t.unstash()
	case *Batch, *Watermark, *Idle, *EndOfInput, *Barrier:
		if t.out.Blocked() || len(t.stash) > 0 {
			t.stash = append(t.stash, m)
			return
		}
		t.input(m)
	case *procTick:
		if m.at == t.procAt {
			t.procAt = 0
		}
		if t.failed || t.op == nil {
			return
		}
		t.call(t.op.ProcessingTime(t.cfg.Now().UnixMilli()))
	case *CheckpointAbort:
		if t.aligner != nil {
			t.run(t.aligner.Abort(barrier.CheckpointID(m.ID)))
		}
	case *TriggerCheckpoint:
		// Barriers come in band; a finished task gets no more of them and
		// acks later checkpoints with its final state.
		if m.ID > t.triggered {
			t.triggered = m.ID
		}
		t.snapshotFinished()
	case *CheckpointComplete:
	case *actor.Stopping:
		if t.timer != nil {
			t.timer.Stop()
		}
		if err := t.cfg.Checkpoint.close(); err != nil {
			t.cfg.Log.Warn("close state store", "task", t.cfg.Task, "err", err)
		}
	}
}

func (t *Task) start() error {
	mode := barrier.AtLeastOnce
	var maxHeld int64
	if cp := t.cfg.Checkpoint; cp.Enabled() && cp.ExactlyOnce {
		mode = barrier.ExactlyOnce
		maxHeld = cp.MaxHeldBytes
		if maxHeld <= 0 {
			maxHeld = 64 << 20
		}
	}
	a, err := barrier.New[any](barrier.Config{Inputs: t.cfg.Inputs, Mode: mode, MaxHeldBytes: maxHeld})
	if err != nil {
		return fmt.Errorf("task %s: %w", t.cfg.Task, err)
	}
	t.aligner = a
	send := func(target int, data any, n int) { t.out.EmitData(t.ctx, target, data, n) }
	op, flush, err := t.cfg.NewOperator(send)
	if err != nil {
		return fmt.Errorf("task %s: %w", t.cfg.Task, err)
	}
	t.op, t.flush = op, flush
	var (
		restored operator.Iter
		opState  []byte
	)
	if cp := t.cfg.Checkpoint; cp.Enabled() && cp.RestoredFrom > 0 {
		it, err := cp.Store.NewIter(nil)
		if err != nil {
			return fmt.Errorf("task %s: read restored state: %w", t.cfg.Task, err)
		}
		defer it.Close()
		restored, opState = it, cp.OpState
	}
	if err := op.Open(restored, opState); err != nil {
		if cp := t.cfg.Checkpoint; cp.Enabled() && cp.RestoredFrom > 0 {
			return fmt.Errorf("task %s: restore checkpoint %d: %w", t.cfg.Task, cp.RestoredFrom, err)
		}
		return fmt.Errorf("task %s: %w", t.cfg.Task, err)
	}
	return nil
}

func (t *Task) fail(err error) {
	if !t.failed {
		t.failed = true
		t.ctx.Send(t.ctx.Parent(), &Failed{Task: t.cfg.Task, Err: err})
	}
}

// call finishes an operator call: a failure fails the task; otherwise what
// the operator emitted is flushed and its next processing timer scheduled.
func (t *Task) call(err error) {
	if err != nil {
		t.fail(fmt.Errorf("task %s: %w", t.cfg.Task, err))
		return
	}
	t.afterCall()
}

func (t *Task) afterCall() {
	if t.flush != nil {
		t.flush()
	}
	t.schedule()
}

// schedule arranges a procTick for the operator's earliest processing-time
// timer, if it is earlier than the one already scheduled.
func (t *Task) schedule() {
	at, ok := t.op.NextProcessingTimer()
	if !ok || t.done || (t.procAt != 0 && t.procAt <= at) {
		return
	}
	if t.timer != nil {
		t.timer.Stop()
	}
	t.procAt = at
	root, self := t.ctx.ActorSystem().Root, t.ctx.Self()
	d := timerDelay(at, t.cfg.Now().UnixMilli())
	t.timer = time.AfterFunc(d, func() { root.Send(self, &procTick{at: at}) })
}

// timerDelay is how long from now (milliseconds) until a processing-time
// timer at at is due; 0 when it is due already, the longest Duration when
// it is further away than that (about 292 years).
func timerDelay(at, now int64) time.Duration {
	ms := operator.SubSat(at, now)
	switch {
	case ms <= 0:
		return 0
	case ms > int64(math.MaxInt64/time.Millisecond):
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

func (t *Task) unstash() {
	for len(t.stash) > 0 && !t.out.Blocked() {
		m := t.stash[0]
		t.stash[0] = nil
		t.stash = t.stash[1:]
		t.input(m)
	}
}

// input feeds one message of an input to the aligner.
func (t *Task) input(m any) {
	if t.failed {
		return
	}
	switch m := m.(type) {
	case *Batch:
		t.run(t.aligner.Data(m.In, m, int64(m.Len())*64))
	case *Watermark:
		t.run(t.aligner.Data(m.In, m, 0))
	case *Idle:
		t.run(t.aligner.Data(m.In, m, 0))
	case *EndOfInput:
		// Held in order behind the input's records while it is blocked.
		t.run(t.aligner.Data(m.In, m, 0))
	case *Barrier:
		t.run(t.aligner.Barrier(m.In, barrier.CheckpointID(m.ID)))
	}
}

// run carries out the aligner's actions in order. Processing an end of
// input feeds the aligner again; its actions run in turn.
func (t *Task) run(acts []barrier.Action[any]) {
	queue := slices.Clone(acts)
	for len(queue) > 0 && !t.failed {
		a := queue[0]
		queue = queue[1:]
		switch a.Kind {
		case barrier.Process:
			if eoi, ok := a.Item.(*EndOfInput); ok {
				t.inputs[eoi.In].ended = true
				queue = append(slices.Clone(t.aligner.EndOfInput(eoi.In)), queue...)
				// An ended input no longer holds the watermark back.
				t.advance()
				continue
			}
			t.process(a.Item)
		case barrier.Snapshot:
			t.snapshot(uint64(a.ID))
		case barrier.ForwardBarrier:
			id := uint64(a.ID)
			t.out.Broadcast(t.ctx, func(in int) any { return &Barrier{In: in, ID: id} })
		case barrier.AbortCheckpoint:
			t.ctx.Send(t.ctx.Parent(), &CheckpointDecline{Task: t.cfg.Task, ID: uint64(a.ID), Reason: a.Reason})
		case barrier.AllEnded:
			t.endOfInput()
		case barrier.Error:
			t.fail(fmt.Errorf("task %s: %v", t.cfg.Task, a.Err))
		}
	}
}

func (t *Task) process(item any) {
	switch m := item.(type) {
	case *Batch:
		in := 0
		if t.cfg.InputOf != nil {
			in = t.cfg.InputOf[m.In]
		}
		err := t.op.Process(in, m.Data)
		t.cfg.Stats.RecordsIn.Add(int64(m.N))
		t.cfg.Stats.BatchesIn.Add(1)
		t.ctx.Send(m.From, &Credit{Out: m.Out, N: 1})
		t.call(err)
	case *Watermark:
		in := &t.inputs[m.In]
		in.idle = false
		if m.TS > in.wm {
			in.wm = m.TS
		}
		t.advance()
	case *Idle:
		t.inputs[m.In].idle = true
		t.advance()
	}
}

// advance recomputes the combined watermark: the minimum over inputs that
// are neither idle nor ended. When every input left is idle, the task
// tells its targets it is idle too.
func (t *Task) advance() {
	wm := int64(math.MaxInt64)
	active, open := 0, 0
	for _, in := range t.inputs {
		if in.ended {
			continue
		}
		open++
		if in.idle {
			continue
		}
		active++
		wm = min(wm, in.wm)
	}
	if active == 0 {
		if open > 0 && !t.idleOut {
			t.idleOut = true
			t.out.Broadcast(t.ctx, func(in int) any { return &Idle{In: in} })
		}
		return
	}
	if wm <= t.wm && !t.idleOut {
		return
	}
	t.idleOut = false
	if wm > t.wm {
		t.wm = wm
		t.cfg.Stats.SetWatermark(wm)
		if err := t.op.Watermark(wm); err != nil {
			t.call(err)
			return
		}
		t.afterCall()
	}
	if t.wm == math.MinInt64 {
		return
	}
	out := t.wm
	t.out.Broadcast(t.ctx, func(in int) any { return &Watermark{In: in, TS: out} })
}

// endOfInput runs once every input has ended: every event-time timer
// fires (the watermark goes to the end of time, as in Flink), the
// operator emits what it holds, and the output ends.
func (t *Task) endOfInput() {
	if t.wm < math.MaxInt64 {
		t.wm = math.MaxInt64
		if err := t.op.Watermark(math.MaxInt64); err != nil {
			t.call(err)
			return
		}
	}
	if err := t.op.EndOfInput(); err != nil {
		t.call(err)
		return
	}
	t.afterCall()
	t.out.Broadcast(t.ctx, func(in int) any { return &EndOfInput{In: in} })
	t.done = true
	if t.timer != nil {
		t.timer.Stop()
	}
	t.snapshotFinished()
}

// snapshot captures the operator's state for checkpoint id and hands it
// to the snapshot worker.
func (t *Task) snapshot(id uint64) {
	cp := t.cfg.Checkpoint
	if !cp.Enabled() {
		return
	}
	c, err := t.op.Snapshot(id)
	if err != nil {
		t.ctx.Send(t.ctx.Parent(), &CheckpointDecline{Task: t.cfg.Task, ID: id, Reason: err.Error()})
		return
	}
	t.lastSnap = id
	op := c.OpState
	if op == nil {
		op = []byte("{}")
	}
	cp.snapshot(t.ctx, t.cfg.Task, id, c.Entries, op)
}

// snapshotFinished snapshots the newest triggered checkpoint once the task
// has finished, if no barrier brought it.
func (t *Task) snapshotFinished() {
	if t.done && !t.failed && t.triggered > t.lastSnap {
		t.snapshot(t.triggered)
	}
}
