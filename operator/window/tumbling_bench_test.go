package window

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkTumblingAdd: Add over keys drawn from 10^3 and 10^6 distinct
// ones, event time advancing 1 ms per record in 10 s windows, a capture
// (encoded) every 100,000 records and the windows fired as they close, as
// Q1 runs it. One op is one record.
func BenchmarkTumblingAdd(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			keys := make([]string, 1<<20)
			for i := range keys {
				keys[i] = fmt.Sprintf("user-%d", rng.IntN(n))
			}
			w := NewTumbling(10_000, true)
			fired := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ts := int64(i)
				w.Add(keys[i&(len(keys)-1)], ts, 1.5)
				if i%100_000 == 99_999 {
					encode, _ := w.Capture()
					if _, err := encode(); err != nil {
						b.Fatal(err)
					}
					w.Fire(ts-1_000, func(Result) { fired++ })
				}
			}
		})
	}
}
