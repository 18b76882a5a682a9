package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/examples/internal/extest"
	"github.com/weirstream/weir/integration/verify"
)

var seedFlag = flag.Int64("seed", 0, "seed of the generated input (0: from the clock)")

const (
	partitions = 4
	windowMs   = 500
	boundMs    = 100 // the job's out-of-orderness
)

func seed(t *testing.T) int64 {
	s := *seedFlag
	if s == 0 {
		s = time.Now().UnixNano()
	}
	t.Logf("seed %d (go test -run '%s$' -seed %d repeats this input)", s, t.Name(), s)
	return s
}

// TestWindowLate runs the job on an in-process broker (kfake),
// exactly-once with parallelism 2, in two phases: it reads the first half
// of the input; once a checkpoint taken after that has completed (so the
// window operator has the watermark that half gives), the second half is
// produced, in which one record in 50 belongs to a window that this
// watermark has passed; then the job is drained. Those records, and only
// those, must be in the late topic, and the results, read with
// read_committed, must be the count and sum per key and window of every
// other record, each exactly once.
func TestWindowLate(t *testing.T) {
	g := newGenerator(seed(t))
	phase1 := g.events(2500, nil)
	// The watermark once phase 1 is read: the smallest over the partitions
	// of the newest event time minus the bound minus 1 ms.
	newest := map[int32]int64{}
	for _, e := range phase1 {
		p := verify.Partition(e, partitions)
		newest[p] = max(newest[p], e.TS)
	}
	if len(newest) != partitions {
		t.Fatalf("phase 1 has events on %d partitions, want %d", len(newest), partitions)
	}
	wm := int64(math.MaxInt64)
	for _, ts := range newest {
		wm = min(wm, ts-boundMs-1)
	}
	lateTS := func(rng *rand.Rand) int64 {
		// A window whose last millisecond is at or before wm.
		return wm - windowMs - rng.Int64N(1500)
	}
	phase2 := g.events(2500, lateTS)
	events := append(append([]verify.Event(nil), phase1...), phase2...)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers := extest.StartKafka(t, partitions, "in", "out", "late")
	if err := verify.Produce(ctx, brokers, "in", phase1, partitions); err != nil {
		t.Fatal(err)
	}

	var lateCount atomic.Int64
	cfg := testConfig(t, brokers)
	cfg.Late, cfg.LateCount, cfg.Bounded = "late", &lateCount, false
	var (
		job      *weir.Job
		armedAt  atomic.Uint64
		readOnce sync.Once
		read     = make(chan struct{}) // phase 1 is read and its watermark is at the window operator
	)
	job, err := buildJob(cfg).Build(weir.WithCheckpointListener(func(id uint64, _ bool) {
		if job.Stats().RecordsIn < int64(len(phase1)) {
			return
		}
		if armedAt.Load() == 0 {
			armedAt.Store(id + 1) // triggered after phase 1 and its watermark were sent
			return
		}
		if id >= armedAt.Load() {
			readOnce.Do(func() { close(read) })
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	select {
	case <-read:
	case err := <-done:
		t.Fatalf("the job ended before reading phase 1: %v", err)
	}
	if err := verify.Produce(ctx, brokers, "in", phase2, partitions); err != nil {
		t.Fatal(err)
	}
	job.Drain()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := job.Stats()
	t.Logf("stats: records in %d, results out %d, checkpoints %d", st.RecordsIn, st.ResultsOut, st.Checkpoints)
	if st.RecordsIn != int64(len(events)) {
		t.Errorf("the job read %d records, want %d", st.RecordsIn, len(events))
	}

	values, err := verify.ReadAll(ctx, brokers, "late", verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	late := map[int64]bool{}
	for _, v := range values {
		e, err := verify.ParseEvent(v)
		if err != nil {
			t.Fatal(err)
		}
		if late[e.Seq] {
			t.Fatalf("late record %s written twice", v)
		}
		if !g.late[e.Seq] {
			t.Errorf("record %s went to the late topic; its window had not fired", v)
		}
		late[e.Seq] = true
	}
	for seq := range g.late {
		if !late[seq] {
			t.Errorf("record %+v is not in the late topic", events[seq])
		}
	}
	if int64(len(late)) != lateCount.Load() {
		t.Errorf("%d late records written, %d counted", len(late), lateCount.Load())
	}

	var onTime []verify.Event
	for _, e := range events {
		if !g.late[e.Seq] {
			onTime = append(onTime, e)
		}
	}
	got := readResults(ctx, t, brokers, "out")
	checkResults(t, got, expected(onTime))
	t.Logf("%d records, %d late, %d results exactly once and right", len(events), len(late), len(got))
}

// TestWindowMatchesBuiltin runs the example and the built-in window job
// (weir.NewJob, kind window) on the same input without late records:
// both must write the same records, byte for byte, and the results must
// be the count and sum per key and window computed here.
func TestWindowMatchesBuiltin(t *testing.T) {
	events := newGenerator(seed(t)).events(5000, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers := extest.StartKafka(t, partitions, "in", "out", "builtin-out")
	if err := verify.Produce(ctx, brokers, "in", events, partitions); err != nil {
		t.Fatal(err)
	}

	job, err := buildJob(testConfig(t, brokers)).Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Run(ctx); err != nil {
		t.Fatal(err)
	}
	builtin, err := weir.NewJob(weir.JobSpec{
		Name: "builtin-window", Brokers: brokers, Parallelism: 2,
		Source:         weir.SourceSpec{Topic: "in", Start: weir.StartSpec{Mode: weir.StartEarliest}, Bounded: weir.BoundLatest},
		KeyField:       "user",
		TimestampField: "ts",
		Window:         weir.WindowSpec{Size: windowMs * time.Millisecond, OutOfOrderness: boundMs * time.Millisecond},
		Aggregate:      weir.AggregateSpec{ValueField: "amount"},
		Sink:           weir.SinkSpec{Topic: "builtin-out"},
		Delivery:       weir.ExactlyOnce,
		Checkpoint:     weir.CheckpointSpec{Interval: 50 * time.Millisecond, Dir: t.TempDir()},
	}, weir.WithLogger(extest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := builtin.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if st := builtin.Stats(); st.LateDropped != 0 {
		t.Fatalf("the built-in job dropped %d late records; the input has none", st.LateDropped)
	}

	got := readResults(ctx, t, brokers, "out")
	checkResults(t, got, expected(events))
	mine, err := verify.ReadAll(ctx, brokers, "out", verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := verify.ReadAll(ctx, brokers, "builtin-out", verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	asStrings := func(vs [][]byte) []string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = string(v)
		}
		slices.Sort(out)
		return out
	}
	a, b := asStrings(mine), asStrings(theirs)
	if !slices.Equal(a, b) {
		t.Errorf("%d records, the built-in job %d", len(a), len(b))
		for i := 0; i < min(len(a), len(b)); i++ {
			if a[i] != b[i] {
				t.Fatalf("first difference: %s, the built-in job %s", a[i], b[i])
			}
		}
		t.FailNow()
	}
	t.Logf("%d records, %d results, byte for byte those of the built-in job (first %s)", len(events), len(a), a[0])
}

func testConfig(t *testing.T, brokers string) config {
	return config{
		Brokers: brokers, In: "in", Out: "out",
		KeyField: "user", TimestampField: "ts", ValueField: "amount",
		Window: windowMs * time.Millisecond, OutOfOrderness: boundMs * time.Millisecond,
		CheckpointDir: t.TempDir(), CheckpointInterval: 50 * time.Millisecond,
		Parallelism: 2, ExactlyOnce: true, Bounded: true,
		Logger: extest.Logger(t),
	}
}

// generator makes events of 40 keys, about one per ms of event time, a
// quarter of them up to boundMs behind the newest event time so far (so
// never late).
type generator struct {
	rng   *rand.Rand
	clock int64
	seq   int64
	late  map[int64]bool // seqs of the records made late
}

func newGenerator(seed int64) *generator {
	return &generator{rng: rand.New(rand.NewPCG(uint64(seed), 0)), clock: 1_764_028_800_000, late: map[int64]bool{}}
}

// events returns the next n events in production order; with lateTS, one
// in 50 gets the event time lateTS returns and is recorded as late.
func (g *generator) events(n int, lateTS func(*rand.Rand) int64) []verify.Event {
	out := make([]verify.Event, n)
	for i := range out {
		g.clock += g.rng.Int64N(3)
		ts := g.clock
		switch {
		case lateTS != nil && g.rng.IntN(50) == 0:
			ts = lateTS(g.rng)
			g.late[g.seq] = true
		case g.rng.IntN(4) == 0:
			ts = g.clock - g.rng.Int64N(boundMs+1)
		}
		out[i] = verify.Event{Key: fmt.Sprintf("u%d", g.rng.IntN(40)), TS: ts, Amount: 1 + g.rng.Int64N(100), Seq: g.seq}
		g.seq++
	}
	return out
}

func windowStartOf(ts int64) int64 { return ts - ts%windowMs } // ts > 0 here

// expected is the count and sum per key and window of events.
func expected(events []verify.Event) []verify.Result {
	type id struct {
		key   string
		start int64
	}
	m := map[id]*verify.Result{}
	for _, e := range events {
		k := id{e.Key, windowStartOf(e.TS)}
		r := m[k]
		if r == nil {
			r = &verify.Result{Key: e.Key, WindowStart: k.start, WindowEnd: k.start + windowMs}
			m[k] = r
		}
		r.Count++
		r.Sum += float64(e.Amount)
	}
	out := make([]verify.Result, 0, len(m))
	for _, r := range m {
		out = append(out, *r)
	}
	return out
}

// checkResults compares results, in any order.
func checkResults(t *testing.T, got, want []verify.Result) {
	t.Helper()
	order := func(a, b verify.Result) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.WindowStart, b.WindowStart))
	}
	slices.SortFunc(got, order)
	slices.SortFunc(want, order)
	if slices.Equal(got, want) {
		return
	}
	t.Errorf("%d results, want %d", len(got), len(want))
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w verify.Result
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Fatalf("first difference at %d: %v, want %v", i, g, w)
		}
	}
}

// readResults reads topic with read_committed; every record's key must be
// its result's key.
func readResults(ctx context.Context, t *testing.T, brokers, topic string) []verify.Result {
	t.Helper()
	rs, err := verify.ReadResults(ctx, brokers, topic, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestResultFormat: a result is the built-in job's JSON, and a key that
// needs escaping still gives JSON that reads back.
func TestResultFormat(t *testing.T) {
	for _, key := range []string{"u17", "a<b>&c", `q"uote\`, "tab\tnewline\n", "é€"} {
		r := Result{Key: key, WindowStart: 1764028800000, WindowEnd: 1764028810000, Count: 3, Sum: 51.5}
		k, v, err := resultFormat{}.Encode(r)
		if err != nil || string(k) != key {
			t.Fatalf("%q: key %q, err %v", key, k, err)
		}
		back, err := resultFormat{}.Decode(k, v)
		if err != nil || back != r {
			t.Fatalf("%q: %s reads back as %+v (%v)", key, v, back, err)
		}
	}
	_, v, _ := resultFormat{}.Encode(Result{Key: "u17", WindowStart: 1764028800000, WindowEnd: 1764028810000, Count: 3, Sum: 51})
	if want := `{"key":"u17","window_start":1764028800000,"window_end":1764028810000,"count":3,"sum":51}`; string(v) != want {
		t.Fatalf("%s, want %s", v, want)
	}
}
