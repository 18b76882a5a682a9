package operator_test

import (
	"fmt"

	"github.com/weirstream/weir/operator"
)

// A count per key and event-time window of 10 ms, emitted by a timer at
// the end of each window.
func ExampleKeyedState() {
	s := operator.NewKeyedState(operator.KeyedStateConfig{Track: true})
	if err := s.Restore(nil); err != nil { // Open, on a fresh start
		panic(err)
	}
	// Window end -> count, per key.
	counts, err := operator.Map(s, "counts", operator.Int64Codec(), operator.Int64Codec())
	if err != nil {
		panic(err)
	}
	for _, r := range []operator.Rec[int]{{TS: 1, Key: "a"}, {TS: 4, Key: "b"}, {TS: 7, Key: "a"}, {TS: 12, Key: "a"}} {
		end := r.TS - r.TS%10 + 9 // the window's last millisecond
		s.SetCurrentKey(r.Key)
		n, _ := counts.Get(end)
		counts.Put(end, n+1)
		s.RegisterEventTimer(end)
	}
	entries := s.Capture() // Snapshot: hand this to the snapshot worker
	err = s.AdvanceWatermark(10, func(key string, end int64) error {
		n, _ := counts.Get(end)
		fmt.Printf("window ending %d: %s=%d\n", end, key, n)
		counts.Remove(end)
		return nil
	})
	if err != nil {
		panic(err)
	}
	es, err := entries()
	fmt.Println(len(es), "entries captured,", err, "-", s.Len(), "left")
	// Output:
	// window ending 9: a=2
	// window ending 9: b=1
	// 6 entries captured, <nil> - 2 left
}
