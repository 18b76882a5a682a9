package weir

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/weirstream/weir/operator"
)

// KeyedProcessFunction is the user logic of a keyed Process operator
// (Flink's KeyedProcessFunction): it sees the values of a KeyedStream one
// at a time, with state and timers scoped to the value's key.
//
// Each subtask gets its own copy of the function: Process copies a pointer
// to a struct shallowly, so the state handles that Open stores in its
// fields are the subtask's own.
type KeyedProcessFunction[T, U any] interface {
	// Open registers the function's state (ValueStateOf, MapStateOf,
	// ListStateOf) once per subtask, before any value. After a restore the
	// state comes back under the same names.
	Open(ctx *OpenContext) error
	// OnElement handles one value; ctx.Key() is its key.
	OnElement(ctx *Context[U], v T) error
	// OnTimer handles a timer this key registered; ts is its time and
	// ctx.TimeDomain() says which clock it was set on.
	OnTimer(ctx *Context[U], ts int64) error
}

// OpenContext is what a function's Open gets: where state is registered.
type OpenContext struct {
	st          *operator.KeyedState
	index, par  int
	restoredFor bool
}

// Subtask is the index of this subtask, from 0, and Parallelism the
// number of subtasks of the operator.
func (c *OpenContext) Subtask() int { return c.index }

// Parallelism is the number of subtasks of the operator.
func (c *OpenContext) Parallelism() int { return c.par }

// Restored reports whether the subtask's state came from a checkpoint.
func (c *OpenContext) Restored() bool { return c.restoredFor }

// KeyedState is the subtask's state backend, for registering state with a
// codec of one's own (operator.Value, operator.Map, operator.List).
func (c *OpenContext) KeyedState() *operator.KeyedState { return c.st }

// State types of keyed state, scoped to the current key.
type (
	ValueState[T any]             = operator.ValueState[T]
	MapState[K comparable, V any] = operator.MapState[K, V]
	ListState[T any]              = operator.ListState[T]
	// Codec encodes state values for checkpoints.
	Codec[T any] = operator.Codec[T]
	// StateOption configures a state (WithTTL).
	StateOption = operator.StateOption
)

// WithTTL makes state entries expire d after their last write
// (processing time): an expired entry reads as absent.
var WithTTL = operator.WithTTL

// ValueStateOf registers (or, after a restore, finds) the value state
// name, encoded with operator.DefaultCodec[T] (fast built-ins for strings,
// numbers, bools and bytes; JSON otherwise).
func ValueStateOf[T any](ctx *OpenContext, name string, opts ...StateOption) (*ValueState[T], error) {
	return operator.Value(ctx.st, name, operator.DefaultCodec[T](), opts...)
}

// MapStateOf registers the map state name (a map per key).
func MapStateOf[K comparable, V any](ctx *OpenContext, name string, opts ...StateOption) (*MapState[K, V], error) {
	return operator.Map(ctx.st, name, operator.DefaultCodec[K](), operator.DefaultCodec[V](), opts...)
}

// ListStateOf registers the list state name (a list per key).
func ListStateOf[T any](ctx *OpenContext, name string, opts ...StateOption) (*ListState[T], error) {
	return operator.List(ctx.st, name, operator.DefaultCodec[T](), opts...)
}

// TimeDomain says which clock a timer was set on.
type TimeDomain int

// Time domains.
const (
	EventTimeDomain TimeDomain = iota
	ProcessingTimeDomain
)

// Context is what a Process or Transform function gets with each value or
// timer: its key and timestamp, the output, side outputs (OutputTag.Emit)
// and, on a keyed stream, timers.
type Context[U any] struct {
	b      *buildCtx
	st     *operator.KeyedState // nil on a stream that is not keyed
	out    emitter[U]
	outs   []any
	sides  map[string]int
	ts     int64
	key    string
	domain TimeDomain
	err    error
}

func newContext[U any](b *buildCtx, n *node, outs []any, st *operator.KeyedState) *Context[U] {
	return &Context[U]{b: b, st: st, out: outs[0].(emitter[U]), outs: outs, sides: n.sides}
}

// Key is the key of the value or timer being handled ("" when not keyed).
func (c *Context[U]) Key() string { return c.key }

// Timestamp is the event time of the value being handled, or the time of
// the timer firing (operator.NoTimestamp for a value without one).
func (c *Context[U]) Timestamp() int64 { return c.ts }

// TimeDomain is the clock of the timer firing (in OnTimer).
func (c *Context[U]) TimeDomain() TimeDomain { return c.domain }

// Emit sends v downstream with the current timestamp.
func (c *Context[U]) Emit(v U) { c.out.Emit(operator.Rec[U]{TS: c.ts, Key: c.key, V: v}) }

// EmitAt sends v downstream with event time ts.
func (c *Context[U]) EmitAt(v U, ts int64) { c.out.Emit(operator.Rec[U]{TS: ts, Key: c.key, V: v}) }

func (c *Context[U]) side(id string) (any, int64, string) {
	p, ok := c.sides[id]
	if !ok {
		return nil, 0, ""
	}
	return c.outs[p], c.ts, c.key
}

// CurrentWatermark is the operator's event-time clock: no value with an
// event time at or before it will come.
func (c *Context[U]) CurrentWatermark() int64 {
	if c.st == nil {
		return c.b.wm
	}
	return c.st.Watermark()
}

// CurrentProcessingTime is the wall clock in milliseconds.
func (c *Context[U]) CurrentProcessingTime() int64 { return c.b.now() }

var errNotKeyed = errors.New("timers and keyed state need a keyed stream: use weir.KeyBy and weir.Process")

// RegisterEventTimer sets a timer for the current key that fires when the
// watermark reaches ts. Setting the same time twice is one timer.
func (c *Context[U]) RegisterEventTimer(ts int64) {
	if c.st == nil {
		c.err = errNotKeyed
		return
	}
	c.st.RegisterEventTimer(ts)
}

// DeleteEventTimer removes the current key's event-time timer at ts.
func (c *Context[U]) DeleteEventTimer(ts int64) {
	if c.st == nil {
		c.err = errNotKeyed
		return
	}
	c.st.DeleteEventTimer(ts)
}

// RegisterProcessingTimer sets a timer for the current key that fires
// when the wall clock reaches ts (milliseconds since the epoch).
func (c *Context[U]) RegisterProcessingTimer(ts int64) {
	if c.st == nil {
		c.err = errNotKeyed
		return
	}
	c.st.RegisterProcessingTimer(ts)
}

// DeleteProcessingTimer removes the current key's processing-time timer.
func (c *Context[U]) DeleteProcessingTimer(ts int64) {
	if c.st == nil {
		c.err = errNotKeyed
		return
	}
	c.st.DeleteProcessingTimer(ts)
}

// Process runs fn on a keyed stream: Flink's KeyedProcessFunction, with
// keyed state and event- and processing-time timers that are part of
// every checkpoint and fire after a restore. Give it a UID so a changed
// program still finds its state.
func Process[T, U any](ks KeyedStream[T], fn KeyedProcessFunction[T, U], opts ...OpOption) Stream[U] {
	n := ks.s.n.env.addNode("process", opts, portFor[U]())
	n.connect(ks.s, ks.edgeKey())
	n.sides = map[string]int{}
	n.stateful = true
	n.build = func(b *buildCtx, outs []any) (any, lifecycle, error) {
		st := operator.NewKeyedState(operator.KeyedStateConfig{Track: b.checkpoints, Now: b.now})
		op := &processOp[T, U]{fn: cloneFunc(fn), st: st, b: b, uid: n.name, par: b.parallelism}
		op.ctx = newContext[U](b, n, outs, st)
		return emitFunc[T](op.element), op, nil
	}
	return Stream[U]{n: n}
}

// processOp is the running keyed Process operator of one subtask.
type processOp[T, U any] struct {
	fn  KeyedProcessFunction[T, U]
	st  *operator.KeyedState
	b   *buildCtx
	ctx *Context[U]
	uid string
	par int
}

type processState struct {
	Watermark int64 `json:"watermark"`
}

// mergeProcessStates merges the operator states of old subtasks of a
// keyed Process (a rescale): the smallest watermark.
func mergeProcessStates(ops [][]byte) ([]byte, error) {
	merged := processState{Watermark: math.MaxInt64}
	for _, op := range ops {
		var ps processState
		if len(op) > 0 && string(op) != "{}" {
			if err := json.Unmarshal(op, &ps); err != nil {
				return nil, fmt.Errorf("process state unreadable: %w", err)
			}
		} else {
			ps.Watermark = math.MinInt64
		}
		merged.Watermark = min(merged.Watermark, ps.Watermark)
	}
	if len(ops) == 0 {
		merged.Watermark = math.MinInt64
	}
	return json.Marshal(merged)
}

func (p *processOp[T, U]) Open(restored operator.Iter, opState []byte) error {
	if restored != nil {
		if err := p.st.Restore(restored); err != nil {
			return fmt.Errorf("%s: %w", p.uid, err)
		}
	}
	if err := p.fn.Open(&OpenContext{st: p.st, index: p.b.index, par: p.par, restoredFor: restored != nil}); err != nil {
		return fmt.Errorf("%s: open: %w", p.uid, err)
	}
	if len(opState) > 0 && string(opState) != "{}" {
		var ps processState
		if err := json.Unmarshal(opState, &ps); err != nil {
			return fmt.Errorf("%s: operator state unreadable: %w", p.uid, err)
		}
		// Timers up to the restored watermark fired before the checkpoint:
		// none is left to fire here.
		if err := p.st.AdvanceWatermark(ps.Watermark, p.timer(EventTimeDomain)); err != nil {
			return err
		}
	}
	return nil
}

func (p *processOp[T, U]) element(r operator.Rec[T]) {
	if p.b.err != nil {
		return
	}
	p.st.SetCurrentKey(r.Key)
	c := p.ctx
	c.ts, c.key, c.domain = r.TS, r.Key, EventTimeDomain
	if err := p.fn.OnElement(c, r.V); err != nil {
		p.b.fail(fmt.Errorf("%s: key %q: %w", p.uid, r.Key, err))
	} else if c.err != nil {
		p.b.fail(fmt.Errorf("%s: key %q: %w", p.uid, r.Key, c.err))
	}
}

func (p *processOp[T, U]) timer(d TimeDomain) func(key string, ts int64) error {
	return func(key string, ts int64) error {
		c := p.ctx
		c.ts, c.key, c.domain = ts, key, d
		if err := p.fn.OnTimer(c, ts); err != nil {
			return fmt.Errorf("%s: timer %d of key %q: %w", p.uid, ts, key, err)
		}
		if c.err != nil {
			return fmt.Errorf("%s: timer %d of key %q: %w", p.uid, ts, key, c.err)
		}
		return nil
	}
}

func (p *processOp[T, U]) Watermark(ts int64) error {
	return p.st.AdvanceWatermark(ts, p.timer(EventTimeDomain))
}

func (p *processOp[T, U]) ProcessingTime(now int64) error {
	return p.st.AdvanceProcessingTime(now, p.timer(ProcessingTimeDomain))
}

func (p *processOp[T, U]) NextProcessingTimer() (int64, bool) { return p.st.NextProcessingTimer() }

func (p *processOp[T, U]) EndOfInput() error { return nil }

func (p *processOp[T, U]) Snapshot(id uint64) (operator.Capture, error) {
	op, err := json.Marshal(processState{Watermark: p.st.Watermark()})
	if err != nil {
		return operator.Capture{}, err
	}
	return operator.Capture{Entries: p.st.Capture(), OpState: op}, nil
}
