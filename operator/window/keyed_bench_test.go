package window

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/weirstream/weir/operator"
)

// BenchmarkKeyedSliding: batches of 1024 records of 1000 keys through the
// general window operator with 10s windows sliding every 5s (the bench's
// sliding workload), a watermark after each batch and a capture every 16
// batches; it reports ns/record and allocs/record.
func BenchmarkKeyedSliding(b *testing.B) {
	st := operator.NewKeyedState(operator.KeyedStateConfig{Track: true, Now: func() int64 { return 0 }})
	k, err := NewKeyed(st, Config[int64, acc]{Assigner: SlidingAssigner(10_000, 5_000, 0), Agg: testAgg,
		AccCodec: operator.JSONCodec[acc](), Name: "w"}, func(string, TimeWindow, acc) error { return nil })
	if err != nil {
		b.Fatal(err)
	}
	ts := int64(1_700_000_000_000)
	runKeyed(b, st, k, func(i, j int) (string, int64) {
		ts++
		return keyNames[(i*keyedBatch+j)%len(keyNames)], ts
	}, func() int64 { return ts - 200 })
}

// BenchmarkKeyedSession: the bench's session workload through the general
// window operator: batches of 1024 records, event time 0.1 ms apart, keys
// of 1000 drawn skewed (the smaller of two uniform draws, as the bench's
// generator does), a 1 s gap, a watermark 200 ms behind after each batch
// and a capture every 16 batches; it reports ns/record and allocs/record.
func BenchmarkKeyedSession(b *testing.B) {
	st := operator.NewKeyedState(operator.KeyedStateConfig{Track: true, Now: func() int64 { return 0 }})
	k, err := NewKeyed(st, Config[int64, acc]{Assigner: SessionAssigner(1_000), Agg: testAgg,
		AccCodec: operator.JSONCodec[acc](), Name: "w"}, func(string, TimeWindow, acc) error { return nil })
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	n := int64(0)
	const start = int64(1_700_000_000_000)
	runKeyed(b, st, k, func(int, int) (string, int64) {
		n++
		return keyNames[min(rng.IntN(len(keyNames)), rng.IntN(len(keyNames)))], start + n/10
	}, func() int64 { return start + n/10 - 200 })
	b.ReportMetric(float64(st.Len())/float64(len(keyNames)), "entries/key")
}

// keyedBatch is the batch size of the keyed window benchmarks.
const keyedBatch = 1024

// keyNames are the benchmarks' 1000 keys.
var keyNames = func() []string {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("u%d", i)
	}
	return keys
}()

// runKeyed runs b.N batches of keyedBatch records through k, the key and
// event time of record j of batch i from next, a watermark from wm after
// each batch and a capture every 16 batches; it reports ns/record and
// allocs/record.
func runKeyed(b *testing.B, st *operator.KeyedState, k *Keyed[int64, acc], next func(i, j int) (string, int64), wm func() int64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.Mallocs
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < keyedBatch; j++ {
			key, ts := next(i, j)
			st.SetCurrentKey(key)
			if _, err := k.Element(ts, int64(j)); err != nil {
				b.Fatal(err)
			}
		}
		if err := st.AdvanceWatermark(wm(), k.Timer); err != nil {
			b.Fatal(err)
		}
		if i%16 == 15 {
			if _, err := st.Capture()(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*keyedBatch), "ns/record")
	b.ReportMetric(float64(ms.Mallocs-before)/float64(b.N*keyedBatch), "allocs/record")
}
