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
	const batch = 1024
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("u%d", i)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.Mallocs
	b.ResetTimer()
	ts := int64(1_700_000_000_000)
	for i := 0; i < b.N; i++ {
		for j := 0; j < batch; j++ {
			ts++
			st.SetCurrentKey(keys[(i*batch+j)%len(keys)])
			if _, err := k.Element(ts, int64(j)); err != nil {
				b.Fatal(err)
			}
		}
		if err := st.AdvanceWatermark(ts-200, k.Timer); err != nil {
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
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/record")
	b.ReportMetric(float64(ms.Mallocs-before)/float64(b.N*batch), "allocs/record")
}

// BenchmarkKeyedSession: the bench's session workload through the general
// window operator: batches of 1024 records, event time 0.1 ms apart, keys
// of 1000 drawn skewed (the smaller of two uniform draws, as the bench's
// generator does), a 1 s gap, a watermark 200 ms behind after each batch
// and a capture every 16 batches; it reports ns/record and allocs/record.
func BenchmarkKeyedSession(b *testing.B) {
	st := operator.NewKeyedState(operator.KeyedStateConfig{Track: true, Now: func() int64 { return 0 }})
	fired := 0
	k, err := NewKeyed(st, Config[int64, acc]{Assigner: SessionAssigner(1_000), Agg: testAgg,
		AccCodec: operator.JSONCodec[acc](), Name: "w"}, func(string, TimeWindow, acc) error { fired++; return nil })
	if err != nil {
		b.Fatal(err)
	}
	const batch = 1024
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("u%d", i)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.Mallocs
	b.ResetTimer()
	n := int64(0)
	const start = int64(1_700_000_000_000)
	for i := 0; i < b.N; i++ {
		for j := 0; j < batch; j++ {
			n++
			ts := start + n/10
			st.SetCurrentKey(keys[min(rng.IntN(len(keys)), rng.IntN(len(keys)))])
			if _, err := k.Element(ts, int64(j)); err != nil {
				b.Fatal(err)
			}
		}
		if err := st.AdvanceWatermark(start+n/10-200, k.Timer); err != nil {
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
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/record")
	b.ReportMetric(float64(ms.Mallocs-before)/float64(b.N*batch), "allocs/record")
	b.ReportMetric(float64(st.Len())/float64(len(keys)), "entries/key")
}
