package weir

import (
	"fmt"
	"reflect"

	"github.com/weirstream/weir/operator"
)

// Stream is a stream of values of type T in a job graph built on an Env.
// Functions of this package (Map, Filter, FlatMap, KeyBy, Process, Union,
// ToKafka, ...) add operators to the graph; nothing runs before Env.Run.
//
// Every operator runs as one subtask per Parallelism, each on its own
// goroutine: the functions given to Map, Filter, FlatMap and Transform are
// called by several subtasks at once and must be safe for that (pure
// functions are). A Process function is copied per subtask.
type Stream[T any] struct {
	n    *node
	port int
}

// KeyedStream is a stream partitioned by a key: every value with the same
// key goes to the same subtask of the next operator, whose keyed state and
// timers are scoped to that key (Flink's KeyedStream).
type KeyedStream[T any] struct {
	s   Stream[T]
	key func(T) string // nil: keyed by the key the records carry (the job file's kinds)
}

// edgeKey is the key of the hash edge into the operator that consumes ks.
func (ks KeyedStream[T]) edgeKey() any {
	if ks.key == nil {
		return recordKey{}
	}
	return ks.key
}

// Env returns the environment the stream belongs to.
func (s Stream[T]) Env() *Env {
	if s.n == nil {
		return nil
	}
	return s.n.env
}

// OpOption configures an operator added to the graph.
type OpOption func(*node)

// UID sets the operator's stable id. It names the operator's state in
// checkpoints and savepoints: a changed program restores a savepoint by
// these ids, so give every stateful operator, source and sink one and keep
// it when the program changes (Flink's uid). Letters, digits, '.', '_'
// and '-'; unique in the job. Without it the id is derived from the
// operator's kind and position (e.g. "process-2"), which changes when
// operators are added before it.
func UID(id string) OpOption { return func(n *node) { n.uid, n.uidSet = id, true } }

// Name sets the operator's name, which the errors of its function carry
// (default: its uid).
func Name(name string) OpOption { return func(n *node) { n.name = name } }

// Map applies f to every value.
func Map[T, U any](s Stream[T], f func(T) U, opts ...OpOption) Stream[U] {
	n := s.n.env.addNode("map", opts, portFor[U]())
	n.connect(s, nil)
	n.fusable = true
	n.build = func(b *buildCtx, outs []any) (any, lifecycle, error) {
		next := outs[0].(emitter[U])
		return emitFunc[T](func(r operator.Rec[T]) {
			next.Emit(operator.Rec[U]{TS: r.TS, Key: r.Key, V: f(r.V)})
		}), nil, nil
	}
	return Stream[U]{n: n}
}

// Filter keeps the values for which keep returns true.
func Filter[T any](s Stream[T], keep func(T) bool, opts ...OpOption) Stream[T] {
	n := s.n.env.addNode("filter", opts, portFor[T]())
	n.connect(s, nil)
	n.fusable = true
	n.build = func(b *buildCtx, outs []any) (any, lifecycle, error) {
		next := outs[0].(emitter[T])
		return emitFunc[T](func(r operator.Rec[T]) {
			if keep(r.V) {
				next.Emit(r)
			}
		}), nil, nil
	}
	return Stream[T]{n: n}
}

// FlatMap calls f for every value; f emits zero or more values with emit.
func FlatMap[T, U any](s Stream[T], f func(v T, emit func(U)), opts ...OpOption) Stream[U] {
	n := s.n.env.addNode("flatmap", opts, portFor[U]())
	n.connect(s, nil)
	n.fusable = true
	n.build = func(b *buildCtx, outs []any) (any, lifecycle, error) {
		next := outs[0].(emitter[U])
		var cur operator.Rec[T]
		emit := func(v U) { next.Emit(operator.Rec[U]{TS: cur.TS, Key: cur.Key, V: v}) }
		return emitFunc[T](func(r operator.Rec[T]) {
			cur = r
			f(r.V, emit)
		}), nil, nil
	}
	return Stream[U]{n: n}
}

// Transform calls f for every value with a Context that emits values,
// emits to side outputs (see SideOutput) and tells the value's timestamp:
// Flink's ProcessFunction on a stream that is not keyed. Keyed state and
// timers need a KeyedStream and Process. An error from f fails the job
// (it restarts from the latest checkpoint, as its restart strategy says).
func Transform[T, U any](s Stream[T], f func(ctx *Context[U], v T) error, opts ...OpOption) Stream[U] {
	n := s.n.env.addNode("transform", opts, portFor[U]())
	n.connect(s, nil)
	n.fusable = true
	n.sides = map[string]int{}
	n.build = func(b *buildCtx, outs []any) (any, lifecycle, error) {
		ctx := newContext[U](b, n, outs, nil)
		return emitFunc[T](func(r operator.Rec[T]) {
			if b.err != nil {
				return
			}
			ctx.ts, ctx.key = r.TS, r.Key
			if err := f(ctx, r.V); err != nil {
				b.fail(fmt.Errorf("%s: %w", n.name, err))
			} else if ctx.err != nil {
				b.fail(fmt.Errorf("%s: %w", n.name, ctx.err))
			}
		}), nil, nil
	}
	return Stream[U]{n: n}
}

// KeyBy partitions s by key (Flink's keyBy): the operator that consumes
// the keyed stream sees every value of one key on one subtask. Keys are
// hashed into operator.KeyGroups key groups, the unit of rescaling.
func KeyBy[T any](s Stream[T], key func(T) string) KeyedStream[T] {
	return KeyedStream[T]{s: s, key: key}
}

// Union merges streams of one type into one (Flink's union); the order
// between the inputs is not defined, each input's order is kept.
func Union[T any](first Stream[T], more ...Stream[T]) Stream[T] {
	n := first.n.env.addNode("union", nil, portFor[T]())
	n.connect(first, nil)
	for _, s := range more {
		if s.n.env != first.n.env {
			first.n.env.fail(fmt.Errorf("weir: Union of streams of two environments"))
			continue
		}
		n.connect(s, nil)
	}
	n.build = func(b *buildCtx, outs []any) (any, lifecycle, error) {
		return outs[0].(emitter[T]), nil, nil
	}
	return Stream[T]{n: n}
}

// OutputTag names a side output of type S: a second typed output of a
// Process or Transform operator (Flink's OutputTag). Create it once with
// NewOutputTag, emit with Emit inside the operator, and read the stream
// with SideOutput.
type OutputTag[S any] struct{ id string }

// NewOutputTag returns the tag named id.
func NewOutputTag[S any](id string) OutputTag[S] { return OutputTag[S]{id: id} }

// ID is the tag's name.
func (t OutputTag[S]) ID() string { return t.id }

// SideContext is what OutputTag.Emit writes through: the *Context of a
// Process or Transform function.
type SideContext interface {
	side(id string) (em any, ts int64, key string)
}

// Emit sends v to the side output t of the operator that ctx belongs to,
// with the timestamp of the value (or timer) being handled. A side output
// that no stream reads (no SideOutput call) drops v.
func (t OutputTag[S]) Emit(ctx SideContext, v S) {
	em, ts, key := ctx.side(t.id)
	if em == nil {
		return
	}
	em.(emitter[S]).Emit(operator.Rec[S]{TS: ts, Key: key, V: v})
}

// SideOutput returns the stream of side output t of the operator that
// produced s (a Process or Transform).
func SideOutput[T, S any](s Stream[T], t OutputTag[S]) Stream[S] {
	n := s.n
	if n.sides == nil {
		n.env.fail(fmt.Errorf("weir: SideOutput(%q): operator %s has no side outputs; side outputs come from Process and Transform", t.id, n.uid))
		return Stream[S]{n: n}
	}
	if p, ok := n.sides[t.id]; ok {
		if n.ports[p].typ != reflect.TypeFor[S]() {
			n.env.fail(fmt.Errorf("weir: SideOutput(%q) of operator %s: the tag is used with two types", t.id, n.uid))
		}
		return Stream[S]{n: n, port: p}
	}
	n.sides[t.id] = len(n.ports)
	n.ports = append(n.ports, portFor[S]())
	return Stream[S]{n: n, port: len(n.ports) - 1}
}

// cloneFunc returns a copy of fn for one subtask: a pointer to a struct is
// copied shallowly (so each subtask's Open fills its own state handles, as
// Flink gives each subtask its own instance); other values are shared.
func cloneFunc[F any](fn F) F {
	v := reflect.ValueOf(fn)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return fn
	}
	c := reflect.New(v.Elem().Type())
	c.Elem().Set(v.Elem())
	return c.Interface().(F)
}
