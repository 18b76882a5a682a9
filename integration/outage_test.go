package integration

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	weir "github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

// TestInfraBrokerDownDuringRestart: the exactly-once window job fails (an
// injected crash between a checkpoint's completion and its commit) at the
// moment its only broker goes down. The restart finds Kafka unreachable
// before any task starts (the progress topic check) and must go through the
// restart strategy like any other failure, not end the job: the broker
// stays down for longer than the first restart delay (at least one restart
// fails on it), is started again, the job resumes from its checkpoint,
// commits the epoch it pre-committed, reads the rest of the input and the
// output is every window exactly once.
func TestInfraBrokerDownDuringRestart(t *testing.T) {
	const partitions, n = 2, 20_000
	ctx, cancel := context.WithTimeout(context.Background(), 2*infraTimeout)
	defer cancel()
	c := broker.ForTest(t, 1)
	brokers := c.Bootstrap()
	in, out := infraTopic(t, c, partitions, nil), infraTopic(t, c, partitions, nil)
	events, err := verify.Generate(genConfig(seed(t), partitions, n))
	if err != nil {
		t.Fatal(err)
	}
	half := n / 2
	if err := verify.Produce(ctx, brokers, in, events[:half], partitions); err != nil {
		t.Fatal(err)
	}

	const delay = 500 * time.Millisecond
	spec := infraSpec(t, brokers, in, out, t.TempDir(), 1, 100*time.Millisecond)
	spec.Restart = weir.RestartSpec{Strategy: weir.RestartFixedDelay, Attempts: 50, Delay: delay}
	var (
		armed, fired atomic.Bool
		stopErr      atomic.Value
	)
	crash := weir.WithFailpoint(func(step string) {
		if step != "after-complete-before-commit" || !armed.Load() || fired.Swap(true) {
			return
		}
		// The broker goes down, then the job fails: its restart meets
		// the outage.
		if err := c.StopBroker(0); err != nil {
			stopErr.Store(err)
		}
		panic("integration: injected crash while the broker is down")
	})
	log, tw := &syncLog{}, &testWriter{t: t}
	t.Cleanup(tw.close) // after the job stops (cleanups run last-in first-out)
	logger := weir.WithLogger(slog.New(slog.NewTextHandler(io.MultiWriter(log, tw), &slog.HandlerOptions{Level: slog.LevelWarn})))
	run := infraStart(t, ctx, spec, nil, crash, logger)
	run.waitUntil(t, "the first half read and two checkpoints", func() bool {
		return run.job.Stats().RecordsIn >= int64(half) && run.complete.Load() >= 2
	})
	armed.Store(true)
	run.waitUntil(t, "the crash", fired.Load)
	// Restart 1 follows the crash; restart 2 follows a run that found the
	// broker down before any task started.
	// Bounded by what it takes with the broker down: the failed run's
	// Kafka clients may each take the job's close timeout (30s) to give
	// up, and the restart's metadata request its own 30s.
	run.waitUntilWithin(t, 4*time.Minute, "a restart that failed on the stopped broker", func() bool { return run.job.Stats().Restarts >= 2 })
	if v := stopErr.Load(); v != nil {
		t.Fatalf("stop the broker: %v", v)
	}
	if !strings.Contains(log.String(), "kafka not reachable before the start") {
		t.Fatalf("the second restart did not come from the outage; log:\n%s", tail(log.String(), 4000))
	}
	down := run.job.Stats().Restarts
	if err := c.StartBroker(0); err != nil {
		t.Fatal(err)
	}
	before := run.complete.Load()
	run.waitUntil(t, "two checkpoints after the broker is back", func() bool { return run.complete.Load() >= before+2 })
	t.Logf("%d restarts while the broker was down (first delay %v); checkpoints again from %d", down, delay, run.last.Load())

	if err := verify.Produce(ctx, brokers, in, events[half:], partitions); err != nil {
		t.Fatal(err)
	}
	run.waitUntil(t, "the second half read", func() bool { return run.job.Stats().RecordsIn >= int64(n) })
	run.job.Drain()
	if err := run.waitRun(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	st := run.job.Stats()
	t.Logf("stats: %+v", st)
	if st.LateDropped != 0 || st.BadRecords != 0 {
		t.Errorf("stats %+v: want no late and no bad records", st)
	}
	infraExactlyOnce(t, ctx, brokers, out, events)
	if open := infraOpen(t, brokers, out); open != 0 {
		t.Errorf("%d records of %s are behind an open transaction after the drain", open, out)
	}
}
