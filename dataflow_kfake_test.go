package weir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/integration/verify"
)

// ev is the generator's event as a program reads it.
type ev struct {
	User   string `json:"user"`
	TS     int64  `json:"ts"`
	Amount int64  `json:"amount"`
	Seq    int64  `json:"seq"`
}

// dataflowFixture is a kfake cluster with the input produced and the
// topics a dataflow test writes.
func dataflowFixture(t *testing.T, gen verify.GenConfig, topics ...string) *fixture {
	t.Helper()
	return dataflowFixtureHeld(t, gen, false, topics...)
}

// dataflowFixtureHeld is dataflowFixture producing only the first half of
// the events when hold is set; f.produceHeld produces the rest.
func dataflowFixtureHeld(t *testing.T, gen verify.GenConfig, hold bool, topics ...string) *fixture {
	t.Helper()
	return startFixture(t, gen, hold, append([]string{"in"}, topics...)...)
}

// readJSON reads topic with read_committed and decodes every value.
func readJSON[T any](f *fixture, topic string) []T {
	f.t.Helper()
	values, err := verify.ReadAll(f.ctx, f.brokers, topic, verify.ReadCommitted)
	if err != nil {
		f.t.Fatal(err)
	}
	out := make([]T, len(values))
	for i, v := range values {
		if err := json.Unmarshal(v, &out[i]); err != nil {
			f.t.Fatalf("%s record %d: %v: %q", topic, i, err, v)
		}
	}
	return out
}

type bigSpend struct {
	User  string `json:"user"`
	Seq   int64  `json:"seq"`
	Cents int64  `json:"cents"`
}

// TestDataflowPipelineOnKfake: filter, map, flatMap and a side output to
// a second topic, exactly-once, parallelism 2; both topics hold exactly
// what the input says.
func TestDataflowPipelineOnKfake(t *testing.T) {
	f := dataflowFixture(t, verify.GenConfig{Seed: 5, Keys: 50, Partitions: 4, Events: 5000}, "out", "small")
	env := NewEnv("pipeline", Brokers(f.brokers), Parallelism(2), Guarantee(ExactlyOnce),
		Checkpoints(50*time.Millisecond, t.TempDir()))
	in := FromKafka(env, "in", JSON[ev](), FromEarliest(), BoundedAtLatest())
	small := NewOutputTag[ev]("small")
	big := Transform(in, func(ctx *Context[ev], e ev) error {
		if e.Amount < 50 {
			small.Emit(ctx, e)
			return nil
		}
		ctx.Emit(e)
		return nil
	})
	cents := Map(Filter(big, func(e ev) bool { return e.Amount%2 == 0 }), func(e ev) bigSpend {
		return bigSpend{User: e.User, Seq: e.Seq, Cents: e.Amount * 100}
	})
	twice := FlatMap(cents, func(b bigSpend, emit func(bigSpend)) { emit(b); b.Seq = -b.Seq - 1; emit(b) })
	ToKafka(twice, "out", JSON[bigSpend](), SinkUID("big"))
	ToKafka(SideOutput(big, small), "small", JSON[ev](), SinkUID("small"))
	if err := env.Run(f.ctx); err != nil {
		t.Fatal(err)
	}

	wantOut := map[int64]bigSpend{}
	wantSmall := map[int64]ev{}
	for _, e := range f.events {
		switch {
		case e.Amount < 50:
			wantSmall[e.Seq] = ev{User: e.Key, TS: e.TS, Amount: e.Amount, Seq: e.Seq}
		case e.Amount%2 == 0:
			wantOut[e.Seq] = bigSpend{User: e.Key, Seq: e.Seq, Cents: e.Amount * 100}
			wantOut[-e.Seq-1] = bigSpend{User: e.Key, Seq: -e.Seq - 1, Cents: e.Amount * 100}
		}
	}
	gotOut := readJSON[bigSpend](f, "out")
	if len(gotOut) != len(wantOut) {
		t.Fatalf("out: %d records, want %d", len(gotOut), len(wantOut))
	}
	for _, g := range gotOut {
		if w, ok := wantOut[g.Seq]; !ok || w != g {
			t.Fatalf("out: %+v, want %+v (present %v)", g, w, ok)
		}
		delete(wantOut, g.Seq)
	}
	gotSmall := readJSON[ev](f, "small")
	if len(gotSmall) != len(wantSmall) {
		t.Fatalf("small: %d records, want %d", len(gotSmall), len(wantSmall))
	}
	for _, g := range gotSmall {
		if w, ok := wantSmall[g.Seq]; !ok || w != g {
			t.Fatalf("small: %+v, want %+v", g, w)
		}
		delete(wantSmall, g.Seq)
	}
	t.Logf("out and small hold exactly the expected records (%d and %d)", len(gotOut), len(gotSmall))
}

// windowSum is the result of sumPerSecond: the sum and count of one
// user's amounts in one second of event time.
type windowSum struct {
	User  string `json:"user"`
	Start int64  `json:"start"`
	Sum   int64  `json:"sum"`
	Count int64  `json:"count"`
}

// sumPerSecond is a tumbling one-second window written as a keyed process
// function: map state from window start to the running sum, an event-time
// timer per window.
type sumPerSecond struct {
	sums   *MapState[int64, windowSum]
	seen   *ValueState[int64]
	late   OutputTag[ev]
	timers int
}

func (s *sumPerSecond) Open(ctx *OpenContext) error {
	var err error
	if s.sums, err = MapStateOf[int64, windowSum](ctx, "sums"); err != nil {
		return err
	}
	s.seen, err = ValueStateOf[int64](ctx, "seen")
	return err
}

func (s *sumPerSecond) OnElement(ctx *Context[windowSum], e ev) error {
	if e.TS <= ctx.CurrentWatermark() {
		s.late.Emit(ctx, e)
		return nil
	}
	start := e.TS - e.TS%1000
	w, _ := s.sums.Get(start)
	w.User, w.Start = ctx.Key(), start
	w.Sum += e.Amount
	w.Count++
	s.sums.Put(start, w)
	n, _ := s.seen.Value()
	s.seen.Update(n + 1)
	ctx.RegisterEventTimer(start + 999)
	return nil
}

func (s *sumPerSecond) OnTimer(ctx *Context[windowSum], ts int64) error {
	start := ts - 999
	w, ok := s.sums.Get(start)
	if !ok {
		return fmt.Errorf("timer %d of key %s: no window %d", ts, ctx.Key(), start)
	}
	s.sums.Remove(start)
	ctx.Emit(w)
	return nil
}

// TestDataflowProcessOnKfake: a keyed Process with map and value state and
// event-time timers computes per-user one-second sums, exactly-once, with
// late records to a side output; the output equals the sums computed from
// the input (every record is on time here: the watermark trails by the
// generator's bound).
func TestDataflowProcessOnKfake(t *testing.T) {
	f := dataflowFixture(t, verify.GenConfig{Seed: 9, Keys: 30, Partitions: 4, Events: 8000}, "sums", "late")
	env := NewEnv("sums", Brokers(f.brokers), Parallelism(2), Guarantee(ExactlyOnce),
		Checkpoints(40*time.Millisecond, t.TempDir()))
	late := NewOutputTag[ev]("late")
	in := FromKafka(env, "in", JSON[ev](), FromEarliest(), BoundedAtLatest(),
		EventTime(func(e ev) int64 { return e.TS }, 100*time.Millisecond))
	sums := Process(KeyBy(in, func(e ev) string { return e.User }), &sumPerSecond{late: late}, UID("sum-per-second"))
	ToKafka(sums, "sums", JSON[windowSum]())
	ToKafka(SideOutput(sums, late), "late", JSON[ev]())
	if err := env.Run(f.ctx); err != nil {
		t.Fatal(err)
	}
	checkSums(f, "sums")
}

// checkSums checks that topic holds every user's one-second sums of the
// fixture's events exactly once, and that "late" is empty.
func checkSums(f *fixture, topic string) {
	t := f.t
	t.Helper()
	want := map[[2]any]windowSum{}
	for _, e := range f.events {
		start := e.TS - e.TS%1000
		w := want[[2]any{e.Key, start}]
		w.User, w.Start = e.Key, start
		w.Sum += e.Amount
		w.Count++
		want[[2]any{e.Key, start}] = w
	}
	got := readJSON[windowSum](f, topic)
	if lateRecs := readJSON[ev](f, "late"); len(lateRecs) != 0 {
		t.Fatalf("%d late records, want none (first %+v)", len(lateRecs), lateRecs[0])
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Start < got[j].Start })
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d", len(got), len(want))
	}
	for _, g := range got {
		k := [2]any{g.User, g.Start}
		if w, ok := want[k]; !ok || w != g {
			t.Fatalf("result %+v, want %+v", g, w)
		}
		delete(want, k)
	}
	t.Logf("all %d per-user sums exactly once and right", len(got))
}

// sumsEnv is the graph of TestDataflowProcessOnKfake: uid names the
// Process; more, when set, adds operators after it.
func sumsEnv(f *fixture, dir string, bounded bool, uid string, more func(Stream[windowSum])) *Env {
	env := NewEnv("sums", Brokers(f.brokers), Parallelism(2), Guarantee(ExactlyOnce),
		Checkpoints(40*time.Millisecond, dir))
	late := NewOutputTag[ev]("late")
	opts := []SourceOption{FromEarliest(), SourceUID("in"), EventTime(func(e ev) int64 { return e.TS }, 100*time.Millisecond)}
	if bounded {
		opts = append(opts, BoundedAtLatest())
	}
	in := FromKafka(env, "in", JSON[ev](), opts...)
	sums := Process(KeyBy(in, func(e ev) string { return e.User }), &sumPerSecond{late: late}, UID(uid))
	ToKafka(sums, "sums", JSON[windowSum](), SinkUID("sums"))
	ToKafka(SideOutput(sums, late), "late", JSON[ev](), SinkUID("late"))
	if more != nil {
		more(sums)
	}
	return env
}

// TestDataflowSavepointChangedProgram: a savepoint of the keyed Process
// job restores into a program with an operator and a sink added, by
// operator id; a program whose Process has another id is refused with
// one line naming the id, unless AllowNonRestoredState.
func TestDataflowSavepointChangedProgram(t *testing.T) {
	f := dataflowFixtureHeld(t, verify.GenConfig{Seed: 13, Keys: 30, Partitions: 4, Events: 6000}, true, "sums", "late", "counts")
	dir := t.TempDir()
	// Take the savepoint once a checkpoint holds the whole first half, and
	// stop there.
	var job *Job
	half := make(chan struct{}, 1)
	job, err := sumsEnv(f, dir, false, "sum-per-second", nil).Build(WithCheckpointListener(func(uint64, bool) {
		if job.Stats().RecordsIn == int64(len(f.events)/2) {
			select {
			case half <- struct{}{}:
			default:
			}
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- job.Run(f.ctx) }()
	var path string
	select {
	case <-half:
		if path, err = job.StopWithSavepoint(f.ctx); err != nil {
			t.Fatal(err)
		}
	case err := <-done:
		t.Fatalf("job ended before its savepoint: %v", err)
	case <-f.ctx.Done():
		t.Fatal(f.ctx.Err())
	}
	if err := <-done; err != nil {
		t.Fatalf("stop with savepoint: %v", err)
	}
	if err := f.produceHeld(); err != nil {
		t.Fatal(err)
	}

	// The renamed Process is refused, in one line naming its old id.
	renamed, err := sumsEnv(f, dir, true, "renamed", nil).Build(WithSavepoint(path))
	if err != nil {
		t.Fatal(err)
	}
	err = renamed.Run(f.ctx)
	if err == nil || !strings.Contains(err.Error(), `"sum-per-second"`) || !strings.Contains(err.Error(), "AllowNonRestoredState") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("renamed operator: %v; want a one-line error naming sum-per-second and AllowNonRestoredState", err)
	}
	t.Logf("renamed operator refused: %v", err)

	// The program with an operator and a sink added restores by id.
	added := func(sums Stream[windowSum]) {
		counts := Map(sums, func(w windowSum) int64 { return w.Count }, UID("count-only"))
		ToKafka(counts, "counts", JSON[int64](), SinkUID("counts"))
	}
	job, err = sumsEnv(f, dir, true, "sum-per-second", added).Build(WithSavepoint(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Run(f.ctx); err != nil {
		t.Fatal(err)
	}
	if job.Stats().RestoredFrom == 0 {
		t.Fatal("the changed program restored nothing")
	}
	checkSums(f, "sums")
	if counts := readJSON[int64](f, "counts"); len(counts) == 0 {
		t.Fatal("the added sink wrote nothing")
	}
}

// TestDataflowUnionOfTwoSourcesOnKfake: two sources of one type, a Union
// and one sink: the output holds every record of both inputs once.
func TestDataflowUnionOfTwoSourcesOnKfake(t *testing.T) {
	f := dataflowFixture(t, verify.GenConfig{Seed: 17, Keys: 20, Partitions: 3, Events: 3000}, "in2", "out")
	second, err := verify.Generate(verify.GenConfig{Seed: 18, Keys: 20, Partitions: 2, Events: 2000, Start: 1_700_000_000_000, Step: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range second {
		second[i].Seq += 1_000_000 // distinct from the first input's
	}
	if err := verify.Produce(f.ctx, f.brokers, "in2", second, 2); err != nil {
		t.Fatal(err)
	}
	env := NewEnv("union", Brokers(f.brokers), Parallelism(2), Guarantee(ExactlyOnce), Checkpoints(50*time.Millisecond, t.TempDir()))
	a := FromKafka(env, "in", JSON[ev](), FromEarliest(), BoundedAtLatest(), SourceUID("a"))
	b := FromKafka(env, "in2", JSON[ev](), FromEarliest(), BoundedAtLatest(), SourceUID("b"))
	both := Union(Map(a, func(e ev) ev { e.User = "a-" + e.User; return e }), b)
	ToKafka(both, "out", JSON[ev]())
	if err := env.Run(f.ctx); err != nil {
		t.Fatal(err)
	}
	want := map[int64]ev{}
	for _, e := range f.events {
		want[e.Seq] = ev{User: "a-" + e.Key, TS: e.TS, Amount: e.Amount, Seq: e.Seq}
	}
	for _, e := range second {
		want[e.Seq] = ev{User: e.Key, TS: e.TS, Amount: e.Amount, Seq: e.Seq}
	}
	got := readJSON[ev](f, "out")
	if len(got) != len(want) {
		t.Fatalf("out: %d records, want %d", len(got), len(want))
	}
	for _, g := range got {
		if w, ok := want[g.Seq]; !ok || w != g {
			t.Fatalf("out: %+v, want %+v", g, w)
		}
		delete(want, g.Seq)
	}
}

// firstSeen emits each key once, from a processing-time timer set when
// the key is first seen.
type firstSeen struct {
	seen *ValueState[bool]
}

func (f *firstSeen) Open(ctx *OpenContext) error {
	var err error
	f.seen, err = ValueStateOf[bool](ctx, "seen")
	return err
}

func (f *firstSeen) OnElement(ctx *Context[string], e ev) error {
	if seen, _ := f.seen.Value(); !seen {
		f.seen.Update(true)
		ctx.RegisterProcessingTimer(ctx.CurrentProcessingTime() + 20)
	}
	return nil
}

func (f *firstSeen) OnTimer(ctx *Context[string], ts int64) error {
	if ctx.TimeDomain() != ProcessingTimeDomain {
		return fmt.Errorf("timer in domain %d, want processing time", ctx.TimeDomain())
	}
	ctx.Emit(ctx.Key())
	return nil
}

// TestDataflowProcessingTimersOnKfake: processing-time timers fire while
// the job runs (an unbounded source): every key comes out once.
func TestDataflowProcessingTimersOnKfake(t *testing.T) {
	f := dataflowFixture(t, verify.GenConfig{Seed: 21, Keys: 25, Partitions: 2, Events: 2000}, "keys")
	env := NewEnv("firstseen", Brokers(f.brokers), Parallelism(2))
	// The default start: the group's committed offsets, of which a new
	// group has none, else the earliest.
	in := FromKafka(env, "in", JSON[ev]())
	keys := Process(KeyBy(in, func(e ev) string { return e.User }), &firstSeen{})
	ToKafka(keys, "keys", String())
	want := map[string]bool{}
	for _, e := range f.events {
		want[e.Key] = true
	}
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- env.Run(ctx) }()
	// Read until every key came out; the source never ends by itself.
	count := func() map[string]int {
		values, err := verify.ReadAll(f.ctx, f.brokers, "keys", verify.ReadCommitted)
		if err != nil {
			t.Fatalf("read keys: %v (job: %v)", err, drainErr(done))
		}
		got := map[string]int{}
		for _, v := range values {
			got[string(v)]++
		}
		return got
	}
	for len(count()) < len(want) {
		if err := drainErr(done); err != nil {
			t.Fatalf("job ended: %v", err)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("job: %v", err)
	}
	got := count()
	for k, n := range got {
		if !want[k] || n != 1 {
			t.Fatalf("key %q came out %d times (an input key: %v)", k, n, want[k])
		}
	}
}

// drainErr returns the job's error if it has ended, nil otherwise.
func drainErr(done <-chan error) error {
	select {
	case err := <-done:
		return err
	default:
		return nil
	}
}

// TestDataflowRestoreOnKfake: the keyed Process job stops after some
// checkpoints with half its input read, the rest arrives, and a second
// run restores state and timers (windows opened before the stop fire
// after it) and ends with every sum exactly once: with the same
// parallelism, and with another one (keyed state and timers move by key
// group, positions and pending transactions with them).
func TestDataflowRestoreOnKfake(t *testing.T) {
	for _, tc := range []struct{ from, to int }{{2, 2}, {2, 3}, {3, 1}} {
		t.Run(fmt.Sprintf("%dto%d", tc.from, tc.to), func(t *testing.T) {
			f := dataflowFixtureHeld(t, verify.GenConfig{Seed: 31, Keys: 40, Partitions: 4, Events: 6000}, true, "sums", "late")
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(f.ctx)
			defer cancel()
			n := 0
			env := sumsEnv(f, dir, false, "sum-per-second", nil)
			env.spec.Parallelism = tc.from
			job, err := env.Build(WithCheckpointListener(func(uint64, bool) {
				if n++; n == 4 {
					cancel()
				}
			}))
			if err != nil {
				t.Fatal(err)
			}
			if err := job.Run(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("first run: %v, want it cancelled after 4 checkpoints", err)
			}
			if err := f.produceHeld(); err != nil {
				t.Fatal(err)
			}
			env = sumsEnv(f, dir, true, "sum-per-second", nil)
			env.spec.Parallelism = tc.to
			if job, err = env.Build(); err != nil {
				t.Fatal(err)
			}
			if err := job.Run(f.ctx); err != nil {
				t.Fatal(err)
			}
			if job.Stats().RestoredFrom == 0 {
				t.Fatal("the second run restored no checkpoint")
			}
			checkSums(f, "sums")
		})
	}
}

// TestToKafkaMaxPendingBytes: the sink option is bounded like the job
// file's sink.max_pending_bytes; Build refuses a value out of range with
// an error naming the sink and the option.
func TestToKafkaMaxPendingBytes(t *testing.T) {
	type ev struct{ N int }
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{4 << 10, ""},
		{100, "below the least, 1KiB"},
		{MaxPendingBytesLimit + 1, "over the largest, 255MiB"},
	} {
		env := NewEnv("pending", Brokers("127.0.0.1:9092"), Guarantee(ExactlyOnce), Checkpoints(time.Second, t.TempDir()))
		ToKafka(FromKafka(env, "in", JSON[ev]()), "out", JSON[ev](), MaxPendingBytes(tc.n))
		_, err := env.Build()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("MaxPendingBytes(%d): %v", tc.n, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "MaxPendingBytes")):
			t.Errorf("MaxPendingBytes(%d): %v; want an error naming MaxPendingBytes and %q", tc.n, err, tc.want)
		}
	}
}
