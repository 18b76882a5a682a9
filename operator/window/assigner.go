package window

import (
	"fmt"
	"math"
)

// TimeWindow is the event-time window [Start, End) in milliseconds since
// the Unix epoch (Flink's TimeWindow).
type TimeWindow struct{ Start, End int64 }

// MaxTimestamp is the last millisecond of the window: it fires when the
// watermark reaches it, and its results carry it as their event time.
func (w TimeWindow) MaxTimestamp() int64 { return w.End - 1 }

// intersects reports whether w and o overlap or touch (Flink merges
// session windows that touch).
func (w TimeWindow) intersects(o TimeWindow) bool { return w.Start <= o.End && o.Start <= w.End }

// cover is the smallest window holding w and o.
func (w TimeWindow) cover(o TimeWindow) TimeWindow {
	return TimeWindow{Start: min(w.Start, o.Start), End: max(w.End, o.End)}
}

// Kinds of assigners.
const (
	KindTumbling = "tumbling"
	KindSliding  = "sliding"
	KindSession  = "session"
)

// Assigner says which event-time windows a record belongs to: tumbling
// (fixed size, no overlap), sliding (fixed size, a new window every
// slide) or session (a window per burst of activity, closed by a gap
// without records; merging). Tumbling and sliding windows start at
// multiples of their size (slide) plus the offset, from the Unix epoch, as
// Flink's do: an offset of -8h gives days that start at midnight UTC+8.
type Assigner struct {
	Kind   string
	Size   int64 // tumbling, sliding: window length in ms
	Slide  int64 // sliding: ms between window starts
	Offset int64 // tumbling, sliding: shift of the window starts, |Offset| < Size (Slide)
	Gap    int64 // session: ms without records that closes a session
}

// TumblingAssigner returns the assigner of tumbling windows of size ms.
func TumblingAssigner(size, offset int64) Assigner {
	return Assigner{Kind: KindTumbling, Size: size, Offset: offset}
}

// SlidingAssigner returns the assigner of windows of size ms starting every slide
// ms.
func SlidingAssigner(size, slide, offset int64) Assigner {
	return Assigner{Kind: KindSliding, Size: size, Slide: slide, Offset: offset}
}

// SessionAssigner returns the assigner of session windows closed by gap ms
// without records.
func SessionAssigner(gap int64) Assigner { return Assigner{Kind: KindSession, Gap: gap} }

// Validate says what is wrong with a, nil when it can be used.
func (a Assigner) Validate() error {
	switch a.Kind {
	case KindTumbling:
		if a.Size <= 0 {
			return fmt.Errorf("tumbling windows need a positive size, got %dms", a.Size)
		}
		if a.Offset <= -a.Size || a.Offset >= a.Size {
			return fmt.Errorf("the offset of a %dms tumbling window must be within (-%dms, %dms), got %dms", a.Size, a.Size, a.Size, a.Offset)
		}
	case KindSliding:
		if a.Size <= 0 || a.Slide <= 0 {
			return fmt.Errorf("sliding windows need a positive size and slide, got %dms and %dms", a.Size, a.Slide)
		}
		if a.Offset <= -a.Slide || a.Offset >= a.Slide {
			return fmt.Errorf("the offset of sliding windows must be within (-slide, slide) = (-%dms, %dms), got %dms", a.Slide, a.Slide, a.Offset)
		}
		if a.Size/a.Slide > MaxWindowsPerRecord {
			return fmt.Errorf("a %dms window sliding every %dms puts each record in %d windows; at most %d: raise the slide", a.Size, a.Slide, a.Size/a.Slide, MaxWindowsPerRecord)
		}
	case KindSession:
		if a.Gap <= 0 {
			return fmt.Errorf("session windows need a positive gap, got %dms", a.Gap)
		}
	default:
		return fmt.Errorf("unknown window kind %q; use tumbling, sliding or session", a.Kind)
	}
	return nil
}

// MaxWindowsPerRecord bounds the windows of one record (size / slide of a
// sliding window): each is an accumulator per key.
const MaxWindowsPerRecord = 1000

// Merging reports whether the windows of a key merge (sessions).
func (a Assigner) Merging() bool { return a.Kind == KindSession }

// String describes a for fingerprints and messages.
func (a Assigner) String() string {
	switch a.Kind {
	case KindSliding:
		return fmt.Sprintf("sliding(size=%d,slide=%d,offset=%d)", a.Size, a.Slide, a.Offset)
	case KindSession:
		return fmt.Sprintf("session(gap=%d)", a.Gap)
	}
	return fmt.Sprintf("tumbling(size=%d,offset=%d)", a.Size, a.Offset)
}

// Assign appends to dst the windows of a record with event time ts, from
// the newest start to the oldest. No arithmetic overflows: near the ends
// of int64 the windows are clamped.
func (a Assigner) Assign(ts int64, dst []TimeWindow) []TimeWindow {
	switch a.Kind {
	case KindTumbling:
		start := alignedStart(ts, a.Size, a.Offset)
		return append(dst, TimeWindow{Start: start, End: addSat(start, a.Size)})
	case KindSliding:
		last := alignedStart(ts, a.Slide, a.Offset)
		first := subSat(ts, a.Size) // starts > first hold ts
		// first clamped to the int64 minimum still holds a window there.
		for start := last; start > first || start == math.MinInt64; start -= a.Slide {
			dst = append(dst, TimeWindow{Start: start, End: addSat(start, a.Size)})
			if start < math.MinInt64+a.Slide {
				break
			}
		}
		return dst
	case KindSession:
		end := addSat(ts, a.Gap)
		return append(dst, TimeWindow{Start: min(ts, end-1), End: end})
	}
	return dst
}

// alignedStart is the start of the window of length size (shifted by
// offset) holding ts: ts - floorMod(ts-offset, size), computed without
// overflow.
func alignedStart(ts, size, offset int64) int64 {
	r := floorMod(ts, size) - floorMod(offset, size)
	if r < 0 {
		r += size
	}
	return subSat(ts, r)
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// addSat is a+b, clamped to the int64 range.
func addSat(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}

// subSat is a-b, clamped to the int64 range.
func subSat(a, b int64) int64 {
	if b == math.MinInt64 {
		return addSat(addSat(a, math.MaxInt64), 1)
	}
	return addSat(a, -b)
}
