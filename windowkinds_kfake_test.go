package weir

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weirstream/weir/integration/verify"
)

// windowResult is the window job's JSON result with every aggregate.
type windowResult struct {
	Key   string  `json:"key"`
	Start int64   `json:"window_start"`
	End   int64   `json:"window_end"`
	Count int64   `json:"count"`
	Sum   float64 `json:"sum"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Avg   float64 `json:"avg"`
}

// TestJobFileSlidingWindowsOnKfake: the job file's window job with
// window.kind sliding (2s every 500ms, offset 100ms) and all five
// aggregates, exactly once, parallelism 2: every key and window once,
// equal to what the input implies.
func TestJobFileSlidingWindowsOnKfake(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 17, Keys: 30, Partitions: 4, Events: 6000})
	spec := f.spec("sliding")
	spec.Parallelism = 2
	spec.Delivery = ExactlyOnce
	spec.Checkpoint = CheckpointSpec{Interval: 40 * time.Millisecond, Dir: t.TempDir()}
	spec.Window = WindowSpec{Kind: WindowSliding, Size: 2 * time.Second, Slide: 500 * time.Millisecond, Offset: 100 * time.Millisecond,
		OutOfOrderness: 100 * time.Millisecond}
	spec.Aggregate.Functions = []string{"count", "sum", "min", "max", "avg"}
	f.drain(spec)
	checkSliding(f)
}

// TestJobFileSlidingWindowsRestoreOnKfake: the sliding job of
// TestJobFileSlidingWindowsOnKfake reads the first half of the input and
// stops after a checkpoint taken past 2,000 records; the second half
// arrives and a second run restores it with parallelism 3 (the
// accumulators and timers move by key group): every window exactly once.
func TestJobFileSlidingWindowsRestoreOnKfake(t *testing.T) {
	f := newHeldFixture(t, verify.GenConfig{Seed: 19, Keys: 30, Partitions: 4, Events: 6000})
	spec := f.spec("sliding-restore")
	spec.Parallelism = 2
	spec.Delivery = ExactlyOnce
	spec.Checkpoint = CheckpointSpec{Interval: 30 * time.Millisecond, Dir: t.TempDir()}
	spec.Window = WindowSpec{Kind: WindowSliding, Size: 2 * time.Second, Slide: 500 * time.Millisecond, Offset: 100 * time.Millisecond,
		OutOfOrderness: 100 * time.Millisecond}
	spec.Aggregate.Functions = []string{"count", "sum", "min", "max", "avg"}
	var armedAt atomic.Uint64
	job1 := f.runUntil(spec, func(job *Job, id uint64) bool {
		if job.Stats().RecordsIn < 2000 {
			return false
		}
		if armedAt.Load() == 0 {
			armedAt.Store(id + 1)
			return false
		}
		return id >= armedAt.Load()
	}, WithFlowControl(1, 64))
	st1 := job1.Stats()
	if err := f.produceHeld(); err != nil {
		t.Fatal(err)
	}
	spec.Parallelism = 3
	st2 := f.drain(spec).Stats()
	t.Logf("run 1: %+v; run 2: %+v", st1, st2)
	if st2.RestoredFrom != st1.LastCheckpoint || st2.RecordsIn >= int64(len(f.events)) {
		t.Fatalf("run 2 restored %d (want %d) and read %d of %d records: it did not resume", st2.RestoredFrom, st1.LastCheckpoint, st2.RecordsIn, len(f.events))
	}
	checkSliding(f)
}

// checkSliding checks that "out" holds every 2s window sliding every
// 500ms (offset 100ms) of the fixture's events once, with every aggregate.
func checkSliding(f *fixture) {
	t := f.t
	t.Helper()
	type wkey struct {
		key        string
		start, end int64
	}
	want := map[wkey]*windowResult{}
	for _, e := range f.events {
		x := float64(e.Amount)
		for s := e.TS - 2500; s <= e.TS; s++ {
			if ((s-100)%500+500)%500 != 0 || e.TS >= s+2000 {
				continue
			}
			k := wkey{e.Key, s, s + 2000}
			w := want[k]
			if w == nil {
				w = &windowResult{Key: e.Key, Start: s, End: s + 2000, Min: x, Max: x}
				want[k] = w
			}
			w.Count++
			w.Sum += x
			w.Min, w.Max = min(w.Min, x), max(w.Max, x)
		}
	}
	got := readJSON[windowResult](f, "out")
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d", len(got), len(want))
	}
	for _, g := range got {
		w := want[wkey{g.Key, g.Start, g.End}]
		if w == nil {
			t.Fatalf("result %+v for a window with no events", g)
		}
		w.Avg = w.Sum / float64(w.Count)
		if g != *w {
			t.Fatalf("result %+v, want %+v", g, *w)
		}
	}
	t.Logf("all %d sliding windows once and right", len(got))
}

// TestJobFileSessionLatenessOnKfake: session windows (gap 500ms) with
// allowed lateness 1s and a late topic, one partition, bound 0, the input
// produced in phases so that each record meets a known watermark:
//
//	a@1000 a@1400 a@2500  session a[1000,1900) fires with 2 records
//	a@1200                late within the lateness: it fires again with 3
//	b@5000                a[2500,3000) fires; a's sessions are dropped
//	a@1300                too late: to the late topic as it was read
//	(drain)               b[5000,5500) fires
func TestJobFileSessionLatenessOnKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in", "out", "late"), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := &fixture{t: t, ctx: ctx, brokers: c.ListenAddrs()[0], partitions: 1}
	spec := f.spec("sessions")
	spec.Delivery = ExactlyOnce
	spec.Checkpoint = CheckpointSpec{Interval: 30 * time.Millisecond, Dir: t.TempDir()}
	spec.Window = WindowSpec{Kind: WindowSession, Gap: 500 * time.Millisecond, AllowedLateness: time.Second, LateTopic: "late"}
	spec.Aggregate.Functions = []string{"count", "sum", "max"}
	job, err := NewJob(spec)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	seq := int64(0)
	produce := func(key string, ts int64) verify.Event {
		t.Helper()
		seq++
		e := verify.Event{Key: key, TS: ts, Amount: seq * 10, Seq: seq}
		if err := verify.Produce(ctx, f.brokers, "in", []verify.Event{e}, 1); err != nil {
			t.Fatal(err)
		}
		return e
	}
	waitFor := func(what string, cond func(Stats) bool) {
		t.Helper()
		deadline := time.After(time.Minute)
		for !cond(job.Stats()) {
			select {
			case err := <-done:
				t.Fatalf("the job returned (%v) while waiting for %s", err, what)
			case <-deadline:
				t.Fatalf("%s: not within a minute (stats %+v)", what, job.Stats())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	produce("a", 1000)
	produce("a", 1400)
	produce("a", 2500)
	waitFor("the first session", func(s Stats) bool { return s.ResultsOut >= 1 })
	produce("a", 1200)
	waitFor("the session fired again", func(s Stats) bool { return s.ResultsOut >= 2 })
	produce("b", 5000)
	waitFor("a's second session", func(s Stats) bool { return s.ResultsOut >= 3 })
	late := produce("a", 1300)
	waitFor("the late record", func(s Stats) bool { return s.ResultsOut >= 4 })
	job.Drain()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("the job did not drain within a minute (stats %+v)", job.Stats())
	}

	want := []windowResult{
		{Key: "a", Start: 1000, End: 1900, Count: 2, Sum: 30, Max: 20},
		{Key: "a", Start: 1000, End: 1900, Count: 3, Sum: 70, Max: 40},
		{Key: "a", Start: 2500, End: 3000, Count: 1, Sum: 30, Max: 30},
		{Key: "b", Start: 5000, End: 5500, Count: 1, Sum: 50, Max: 50},
	}
	got := readJSON[windowResult](f, "out")
	if len(got) != len(want) {
		t.Fatalf("results %+v, want %+v (stats %+v)", got, want, job.Stats())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("result %d: %+v, want %+v (all: %+v)", i, got[i], want[i], got)
		}
	}
	lateRecs, err := verify.ReadAll(ctx, f.brokers, "late", verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	if len(lateRecs) != 1 || string(lateRecs[0]) != string(late.AppendJSON(nil)) {
		t.Fatalf("late topic %q, want the record %s", lateRecs, late.AppendJSON(nil))
	}
	var check map[string]any
	if err := json.Unmarshal(lateRecs[0], &check); err != nil {
		t.Fatal(err)
	}
	if st := job.Stats(); st.LateDropped != 0 {
		t.Fatalf("stats %+v: a late record routed to the late topic is not dropped", st)
	}
	t.Logf("results %+v; late topic: %s; stats %+v", got, lateRecs[0], job.Stats())
}
