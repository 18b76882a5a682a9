package weir

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkKeyCache: the decoders' key strings (keyCache.get) over keys
// drawn uniformly from 10^3 and 10^6 distinct ones, as Q1 reads them.
func BenchmarkKeyCache(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			keys := make([][]byte, 1<<20)
			for i := range keys {
				keys[i] = fmt.Appendf(nil, "user-%d", rng.IntN(n))
			}
			var c keyCache
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if s := c.get(keys[i&(len(keys)-1)]); len(s) == 0 {
					b.Fatal("empty key")
				}
			}
		})
	}
}
