package actors

import (
	"log/slog"
	"math"

	"github.com/asynkron/protoactor-go/actor"
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
	Metrics      *Metrics
	Log          *slog.Logger
}

type accumulator struct {
	count int64
	sum   float64
}

// Window is the keyed event-time tumbling window operator: count and sum
// per key and window, fired when the combined watermark passes the window's
// last millisecond.
type Window struct {
	cfg    WindowConfig
	out    *Output
	inputs []inputState
	ended  int
	wm     int64
	// windows maps a window start to the accumulators of its keys.
	windows map[int64]map[string]*accumulator
	stash   []any // input held while the output is blocked
	done    bool
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
		w := &Window{cfg: cfg, wm: math.MinInt64, windows: map[int64]map[string]*accumulator{}}
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
	case *Credit:
		w.out.OnCredit(ctx, m)
		w.unstash(ctx)
	case *Batch, *Watermark, *Idle, *EndOfInput:
		if w.out.Blocked() || len(w.stash) > 0 {
			w.stash = append(w.stash, m)
			return
		}
		w.handle(ctx, m)
	}
}

func (w *Window) unstash(ctx actor.Context) {
	for len(w.stash) > 0 && !w.out.Blocked() {
		m := w.stash[0]
		w.stash[0] = nil
		w.stash = w.stash[1:]
		w.handle(ctx, m)
	}
}

func (w *Window) handle(ctx actor.Context, m any) {
	switch m := m.(type) {
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
	case *EndOfInput:
		if !w.inputs[m.In].ended {
			w.inputs[m.In].ended = true
			w.ended++
		}
		if w.ended == len(w.inputs) {
			w.fire(ctx, math.MaxInt64)
			w.out.Broadcast(ctx, func(in int) any { return &EndOfInput{In: in} })
			w.done = true
			return
		}
		w.advance(ctx)
	}
}

func (w *Window) add(recs []Record) {
	size := w.cfg.SizeMillis
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
			a = &accumulator{}
			keys[r.Key] = a
		}
		a.count++
		a.sum += r.Val
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
	// Results go to the first target: window subtask i feeds sink subtask
	// i alone (a forward edge).
	t := 0
	for start, keys := range w.windows {
		if start+size-1 > wm {
			continue
		}
		for k, a := range keys {
			w.out.Emit(ctx, t, Record{Key: k, TS: start, Val: a.sum, Count: a.count})
		}
		delete(w.windows, start)
	}
	w.out.Flush(ctx)
	if wm != math.MaxInt64 {
		out := wm
		w.out.Broadcast(ctx, func(in int) any { return &Watermark{In: in, TS: out} })
	}
}
