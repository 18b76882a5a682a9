package weir

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/operator"
	"github.com/weirstream/weir/operator/join"
)

// joinElem is a value of either side of a join on the one stream that the
// join operator reads (the two sides are tagged and unioned, as Flink
// implements its window join).
type joinElem[A, B any] struct {
	L     A    `json:"l"`
	R     B    `json:"r"`
	Right bool `json:"right"`
}

// tagged unions the two keyed sides of a join into one keyed stream.
func tagged[A, B any](left KeyedStream[A], right KeyedStream[B]) KeyedStream[joinElem[A, B]] {
	l := Map(left.s, func(a A) joinElem[A, B] { return joinElem[A, B]{L: a} })
	r := Map(right.s, func(b B) joinElem[A, B] { return joinElem[A, B]{R: b, Right: true} })
	lk, rk := left.key, right.key
	return KeyBy(Union(l, r), func(e joinElem[A, B]) string {
		if e.Right {
			return rk(e.R)
		}
		return lk(e.L)
	})
}

// IntervalJoin joins two keyed streams on their key and on time (Flink's
// interval join): every pair of a from left and b from right with the same
// key and a.ts + lower <= b.ts <= a.ts + upper gives join(a, b), with the
// later of the two event times. Each side keeps its values in keyed state
// until the watermark passes the last time they can still match. A value
// that comes behind the watermark is late: it joins nothing, and goes to
// the side outputs of IntervalJoinLateData, or is counted in
// Stats.LateDropped. Both sides need event time.
func IntervalJoin[A, B, U any](left KeyedStream[A], right KeyedStream[B], lower, upper time.Duration, join func(a A, b B) U, opts ...OpOption) Stream[U] {
	if lower > upper {
		left.s.n.env.fail(fmt.Errorf("weir: IntervalJoin: lower bound %v is above upper bound %v", lower, upper))
	}
	fn := &intervalJoin[A, B, U]{lower: lower.Milliseconds(), upper: upper.Milliseconds(), join: join}
	out := Process(tagged(left, right), fn, opts...)
	fn.late = out.n.joinLate
	return out
}

// IntervalJoinLateData sends the values that come too late to an
// IntervalJoin to side outputs, left's to left and right's to right
// (Flink's sideOutputLeftLateData and sideOutputRightLateData); read them
// with SideOutput on the join's stream.
func IntervalJoinLateData[A, B any](left OutputTag[A], right OutputTag[B]) OpOption {
	return func(n *node) { n.joinLate = [2]string{left.id, right.id} }
}

// intervalJoin runs join.Interval as a keyed function.
type intervalJoin[A, B, U any] struct {
	lower, upper int64
	join         func(A, B) U
	late         [2]string // side output ids of late left and right values
	op           *join.Interval[A, B]
	cur          *Context[U]
}

func (j *intervalJoin[A, B, U]) Open(ctx *OpenContext) error {
	op, err := join.NewInterval(ctx.st, j.lower, j.upper, operator.DefaultCodec[A](), operator.DefaultCodec[B](),
		func(a A, b B, ts int64) error {
			j.cur.EmitAt(j.join(a, b), ts)
			return nil
		})
	j.op = op
	return err
}

func (j *intervalJoin[A, B, U]) OnElement(ctx *Context[U], e joinElem[A, B]) error {
	ts := ctx.Timestamp()
	if ts == operator.NoTimestamp {
		return fmt.Errorf("a value without event time reached an interval join: give both sources EventTime")
	}
	j.cur = ctx
	var late bool
	var err error
	if e.Right {
		late, err = j.op.Right(ts, e.R)
	} else {
		late, err = j.op.Left(ts, e.L)
	}
	if err != nil || !late {
		return err
	}
	side := 0
	if e.Right {
		side = 1
	}
	if id := j.late[side]; id != "" {
		if em, _, _ := ctx.side(id); em != nil {
			if e.Right {
				OutputTag[B]{id: id}.Emit(ctx, e.R)
			} else {
				OutputTag[A]{id: id}.Emit(ctx, e.L)
			}
			return nil
		}
	}
	if m := ctx.b.metrics; m != nil {
		m.LateDropped.Add(1)
	}
	return nil
}

func (j *intervalJoin[A, B, U]) OnTimer(ctx *Context[U], ts int64) error {
	j.cur = ctx
	return j.op.Timer(ctx.Key(), ts)
}

// WindowJoin joins two keyed streams on their key within windows (Flink's
// window join): when a window fires, every pair of a from left and b from
// right with the same key in that window gives join(a, b), with the
// window's last millisecond as event time. The values wait in keyed state
// until their window fires. Both sides need event time.
func WindowJoin[A, B, U any](left KeyedStream[A], right KeyedStream[B], a WindowAssigner, join func(a A, b B) U, opts ...OpOption) Stream[U] {
	return ProcessWindow(Window(tagged(left, right), a), func(_ string, _ TimeWindow, vs []joinElem[A, B], emit func(U)) error {
		for _, l := range vs {
			if l.Right {
				continue
			}
			for _, r := range vs {
				if r.Right {
					emit(join(l.L, r.R))
				}
			}
		}
		return nil
	}, opts...)
}
