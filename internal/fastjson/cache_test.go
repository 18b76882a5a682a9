//go:build !goexperiment.jsonv2

package fastjson

import (
	"fmt"
	"testing"
)

// TestCacheAllocations: a repeating string costs no allocation, and a
// field of strings that never repeat soon stops paying for the cache. (Built
// without GOEXPERIMENT=jsonv2 only: with it the fast path and its cache are
// off, which TestHandWritten checks.)
func TestCacheAllocations(t *testing.T) {
	dd := NewDecoder[event]()
	in := []byte(`{"user":"u123","ts":1700000000000,"amount":73,"seq":42}`)
	if allocs := testing.AllocsPerRun(1000, func() {
		if _, err := dd.Decode(in); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("a repeating string: %v allocations per record, want 0", allocs)
	}
	// Unique strings: after a window of misses the field bypasses the cache.
	bufs := make([][]byte, 4*statWindow)
	for i := range bufs {
		bufs[i] = fmt.Appendf(nil, `{"user":"id-%08d"}`, i)
	}
	for _, b := range bufs[:2*statWindow] {
		dd.Decode(b)
	}
	if st := dd.d.cache.stats[0]; st.bypass == 0 {
		t.Errorf("after %d unique strings the field still uses the cache: %+v", 2*statWindow, st)
	}
}
