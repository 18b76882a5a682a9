// Package join holds the join operators' logic as pure structs over keyed
// state: no goroutines, no clock, no actors.
package join

import (
	"fmt"

	"github.com/weirstream/weir/operator"
)

// Interval is the interval join of one subtask (Flink's
// IntervalJoinOperator): per key it keeps the values of each side by event
// time, joins a new value with every value of the other side whose time
// is within the bounds, and drops a value once the watermark passes the
// last time it can still match. a at ta and b at tb join when
// ta+Lower <= tb <= ta+Upper.
type Interval[A, B any] struct {
	lower, upper int64
	st           *operator.KeyedState
	left         *operator.MapState[int64, []A]
	right        *operator.MapState[int64, []B]
	emit         func(a A, b B, ts int64) error
}

// NewInterval registers the join's state in st; emit gets every pair with
// its event time (the later of the two).
func NewInterval[A, B any](st *operator.KeyedState, lower, upper int64, ca operator.Codec[A], cb operator.Codec[B], emit func(a A, b B, ts int64) error) (*Interval[A, B], error) {
	if lower > upper {
		return nil, fmt.Errorf("interval join: lower bound %dms is above upper bound %dms", lower, upper)
	}
	left, err := operator.Map(st, "join/left", operator.Int64Codec(), operator.SliceCodec(ca))
	if err != nil {
		return nil, err
	}
	right, err := operator.Map(st, "join/right", operator.Int64Codec(), operator.SliceCodec(cb))
	if err != nil {
		return nil, err
	}
	return &Interval[A, B]{lower: lower, upper: upper, st: st, left: left, right: right, emit: emit}, nil
}

// cleanupLeft is when a left value at ts can no longer match: ts+upper,
// not before ts (Flink's rule).
func (j *Interval[A, B]) cleanupLeft(ts int64) int64 {
	if j.upper > 0 {
		return operator.AddSat(ts, j.upper)
	}
	return ts
}

func (j *Interval[A, B]) cleanupRight(ts int64) int64 {
	if j.lower < 0 {
		return operator.SubSat(ts, j.lower)
	}
	return ts
}

// late reports whether a value at ts is behind the watermark.
func (j *Interval[A, B]) late(ts int64) bool { return ts < j.st.Watermark() }

// Left handles a value of the left side at ts for the current key; late
// is true when it came behind the watermark and was not joined.
func (j *Interval[A, B]) Left(ts int64, a A) (late bool, err error) {
	if j.late(ts) {
		return true, nil
	}
	vs, _ := j.left.Get(ts)
	// append never changes what a checkpoint in flight holds: it reads
	// only up to its own length.
	j.left.Put(ts, append(vs, a))
	lo, hi := operator.AddSat(ts, j.lower), operator.AddSat(ts, j.upper)
	for tb, bs := range j.right.All() {
		if lo <= tb && tb <= hi {
			for _, b := range bs {
				if err := j.emit(a, b, max(ts, tb)); err != nil {
					return false, err
				}
			}
		}
	}
	j.st.RegisterEventTimer(j.cleanupLeft(ts))
	return false, nil
}

// Right handles a value of the right side at ts for the current key.
func (j *Interval[A, B]) Right(ts int64, b B) (late bool, err error) {
	if j.late(ts) {
		return true, nil
	}
	vs, _ := j.right.Get(ts)
	j.right.Put(ts, append(vs, b))
	lo, hi := operator.SubSat(ts, j.upper), operator.SubSat(ts, j.lower)
	for ta, as := range j.left.All() {
		if lo <= ta && ta <= hi {
			for _, a := range as {
				if err := j.emit(a, b, max(ts, ta)); err != nil {
					return false, err
				}
			}
		}
	}
	j.st.RegisterEventTimer(j.cleanupRight(ts))
	return false, nil
}

// Timer handles the event-time timer ts of key: the values that can no
// longer match go.
func (j *Interval[A, B]) Timer(key string, ts int64) error {
	j.st.SetCurrentKey(key)
	for ta := range j.left.All() {
		if j.cleanupLeft(ta) <= ts {
			j.left.Remove(ta)
		}
	}
	for tb := range j.right.All() {
		if j.cleanupRight(tb) <= ts {
			j.right.Remove(tb)
		}
	}
	return nil
}
