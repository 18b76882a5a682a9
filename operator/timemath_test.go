package operator

import (
	"math"
	"testing"
)

func TestSaturatingTimeArithmetic(t *testing.T) {
	const maxT, minT = math.MaxInt64, math.MinInt64
	for _, tc := range []struct {
		a, b, add, sub int64
	}{
		{1, 2, 3, -1},
		{maxT - 1, 5, maxT, maxT - 6},
		{minT + 1, 5, minT + 6, minT},
		{maxT, maxT, maxT, 0},
		{minT, minT, minT, 0},
		{minT, maxT, -1, minT},
		{maxT, minT, -1, maxT},
		{0, minT, minT, maxT},
	} {
		if got := AddSat(tc.a, tc.b); got != tc.add {
			t.Errorf("AddSat(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.add)
		}
		if got := SubSat(tc.a, tc.b); got != tc.sub {
			t.Errorf("SubSat(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.sub)
		}
	}
}
