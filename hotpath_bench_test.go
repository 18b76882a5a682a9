package weir

import (
	"math"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/integration/verify"
	"github.com/weirstream/weir/operator"
	"github.com/weirstream/weir/operator/window"
)

// The per-record cost of the built-in hot paths, without Kafka: decoding
// a poll's records (the consume side), aggregating them, and encoding the
// results (the produce side). Each benchmark reports ns/record and
// allocs/record over batches of benchBatch records, the figures the
// Throughput issue tracks (go test -run '^$' -bench . -benchmem .).

const benchBatch = 1024

func benchEvents(b *testing.B) [][]byte {
	b.Helper()
	events, err := verify.Generate(verify.GenConfig{Seed: 1, Keys: 1000, Partitions: 1, Events: benchBatch,
		Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	values := make([][]byte, len(events))
	for i, e := range events {
		values[i] = e.AppendJSON(nil)
	}
	return values
}

// perRecord reports the figures per record of b.N batches of n records.
func perRecord(b *testing.B, n int, allocsBefore, allocsAfter uint64) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	b.ReportMetric(float64(allocsAfter-allocsBefore)/float64(b.N*n), "allocs/record")
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// decodeAll decodes and keeps every value, as a poll does, and takes the
// batch.
func decodeAll(b *testing.B, d actors.Decoder, values [][]byte) any {
	for off, v := range values {
		if _, err := d.Decode(nil, v, 0, 0, int64(off)); err != nil {
			b.Fatal(err)
		}
		d.Keep()
	}
	data, _ := d.Take()
	return data
}

// benchDecode measures decodeAll of values with d, b.N times.
func benchDecode(b *testing.B, d actors.Decoder, values [][]byte) {
	b.ResetTimer()
	before := mallocs()
	for i := 0; i < b.N; i++ {
		decodeAll(b, d, values)
	}
	perRecord(b, len(values), before, mallocs())
}

// BenchmarkConsumeWindowRecords: the window job's decoder (JSON field
// extraction of key, event time and value) over one poll's records.
func BenchmarkConsumeWindowRecords(b *testing.B) {
	values := benchEvents(b)
	d := &extractDecoder{extract: actors.JSONExtractor("user", "ts", "amount")}
	benchDecode(b, d, values)
}

// BenchmarkConsumeWindowPartials: the fast window job's decoder (the same
// extraction, each record folded into its key's partial of the poll)
// over one poll's records.
func BenchmarkConsumeWindowPartials(b *testing.B) {
	values := benchEvents(b)
	d := newCombineDecoder(actors.JSONExtractor("user", "ts", "amount"), 10_000)
	benchDecode(b, d, values)
}

// BenchmarkConsumeJSONFormat: the dataflow API's JSON format decoder with
// an EventTime function over one poll's records.
func BenchmarkConsumeJSONFormat(b *testing.B) {
	values := benchEvents(b)
	d := &decoder[ev]{format: JSON[ev](), ts: func(e ev) int64 { return e.TS }}
	benchDecode(b, d, values)
}

// BenchmarkOperatorTumbling: one batch of decoded records through the
// tumbling count/sum window operator (1000 keys), with a watermark after
// each batch and checkpoints on.
func BenchmarkOperatorTumbling(b *testing.B) {
	values := benchEvents(b)
	d := &extractDecoder{extract: actors.JSONExtractor("user", "ts", "amount")}
	data := decodeAll(b, d, values)
	recs := data.([]operator.Rec[float64])
	w := window.NewTumbling(1000, true)
	span := recs[len(recs)-1].TS - recs[0].TS + 1
	b.ResetTimer()
	before := mallocs()
	for i := 0; i < b.N; i++ {
		shift := int64(i) * span
		for _, r := range recs {
			w.Add(r.Key, r.TS+shift, r.V)
		}
		w.Fire(recs[len(recs)-1].TS+shift-200, func(window.Result) {})
		if i%16 == 15 {
			w.Capture()
		}
	}
	perRecord(b, len(recs), before, mallocs())
}

// BenchmarkProduceWindowResults: encoding window results as the job's
// JSON into the sink's batches (the records handed to the producer).
func BenchmarkProduceWindowResults(b *testing.B) {
	results := make([]operator.Rec[window.Result], benchBatch)
	for i := range results {
		results[i] = operator.Rec[window.Result]{V: window.Result{Key: "u" + string(rune('a'+i%26)), Start: 1_700_000_000_000, Count: int64(i), Sum: float64(i) * 1.5}}
	}
	sent := 0
	w := newRawBatch[window.Result](resultFormat{sizeMillis: 1000}, func(_ int, _ any, n int) { sent += n }, 0, benchBatch,
		func(err error) { b.Fatal(err) })
	b.ResetTimer()
	before := mallocs()
	for i := 0; i < b.N; i++ {
		for _, r := range results {
			w.Emit(r)
		}
		w.flush()
	}
	perRecord(b, len(results), before, mallocs())
	if sent != b.N*len(results) {
		b.Fatalf("sent %d records, want %d", sent, b.N*len(results))
	}
}

// runningTotal is the bench dataflow workload's result record
// (bench/childmain.go).
type runningTotal struct {
	User  string `json:"user"`
	Seq   int64  `json:"seq"`
	Count int64  `json:"count"`
	Sum   int64  `json:"sum"`
}

// BenchmarkProduceKeyedJSON: encoding the dataflow workload's results
// with KeyedJSON (the user as key) into the sink's batches.
func BenchmarkProduceKeyedJSON(b *testing.B) {
	results := make([]operator.Rec[runningTotal], benchBatch)
	for i := range results {
		results[i] = operator.Rec[runningTotal]{V: runningTotal{User: "u" + strconv.Itoa(i%1000), Seq: int64(i), Count: int64(i % 17), Sum: int64(i) * 37}}
	}
	sent := 0
	w := newRawBatch[runningTotal](KeyedJSON(func(t runningTotal) string { return t.User }), func(_ int, _ any, n int) { sent += n }, 0, benchBatch,
		func(err error) { b.Fatal(err) })
	b.ResetTimer()
	before := mallocs()
	for i := 0; i < b.N; i++ {
		for _, r := range results {
			w.Emit(r)
		}
		w.flush()
	}
	perRecord(b, len(results), before, mallocs())
	if sent != b.N*len(results) {
		b.Fatalf("sent %d records, want %d", sent, b.N*len(results))
	}
}

// BenchmarkWindowJobPoll: the window job's work on one poll of 4096 of
// the bench's events over 1000 keys (Q1 at 10^3 keys, 10s windows) past
// the consumer: decoding, the key exchange to two window subtasks and
// their windows, with a watermark after each poll. sub-benchmark records
// is the path of one record at a time, partials the job's path (records
// folded per key and window in the source; see combineDecoder).
func BenchmarkWindowJobPoll(b *testing.B) {
	const pollRecords, size = 4096, 10_000
	events, err := verify.Generate(verify.GenConfig{Seed: 1, Keys: 1000, Partitions: 1, Events: 64 * pollRecords,
		Start: 1_700_000_000_000, Step: 100 * time.Microsecond, OutOfOrderness: 500 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	values := make([][]byte, len(events))
	for i, e := range events {
		values[i] = e.AppendJSON(nil)
	}
	extract := actors.JSONExtractor("user", "ts", "amount")
	run := func(b *testing.B, d actors.Decoder, flush func(), ws []*window.Tumbling, emitAll func(data any)) {
		b.ResetTimer()
		before := mallocs()
		polls := len(values) / pollRecords
		for i := 0; i < b.N; i++ {
			p := i % polls
			if p == 0 && i > 0 {
				// The input again, to windows that have not seen it.
				for j := range ws {
					ws[j].Fire(math.MaxInt64, func(window.Result) {})
					ws[j] = window.NewTumbling(size, true)
				}
			}
			var maxTS int64
			for _, v := range values[p*pollRecords : (p+1)*pollRecords] {
				ts, err := d.Decode(nil, v, 0, 0, 0)
				if err != nil {
					b.Fatal(err)
				}
				d.Keep()
				maxTS = max(maxTS, ts)
			}
			data, _ := d.Take()
			emitAll(data)
			flush()
			for _, w := range ws {
				w.Fire(maxTS-500, func(window.Result) {})
			}
		}
		perRecord(b, pollRecords, before, mallocs())
	}
	b.Run("records", func(b *testing.B) {
		ws := []*window.Tumbling{window.NewTumbling(size, true), window.NewTumbling(size, true)}
		em, flush := portFor[float64]().exchange(func(t int, data any, _ int) {
			for _, r := range data.([]operator.Rec[float64]) {
				ws[t].Add(r.Key, r.TS, r.V)
			}
		}, []int{0, 1}, recordKey{}, 1024)
		x := em.(emitter[float64])
		run(b, &extractDecoder{extract: extract}, flush, ws, func(data any) {
			for _, r := range data.([]operator.Rec[float64]) {
				x.Emit(r)
			}
		})
	})
	b.Run("partials", func(b *testing.B) {
		ws := []*window.Tumbling{window.NewTumbling(size, true), window.NewTumbling(size, true)}
		em, flush := portFor[partial]().exchange(func(t int, data any, _ int) {
			for _, r := range data.([]operator.Rec[partial]) {
				ws[t].AddN(r.Key, r.TS, r.V.n, r.V.sum)
			}
		}, []int{0, 1}, recordKey{}, 1024)
		x := em.(emitter[partial])
		run(b, newCombineDecoder(extract, size), flush, ws, func(data any) {
			for _, r := range data.([]operator.Rec[partial]) {
				x.Emit(r)
			}
		})
	})
}
