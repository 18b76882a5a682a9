package operator

import "math"

// Timestamps are int64 milliseconds and may come from anywhere (a
// producer's clock, a user's timestamp function), so arithmetic on them
// saturates at the ends of the int64 range instead of wrapping around: a
// wrapped time would put a record from the end of time at its start.

// AddSat returns a+b, or the end of the int64 range it would pass.
func AddSat(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	if b < 0 && a < math.MinInt64-b {
		return math.MinInt64
	}
	return a + b
}

// SubSat returns a-b, or the end of the int64 range it would pass.
func SubSat(a, b int64) int64 {
	if b < 0 && a > math.MaxInt64+b {
		return math.MaxInt64
	}
	if b > 0 && a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}
