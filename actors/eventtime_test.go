package actors

import (
	"math"
	"testing"
	"time"
)

// TestPartitionWatermarkSaturates: a partition's watermark trails its
// newest event time by the out-of-orderness and 1 ms, and an event time
// near the start of the int64 range gives a watermark at the start of
// time, never one that wrapped around to the end (which would make every
// later record late).
func TestPartitionWatermarkSaturates(t *testing.T) {
	for _, tc := range []struct {
		maxTS int64
		bound time.Duration
		want  int64
	}{
		{math.MinInt64, time.Second, math.MinInt64}, // nothing read yet
		{1_700_000_000_000, 200 * time.Millisecond, 1_699_999_999_799},
		{math.MinInt64 + 1, 0, math.MinInt64},
		{math.MinInt64 + 1, time.Second, math.MinInt64},
		{math.MinInt64 + 500, time.Duration(math.MaxInt64), math.MinInt64},
		{math.MaxInt64, 0, math.MaxInt64 - 1},
	} {
		if got := partitionWatermark(tc.maxTS, tc.bound); got != tc.want {
			t.Errorf("partitionWatermark(%d, %v) = %d, want %d", tc.maxTS, tc.bound, got, tc.want)
		}
	}
}

// TestTimerDelaySaturates: a processing-time timer far in the future
// waits as long as a timer can wait, never a negative (wrapped) time that
// would fire it at once, again and again.
func TestTimerDelaySaturates(t *testing.T) {
	const now = 1_700_000_000_000
	for _, tc := range []struct {
		at   int64
		want time.Duration
	}{
		{now - 5, 0},
		{now, 0},
		{now + 1500, 1500 * time.Millisecond},
		{math.MaxInt64, time.Duration(math.MaxInt64)},
		{now + math.MaxInt64/int64(time.Millisecond) + 1, time.Duration(math.MaxInt64)},
		{math.MinInt64, 0},
	} {
		if got := timerDelay(tc.at, now); got != tc.want {
			t.Errorf("timerDelay(%d, now) = %v, want %v", tc.at, got, tc.want)
		}
	}
	if got := timerDelay(math.MaxInt64, math.MinInt64+1); got != time.Duration(math.MaxInt64) {
		t.Errorf("timerDelay(MaxInt64, MinInt64+1) = %v, want the longest wait", got)
	}
}

// TestAheadString: how far ahead an event time is reads short, also past
// the 292 years a time.Duration holds.
func TestAheadString(t *testing.T) {
	const day = 24 * 60 * 60 * 1000
	for ms, want := range map[int64]string{
		3_600_001:        "1h0m0s",
		90 * 60 * 1000:   "1h30m0s",
		3 * day:          "3d",
		400 * day:        "1y",
		14_928_000000000: "473y",
		math.MaxInt64:    "292271023y",
	} {
		if got := aheadString(ms); got != want {
			t.Errorf("aheadString(%d) = %q, want %q", ms, got, want)
		}
	}
}
