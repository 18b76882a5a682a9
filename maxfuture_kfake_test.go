package weir

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/integration/verify"
)

// year2500 is 2500-01-01T00:00:00Z in milliseconds: a producer's clock
// gone wrong.
const year2500 = 16725225600000

// waitStats polls job's counters until cond holds, failing the test when
// the job returns first or the fixture's deadline passes.
func (f *fixture) waitStats(job *Job, done <-chan error, what string, cond func(Stats) bool) {
	f.t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond(job.Stats()) {
		select {
		case err := <-done:
			f.t.Fatalf("the job returned (%v) while waiting for %s; stats %+v", err, what, job.Stats())
		case <-f.ctx.Done():
			f.t.Fatalf("%s: not before the test's deadline; stats %+v", what, job.Stats())
		case <-tick.C:
		}
	}
}

// checkFarFutureError checks the error of a job stopped by the record at
// offset of in/0 with event time year2500: one line naming the record,
// its event time and setting, the setting's bound, and the fix.
func checkFarFutureError(t *testing.T, err error, offset int64, setting string, bound time.Duration) {
	t.Helper()
	if err == nil {
		t.Fatalf("the job ended without an error; want one for the far-future record at in/0 offset %d", offset)
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	for _, want := range []string{
		fmt.Sprintf("bad record at in/0 offset %d: ", offset),
		"event time 16725225600000 (2500-01-01T00:00:00Z) is ",
		fmt.Sprintf("ahead of the processing clock, beyond %s (%v); fix the producer's timestamps or raise %s", setting, bound, setting),
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q", want)
		}
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the job ended by its context, not by the record: %v", err)
	}
}

// TestFarFutureRecordFailsWindowJob: one record from the year 2500 in the
// middle of a window job's input stops the job with one line naming it
// and window.max_future, counted as the one bad record, before its time
// moves the watermark: the windows that closed before it are written,
// none is fired early, nothing is dropped as late. (Before the bound, the
// record moved the watermark to 2500: every window fired and every later
// record was dropped as late.)
func TestFarFutureRecordFailsWindowJob(t *testing.T) {
	const events = 2000
	f := newHeldFixture(t, verify.GenConfig{Seed: 41, Keys: 20, Partitions: 1, Events: events, Step: 10 * time.Millisecond})
	before := f.events[:events/2]
	job, err := NewJob(f.spec("far-future"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- job.Run(f.ctx) }()

	// The windows the first half closes (the watermark trails its newest
	// event time by the 100 ms out-of-orderness) are written first.
	maxTS := int64(0)
	for _, e := range before {
		maxTS = max(maxTS, e.TS)
	}
	closed := verify.ExpectedBefore(verify.Expected(before, time.Second), maxTS-100)
	f.waitStats(job, done, "the windows of the first half", func(s Stats) bool {
		return s.RecordsIn >= int64(len(before)) && s.ResultsOut >= int64(len(closed))
	})

	bad := verify.Event{Key: "u1", TS: year2500, Amount: 1, Seq: -1}
	if err := verify.Produce(f.ctx, f.brokers, "in", []verify.Event{bad}, 1); err != nil {
		t.Fatal(err)
	}
	if err := f.produceHeld(); err != nil {
		t.Fatal(err)
	}
	job.Drain() // without the bound the job would end here, with every later record late
	err = <-done
	checkFarFutureError(t, err, int64(len(before)), "window.max_future", DefaultMaxFuture)
	st := job.Stats()
	if st.BadRecords != 1 || st.LateDropped != 0 || st.RecordsIn != int64(len(before)) {
		t.Errorf("stats %+v: want 1 bad record, none late, the %d records before it in", st, len(before))
	}
	got, err := verify.ReadResults(f.ctx, f.brokers, "out", verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	if v := verify.Compare(len(before), closed, got); !v.OK {
		t.Fatalf("the output is not the windows closed before the bad record: %s", v.Report())
	}
	t.Logf("%d windows closed before the bad record, all written once and right", len(closed))
}

// TestMaxFutureOption: a dataflow source with EventTime refuses a record
// from the year 2500 by default (one line, counted as a bad record), and
// with MaxFuture(d) beyond d; MaxFuture(NoMaxFuture) takes it; a
// negative bound is refused when the job is built.
func TestMaxFutureOption(t *testing.T) {
	run := func(t *testing.T, bad verify.Event, opts ...SourceOption) (*Job, error, int64) {
		t.Helper()
		f := dataflowFixture(t, verify.GenConfig{Seed: 43, Keys: 5, Partitions: 1, Events: 200}, "users")
		if err := verify.Produce(f.ctx, f.brokers, "in", []verify.Event{bad}, 1); err != nil {
			t.Fatal(err)
		}
		env := NewEnv("maxfuture", Brokers(f.brokers))
		in := FromKafka(env, "in", JSON[ev](), append([]SourceOption{FromEarliest(), BoundedAtLatest(),
			EventTime(func(e ev) int64 { return e.TS }, 100*time.Millisecond)}, opts...)...)
		ToKafka(Map(in, func(e ev) string { return e.User }), "users", String())
		job, err := env.Build()
		if err != nil {
			t.Fatal(err)
		}
		return job, job.Run(f.ctx), int64(len(f.events))
	}
	t.Run("default", func(t *testing.T) {
		job, err, offset := run(t, verify.Event{Key: "u1", TS: year2500, Seq: -1})
		checkFarFutureError(t, err, offset, "weir.MaxFuture", DefaultMaxFuture)
		if st := job.Stats(); st.BadRecords != 1 {
			t.Errorf("stats %+v: want 1 bad record", st)
		}
	})
	t.Run("bound", func(t *testing.T) {
		soon := time.Now().Add(2 * time.Hour).UnixMilli()
		job, err, offset := run(t, verify.Event{Key: "u1", TS: soon, Seq: -1}, MaxFuture(time.Minute))
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("bad record at in/0 offset %d: event time %d ", offset, soon)) ||
			!strings.Contains(err.Error(), "beyond weir.MaxFuture (1m0s)") {
			t.Fatalf("a record 2h ahead with MaxFuture(1m): %v", err)
		}
		if st := job.Stats(); st.BadRecords != 1 {
			t.Errorf("stats %+v: want 1 bad record", st)
		}
	})
	t.Run("off", func(t *testing.T) {
		job, err, offset := run(t, verify.Event{Key: "u1", TS: year2500, Seq: -1}, MaxFuture(NoMaxFuture))
		if err != nil {
			t.Fatalf("with NoMaxFuture: %v", err)
		}
		if st := job.Stats(); st.BadRecords != 0 || st.RecordsIn != offset+1 {
			t.Errorf("stats %+v: want every record in, none bad", st)
		}
	})
	t.Run("negative", func(t *testing.T) {
		env := NewEnv("maxfuture", Brokers("127.0.0.1:9092"))
		ToKafka(FromKafka(env, "in", String(), EventTime(func(string) int64 { return 0 }, 0), MaxFuture(-time.Second)), "out", String())
		_, err := env.Build()
		if err == nil || !strings.Contains(err.Error(), "MaxFuture(-1s) is negative; use weir.NoMaxFuture") {
			t.Fatalf("Build with MaxFuture(-1s): %v", err)
		}
	})
}
