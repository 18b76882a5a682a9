//go:build !goexperiment.jsonv2

package fastjson

import "testing"

// TestEncodeAllocations: an eligible type into a buffer with room costs
// no allocation. (Built without GOEXPERIMENT=jsonv2 only: with it the
// fast path is off.)
func TestEncodeAllocations(t *testing.T) {
	buf := make([]byte, 0, 1024)
	e := NewEncoder[runningTotal]()
	v := runningTotal{User: "u123", Seq: 42, Count: 3, Sum: 120}
	if allocs := testing.AllocsPerRun(1000, func() {
		var err error
		if buf, err = e.AppendJSON(buf[:0], v); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("runningTotal: %v allocations per record, want 0", allocs)
	}
	eq := NewEncoder[quotedTags]()
	s, i := "a\"<\u2028", int64(3)
	q := quotedTags{S: s, PS: &s, PI: &i, PIn: &inner{B: s}, F64: 1e-9, HTML: "\xff"}
	if allocs := testing.AllocsPerRun(1000, func() {
		var err error
		if buf, err = eq.AppendJSON(buf[:0], q); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("quotedTags: %v allocations per record, want 0", allocs)
	}
}

// TestMarshalAllocations: Marshal of an eligible type allocates the
// result only.
func TestMarshalAllocations(t *testing.T) {
	v := runningTotal{User: "u123", Seq: 42, Count: 3, Sum: 120}
	if allocs := testing.AllocsPerRun(1000, func() {
		if _, err := Marshal(v); err != nil {
			t.Fatal(err)
		}
	}); allocs != 1 {
		t.Errorf("Marshal: %v allocations per record, want 1 (the result)", allocs)
	}
}
