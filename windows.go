package weir

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/weirstream/weir/operator"
	"github.com/weirstream/weir/operator/window"
)

// TimeWindow is an event-time window [Start, End) in milliseconds since the
// Unix epoch.
type TimeWindow = window.TimeWindow

// WindowAssigner says which windows a value belongs to: TumblingWindows,
// SlidingWindows or SessionWindows (Flink's window assigners, event time),
// or CountWindows.
type WindowAssigner struct {
	a     window.Assigner
	count int64 // CountWindows: values per window
}

// CountWindows puts every n values of a key in one window, which fires
// when its n-th value arrives and is then cleared (Flink's countWindow: a
// global window with a purging count trigger). It needs no event time; a
// result's Start and End are the event times of its first value and of
// its last value plus 1 ms (0 without event time).
func CountWindows(n int64) WindowAssigner { return WindowAssigner{count: n} }

// TumblingWindows are windows of a fixed size that do not overlap; they
// start at multiples of size from the Unix epoch (see WithOffset).
func TumblingWindows(size time.Duration) WindowAssigner {
	return WindowAssigner{a: window.TumblingAssigner(size.Milliseconds(), 0)}
}

// SlidingWindows are windows of a fixed size starting every slide: a value
// belongs to size/slide windows.
func SlidingWindows(size, slide time.Duration) WindowAssigner {
	return WindowAssigner{a: window.SlidingAssigner(size.Milliseconds(), slide.Milliseconds(), 0)}
}

// SessionWindows group the values of a key into sessions: a session ends
// when no value came for gap; sessions that a late value bridges merge.
func SessionWindows(gap time.Duration) WindowAssigner {
	return WindowAssigner{a: window.SessionAssigner(gap.Milliseconds())}
}

// WithOffset shifts the window starts of tumbling and sliding windows by
// d (Flink's offset): TumblingWindows(24*time.Hour).WithOffset(-8*time.Hour)
// gives days starting at midnight in UTC+8. |d| must be below the size
// (tumbling) or the slide (sliding).
func (w WindowAssigner) WithOffset(d time.Duration) WindowAssigner {
	w.a.Offset = d.Milliseconds()
	return w
}

// String describes the assigner.
func (w WindowAssigner) String() string {
	if w.count != 0 {
		return fmt.Sprintf("count(%d)", w.count)
	}
	return w.a.String()
}

// WindowedStream is a keyed stream cut into windows, waiting for its
// window function: Aggregate, Reduce or ProcessWindow.
type WindowedStream[T any] struct {
	ks       KeyedStream[T]
	assigner window.Assigner
	count    int64
	lateness int64
	lateTag  string
}

// Window cuts the keyed stream ks into windows (Flink's window). Windows
// use event time: the source needs EventTime. A window fires when the
// watermark passes its end; its results carry its last millisecond as
// their event time.
func Window[T any](ks KeyedStream[T], a WindowAssigner) WindowedStream[T] {
	return WindowedStream[T]{ks: ks, assigner: a.a, count: a.count}
}

// AllowedLateness keeps each window's state for d after the watermark
// passed its end (Flink's allowedLateness). A value that comes in that time
// updates the window, which fires again at once: downstream receives the
// updated result as a new record with the same key and window (a sink
// that upserts by key and window keeps the newest). A value later than
// that goes to the late side output (SideOutputLateData) or, without one,
// is counted in Stats.LateDropped. Default 0: a window fires once.
func (ws WindowedStream[T]) AllowedLateness(d time.Duration) WindowedStream[T] {
	ws.lateness = d.Milliseconds()
	return ws
}

// SideOutputLateData sends the values that come after their windows'
// allowed lateness to the side output tag instead of dropping them; read
// it with SideOutput on the window function's stream.
func (ws WindowedStream[T]) SideOutputLateData(tag OutputTag[T]) WindowedStream[T] {
	ws.lateTag = tag.id
	return ws
}

// WindowResult is the result of one key in one window.
type WindowResult[R any] struct {
	Key   string `json:"key"`
	Start int64  `json:"window_start"`
	End   int64  `json:"window_end"`
	Value R      `json:"value"`
}

// AggregateFunction folds the values of a window into an accumulator, one
// per key and window (Flink's AggregateFunction): the values themselves
// are not kept. Merge combines two accumulators (session windows merge).
// Add and Merge return the new accumulator; an accumulator holding
// pointers, maps or slices must not be changed in place, because a
// checkpoint in flight may still be writing the previous one.
type AggregateFunction[T, A, R any] interface {
	CreateAccumulator() A
	Add(v T, acc A) A
	Merge(a, b A) A
	Result(acc A) R
}

// Aggregate runs f over every window of ws and emits one WindowResult per
// key and window when it fires. The accumulators are keyed state:
// checkpointed, restored, moved by key group on rescale.
func Aggregate[T, A, R any](ws WindowedStream[T], f AggregateFunction[T, A, R], opts ...OpOption) Stream[WindowResult[R]] {
	agg := window.Aggregator[T, A]{Create: f.CreateAccumulator, Add: func(acc A, v T) A { return f.Add(v, acc) }, Merge: f.Merge}
	return windowed(ws, agg, func(ctx *Context[WindowResult[R]], w TimeWindow, acc A) error {
		ctx.EmitAt(WindowResult[R]{Key: ctx.Key(), Start: w.Start, End: w.End, Value: f.Result(acc)}, w.MaxTimestamp())
		return nil
	}, opts)
}

// Reduce combines the values of every window with f, two at a time
// (Flink's reduce), and emits the combined value per key and window.
func Reduce[T any](ws WindowedStream[T], f func(a, b T) T, opts ...OpOption) Stream[WindowResult[T]] {
	type acc struct {
		V   T
		Set bool
	}
	add := func(a acc, v T) acc {
		if !a.Set {
			return acc{V: v, Set: true}
		}
		return acc{V: f(a.V, v), Set: true}
	}
	agg := window.Aggregator[T, acc]{Create: func() acc { return acc{} }, Add: add,
		Merge: func(a, b acc) acc {
			if !b.Set {
				return a
			}
			return add(a, b.V)
		}}
	return windowed(ws, agg, func(ctx *Context[WindowResult[T]], w TimeWindow, a acc) error {
		ctx.EmitAt(WindowResult[T]{Key: ctx.Key(), Start: w.Start, End: w.End, Value: a.V}, w.MaxTimestamp())
		return nil
	}, opts)
}

// ProcessWindow calls f with every value of a window when it fires
// (Flink's ProcessWindowFunction): f sees the key, the window and the
// values in arrival order, and emits any number of results with emit.
// The values are kept in keyed state until the window's allowed lateness
// ends; prefer Aggregate or Reduce, which keep one accumulator.
func ProcessWindow[T, U any](ws WindowedStream[T], f func(key string, w TimeWindow, values []T, emit func(U)) error, opts ...OpOption) Stream[U] {
	agg := window.Aggregator[T, []T]{
		Create: func() []T { return nil },
		// A full copy on each add would make a window of n values cost
		// n²; append never changes the values a checkpoint in flight
		// holds (it reads only up to its own length).
		Add:   func(acc []T, v T) []T { return append(acc, v) },
		Merge: func(a, b []T) []T { return append(append(make([]T, 0, len(a)+len(b)), a...), b...) },
	}
	return windowed(ws, agg, func(ctx *Context[U], w TimeWindow, values []T) error {
		return f(ctx.Key(), w, values, func(u U) { ctx.EmitAt(u, w.MaxTimestamp()) })
	}, opts)
}

// windowed is the window operator: a keyed Process whose function is the
// window logic of operator/window.
func windowed[T, A, U any](ws WindowedStream[T], agg window.Aggregator[T, A], fire func(*Context[U], TimeWindow, A) error, opts []OpOption) Stream[U] {
	s := ws.ks.s
	if ws.count != 0 {
		switch {
		case ws.count < 0:
			s.n.env.fail(fmt.Errorf("weir: CountWindows(%d): the count must be positive", ws.count))
		case ws.lateness != 0 || ws.lateTag != "":
			s.n.env.fail(fmt.Errorf("weir: CountWindows have no event-time end: AllowedLateness and SideOutputLateData do not apply"))
		}
		return Process[T, U](ws.ks, &countWindowFunc[T, A, U]{n: ws.count, agg: agg, fire: fire}, opts...)
	}
	if err := ws.assigner.Validate(); err != nil {
		s.n.env.fail(fmt.Errorf("weir: Window: %w", err))
	}
	if ws.lateness < 0 {
		s.n.env.fail(fmt.Errorf("weir: AllowedLateness must not be negative, got %dms", ws.lateness))
	}
	fn := &windowFunc[T, A, U]{ws: ws, agg: agg, fire: fire}
	return Process[T, U](ws.ks, fn, opts...)
}

// countAcc is the state of a count window of one key.
type countAcc[A any] struct {
	N     int64 `json:"n"`
	First int64 `json:"first"`
	Last  int64 `json:"last"`
	Acc   A     `json:"acc"`
}

// countWindowFunc is the count window's keyed function.
type countWindowFunc[T, A, U any] struct {
	n     int64
	agg   window.Aggregator[T, A]
	fire  func(*Context[U], TimeWindow, A) error
	state *ValueState[countAcc[A]]
}

func (f *countWindowFunc[T, A, U]) Open(ctx *OpenContext) error {
	st, err := ValueStateOf[countAcc[A]](ctx, "count-window")
	f.state = st
	return err
}

func (f *countWindowFunc[T, A, U]) OnElement(ctx *Context[U], v T) error {
	c, ok := f.state.Value()
	ts := ctx.Timestamp()
	if ts == operator.NoTimestamp {
		ts = 0
	}
	if !ok {
		c = countAcc[A]{First: ts, Acc: f.agg.Create()}
	}
	c.N++
	c.Last = ts
	c.Acc = f.agg.Add(c.Acc, v)
	if c.N < f.n {
		f.state.Update(c)
		return nil
	}
	f.state.Clear()
	return f.fire(ctx, TimeWindow{Start: c.First, End: operator.AddSat(c.Last, 1)}, c.Acc)
}

func (f *countWindowFunc[T, A, U]) OnTimer(*Context[U], int64) error { return nil }

// windowFunc runs window.Keyed as a KeyedProcessFunction; each subtask
// gets a copy (cloneFunc) and builds its own operator in Open.
type windowFunc[T, A, U any] struct {
	ws   WindowedStream[T]
	agg  window.Aggregator[T, A]
	fire func(*Context[U], TimeWindow, A) error
	op   *window.Keyed[T, A]
	cur  *Context[U]
}

func (f *windowFunc[T, A, U]) Open(ctx *OpenContext) error {
	op, err := window.NewKeyed(ctx.st, window.Config[T, A]{
		Assigner: f.ws.assigner, Agg: f.agg, AccCodec: accCodec[A](),
		Lateness: f.ws.lateness, Name: "window",
	}, func(key string, w TimeWindow, acc A) error { return f.fire(f.cur, w, acc) })
	if err != nil {
		return err
	}
	f.op = op
	return nil
}

func (f *windowFunc[T, A, U]) OnElement(ctx *Context[U], v T) error {
	ts := ctx.Timestamp()
	if ts == operator.NoTimestamp {
		return fmt.Errorf("a value without event time reached a window: give the source EventTime (or a format whose records carry a timestamp)")
	}
	f.cur = ctx
	late, err := f.op.Element(ts, v)
	if err != nil || !late {
		return err
	}
	if f.ws.lateTag != "" {
		if em, _, _ := ctx.side(f.ws.lateTag); em != nil {
			OutputTag[T]{id: f.ws.lateTag}.Emit(ctx, v)
			return nil
		}
	}
	if m := ctx.b.metrics; m != nil {
		m.LateDropped.Add(1)
	}
	return nil
}

func (f *windowFunc[T, A, U]) OnTimer(ctx *Context[U], ts int64) error {
	f.cur = ctx
	return f.op.Timer(ctx.Key(), ts)
}

// Summary is the count, sum, smallest, largest and mean of a window's values
// (the built-in aggregates; Min, Max and Avg are 0 for no values).
type Summary struct {
	Count int64   `json:"count"`
	Sum   float64 `json:"sum"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Avg   float64 `json:"avg"`
}

// statsAgg is the built-in aggregate over value(v), with the result
// picked from the Summary.
type statsAgg[T, R any] struct {
	value  func(T) float64
	result func(Summary) R
}

func (statsAgg[T, R]) CreateAccumulator() Summary { return Summary{} }

func (a statsAgg[T, R]) Add(v T, s Summary) Summary {
	x := a.value(v)
	if s.Count == 0 {
		s.Min, s.Max = x, x
	} else {
		s.Min, s.Max = min(s.Min, x), max(s.Max, x)
	}
	s.Count++
	s.Sum += x
	return s
}

func (statsAgg[T, R]) Merge(a, b Summary) Summary {
	switch {
	case a.Count == 0:
		return b
	case b.Count == 0:
		return a
	}
	return Summary{Count: a.Count + b.Count, Sum: a.Sum + b.Sum, Min: min(a.Min, b.Min), Max: max(a.Max, b.Max)}
}

func (a statsAgg[T, R]) Result(s Summary) R {
	if s.Count > 0 {
		s.Avg = s.Sum / float64(s.Count)
	}
	return a.result(s)
}

// SummaryOf aggregates value(v) of a window's values into count, sum, min,
// max and avg at once.
func SummaryOf[T any](value func(T) float64) AggregateFunction[T, Summary, Summary] {
	return statsAgg[T, Summary]{value: value, result: func(s Summary) Summary { return s }}
}

// CountOf counts a window's values.
func CountOf[T any]() AggregateFunction[T, Summary, int64] {
	return statsAgg[T, int64]{value: func(T) float64 { return 0 }, result: func(s Summary) int64 { return s.Count }}
}

// SumOf sums value(v) over a window.
func SumOf[T any](value func(T) float64) AggregateFunction[T, Summary, float64] {
	return statsAgg[T, float64]{value: value, result: func(s Summary) float64 { return s.Sum }}
}

// MinOf is the smallest value(v) of a window.
func MinOf[T any](value func(T) float64) AggregateFunction[T, Summary, float64] {
	return statsAgg[T, float64]{value: value, result: func(s Summary) float64 { return s.Min }}
}

// MaxOf is the largest value(v) of a window.
func MaxOf[T any](value func(T) float64) AggregateFunction[T, Summary, float64] {
	return statsAgg[T, float64]{value: value, result: func(s Summary) float64 { return s.Max }}
}

// AvgOf is the mean of value(v) over a window.
func AvgOf[T any](value func(T) float64) AggregateFunction[T, Summary, float64] {
	return statsAgg[T, float64]{value: value, result: func(s Summary) float64 { return s.Avg }}
}

// accCodec is the checkpoint codec of window accumulators: 40 bytes for
// the built-in Summary, operator.DefaultCodec otherwise.
func accCodec[A any]() operator.Codec[A] {
	var zero A
	if c, ok := any(summaryCodec{}).(operator.Codec[A]); ok && any(zero) != nil {
		if _, isSummary := any(zero).(Summary); isSummary {
			return c
		}
	}
	return operator.DefaultCodec[A]()
}

// summaryCodec encodes a Summary as its five numbers, big endian (the
// float64s as IEEE 754 bits).
type summaryCodec struct{}

func (summaryCodec) Append(b []byte, s Summary) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(b, uint64(s.Count))
	for _, x := range [...]float64{s.Sum, s.Min, s.Max, s.Avg} {
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(x))
	}
	return b, nil
}

func (summaryCodec) Decode(b []byte) (Summary, error) {
	if len(b) != 40 {
		return Summary{}, fmt.Errorf("a window summary is 40 bytes, got %d", len(b))
	}
	f := func(i int) float64 { return math.Float64frombits(binary.BigEndian.Uint64(b[i:])) }
	return Summary{Count: int64(binary.BigEndian.Uint64(b)), Sum: f(8), Min: f(16), Max: f(24), Avg: f(32)}, nil
}
