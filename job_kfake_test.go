package weir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weirstream/weir/integration/verify"
)

// TestJobOnKfake runs the window job on the in-process broker, drains it,
// and compares every window result with the verifier's expected one.
func TestJobOnKfake(t *testing.T) {
	for _, p := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("parallelism=%d", p), func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "in", "out"), kfake.Ports(0))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			brokers := c.ListenAddrs()[0]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			gen := verify.GenConfig{Seed: int64(p), Keys: 50, Partitions: 4, Events: 5000,
				Start: 1_700_000_000_000, Step: 10 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond}
			events, err := verify.Generate(gen)
			if err != nil {
				t.Fatal(err)
			}
			if err := verify.Produce(ctx, brokers, "in", events, 4); err != nil {
				t.Fatal(err)
			}
			job, err := NewJob(JobSpec{
				Name: "t", Brokers: brokers,
				Source:   SourceSpec{Topic: "in", Start: StartSpec{Mode: StartEarliest}},
				KeyField: "user", TimestampField: "ts",
				Window:      WindowSpec{Size: time.Second, OutOfOrderness: gen.OutOfOrderness},
				Aggregate:   AggregateSpec{ValueField: "amount"},
				Sink:        SinkSpec{Topic: "out"},
				Parallelism: p,
			})
			if err != nil {
				t.Fatal(err)
			}
			job.Drain()
			if err := job.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if st := job.Stats(); st.RecordsIn != int64(len(events)) || st.LateDropped != 0 {
				t.Fatalf("stats %+v, want %d records in and none late", st, len(events))
			}
			got, err := verify.ReadResults(ctx, brokers, "out", verify.ReadCommitted)
			if err != nil {
				t.Fatal(err)
			}
			v := verify.Compare(len(events), verify.Expected(events, time.Second), got)
			t.Log(v.String())
			if !v.OK {
				t.Fatal(v.Report())
			}
		})
	}
}

// TestCheckpointRestoreOnKfake: a job takes checkpoints and is cancelled
// mid-stream; a second run restores the newest checkpoint and drains. The
// latest result of every window must be right, and the second run must
// have restored (read fewer records than the input).
func TestCheckpointRestoreOnKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "in", "out"), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gen := verify.GenConfig{Seed: 7, Keys: 200, Partitions: 4, Events: 60000,
		Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: 200 * time.Millisecond}
	events, err := verify.Generate(gen)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, "in", events, 4); err != nil {
		t.Fatal(err)
	}
	spec := JobSpec{
		Name: "ckpt", Brokers: brokers,
		Source:   SourceSpec{Topic: "in", Start: StartSpec{Mode: StartEarliest}},
		KeyField: "user", TimestampField: "ts",
		Window:      WindowSpec{Size: time.Second, OutOfOrderness: gen.OutOfOrderness},
		Aggregate:   AggregateSpec{ValueField: "amount"},
		Sink:        SinkSpec{Topic: "out"},
		Parallelism: 2,
		Checkpoint:  CheckpointSpec{Interval: 20 * time.Millisecond, Dir: t.TempDir()},
	}
	// Run 1: stop (cancel, no drain) after a checkpoint completes that
	// was triggered once at least 10,000 records had been read.
	runCtx, stop := context.WithCancel(ctx)
	var job1 *Job
	var armedAt atomic.Uint64
	job1, err = NewJob(spec, WithFlowControl(1, 64), WithCheckpointListener(func(id uint64, _ bool) {
		if job1.Stats().RecordsIn < 10000 {
			return
		}
		if armedAt.Load() == 0 {
			armedAt.Store(id + 1) // the next one was triggered after this point
		} else if id >= armedAt.Load() {
			stop()
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := job1.Run(runCtx); !errors.Is(err, context.Canceled) {
		t.Fatalf("run 1: %v, want it cancelled", err)
	}
	st1 := job1.Stats()
	if armedAt.Load() == 0 || st1.LastCheckpoint < armedAt.Load() {
		t.Fatalf("run 1 ended before a checkpoint after 10,000 records: %+v", st1)
	}
	// Run 2: restores and drains.
	job2, err := NewJob(spec)
	if err != nil {
		t.Fatal(err)
	}
	job2.Drain()
	if err := job2.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st2 := job2.Stats()
	t.Logf("run 1: %+v; run 2: %+v", st1, st2)
	if st2.RestoredFrom != st1.LastCheckpoint {
		t.Fatalf("run 2 restored checkpoint %d, want the newest, %d", st2.RestoredFrom, st1.LastCheckpoint)
	}
	if st2.RecordsIn >= int64(len(events)) {
		t.Fatalf("run 2 read %d records, all of the input: it did not resume from the checkpoint", st2.RecordsIn)
	}
	got, err := verify.ReadResults(ctx, brokers, "out", verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	v := verify.CompareLatest(len(events), verify.Expected(events, time.Second), got)
	t.Log(v.String())
	if !v.OK {
		t.Fatal(v.Report())
	}
}

// TestCorruptCheckpointFallsBack: the newest checkpoint is damaged (a bit
// flipped in its metadata, or its metadata missing); the next run reports it
// and restores the previous complete checkpoint, and the output is right.
func TestCorruptCheckpointFallsBack(t *testing.T) {
	for _, damage := range []string{"bit-flip", "truncate", "missing-metadata"} {
		t.Run(damage, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "out"), kfake.Ports(0))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			brokers := c.ListenAddrs()[0]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			events, err := verify.Generate(verify.GenConfig{Seed: 3, Keys: 100, Partitions: 2, Events: 30000,
				Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if err := verify.Produce(ctx, brokers, "in", events, 2); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			spec := JobSpec{
				Name: "corrupt", Brokers: brokers,
				Source:   SourceSpec{Topic: "in", Start: StartSpec{Mode: StartEarliest}},
				KeyField: "user", TimestampField: "ts",
				Window:     WindowSpec{Size: time.Second, OutOfOrderness: 100 * time.Millisecond},
				Aggregate:  AggregateSpec{ValueField: "amount"},
				Sink:       SinkSpec{Topic: "out"},
				Checkpoint: CheckpointSpec{Interval: 20 * time.Millisecond, Dir: dir, Retain: 5},
			}
			runCtx, stop := context.WithCancel(ctx)
			var job1 *Job
			job1, err = NewJob(spec, WithFlowControl(1, 64), WithCheckpointListener(func(id uint64, _ bool) {
				if id >= 4 && job1.Stats().RecordsIn > 5000 {
					stop()
				}
			}))
			if err != nil {
				t.Fatal(err)
			}
			if err := job1.Run(runCtx); !errors.Is(err, context.Canceled) {
				t.Fatalf("run 1: %v", err)
			}
			last := job1.Stats().LastCheckpoint
			meta := filepath.Join(dir, fmt.Sprintf("chk-%d", last), "_metadata")
			b, err := os.ReadFile(meta)
			if err != nil {
				t.Fatal(err)
			}
			switch damage {
			case "bit-flip":
				b[len(b)/2] ^= 0x10
				err = os.WriteFile(meta, b, 0o644)
			case "truncate":
				err = os.WriteFile(meta, b[:len(b)/3], 0o644)
			case "missing-metadata":
				err = os.Remove(meta)
			}
			if err != nil {
				t.Fatal(err)
			}
			var logBuf syncBuffer
			job2, err := NewJob(spec, WithLogger(slog.New(slog.NewTextHandler(&logBuf, nil))))
			if err != nil {
				t.Fatal(err)
			}
			job2.Drain()
			if err := job2.Run(ctx); err != nil {
				t.Fatal(err)
			}
			st := job2.Stats()
			if st.RestoredFrom == 0 || st.RestoredFrom >= last {
				t.Fatalf("run 2 restored checkpoint %d; want the one before the damaged %d", st.RestoredFrom, last)
			}
			if damage != "missing-metadata" && !strings.Contains(logBuf.String(), "skipping a broken checkpoint") {
				t.Fatalf("the damaged checkpoint %d was not reported:\n%s", last, logBuf.String())
			}
			got, err := verify.ReadResults(ctx, brokers, "out", verify.ReadCommitted)
			if err != nil {
				t.Fatal(err)
			}
			v := verify.CompareLatest(len(events), verify.Expected(events, time.Second), got)
			t.Logf("damaged checkpoint %d, restored %d; %s", last, st.RestoredFrom, v)
			if !v.OK {
				t.Fatal(v.Report())
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the job's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRestoreRefusesOtherGraphOrJob: a checkpoint taken with 1s windows is
// not restored into the job with 2s windows, nor into another job using
// the same directory; the error says why and nothing starts.
func TestRestoreRefusesOtherGraphOrJob(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "out"), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events, err := verify.Generate(verify.GenConfig{Seed: 5, Keys: 10, Partitions: 2, Events: 2000,
		Start: 1_700_000_000_000, Step: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, "in", events, 2); err != nil {
		t.Fatal(err)
	}
	spec := JobSpec{
		Name: "graph", Brokers: brokers,
		Source:   SourceSpec{Topic: "in", Start: StartSpec{Mode: StartEarliest}},
		KeyField: "user", TimestampField: "ts",
		Window:     WindowSpec{Size: time.Second},
		Sink:       SinkSpec{Topic: "out"},
		Checkpoint: CheckpointSpec{Interval: 20 * time.Millisecond, Dir: t.TempDir()},
	}
	runCtx, stop := context.WithCancel(ctx)
	job, err := NewJob(spec, WithCheckpointListener(func(uint64, bool) { stop() }))
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Run(runCtx); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*JobSpec)
		want string
	}{
		{"window size", func(s *JobSpec) { s.Window.Size = 2 * time.Second }, "window(2000ms)"},
		{"job name", func(s *JobSpec) { s.Name = "other" }, `"other"`},
	} {
		s := spec
		tc.edit(&s)
		j, err := NewJob(s)
		if err != nil {
			t.Fatal(err)
		}
		err = j.Run(ctx)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s changed: Run = %v; want a one-line refusal mentioning %s", tc.name, err, tc.want)
		}
		if j.Stats().RecordsIn != 0 {
			t.Fatalf("%s changed: the job read records before refusing", tc.name)
		}
		t.Logf("%s changed: %v", tc.name, err)
	}
}

// TestRestartFromCheckpoint: a task fails once mid-stream; the restart
// strategy restarts the job in the same process from the latest complete
// checkpoint and the output is right. A failure that repeats makes the
// strategy give up with the cause and the number of restarts.
func TestRestartFromCheckpoint(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "out"), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	events, err := verify.Generate(verify.GenConfig{Seed: 11, Keys: 100, Partitions: 2, Events: 40000,
		Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, "in", events, 2); err != nil {
		t.Fatal(err)
	}
	json := JSONExtract("user", "ts", "amount")
	var calls atomic.Int64
	failAt := int64(20000)
	spec := JobSpec{
		Name: "restart", Brokers: brokers,
		Source:     SourceSpec{Topic: "in", Start: StartSpec{Mode: StartEarliest}},
		Window:     WindowSpec{Size: time.Second, OutOfOrderness: 100 * time.Millisecond},
		Sink:       SinkSpec{Topic: "out"},
		Restart:    RestartSpec{Strategy: "fixed-delay", Attempts: 2, Delay: 10 * time.Millisecond},
		Checkpoint: CheckpointSpec{Interval: 20 * time.Millisecond, Dir: t.TempDir()},
		Extract: func(v []byte) ([]byte, int64, float64, error) {
			if calls.Add(1) == failAt {
				return nil, 0, 0, errors.New("injected failure")
			}
			return json(v)
		},
	}
	job, err := NewJob(spec, WithFlowControl(1, 64))
	if err != nil {
		t.Fatal(err)
	}
	job.Drain()
	if err := job.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st := job.Stats()
	if st.Restarts != 1 || st.RestoredFrom == 0 {
		t.Fatalf("stats %+v: want one restart from a checkpoint", st)
	}
	got, err := verify.ReadResults(ctx, brokers, "out", verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	v := verify.CompareLatest(len(events), verify.Expected(events, time.Second), got)
	t.Logf("restored from %d after the injected failure; %s", st.RestoredFrom, v)
	if !v.OK {
		t.Fatal(v.Report())
	}

	// Every run fails: the strategy gives up after its 2 restarts.
	spec.Name, spec.Sink.Topic, spec.Checkpoint.Dir = "restart-give-up", "out2", t.TempDir()
	spec.Extract = func([]byte) ([]byte, int64, float64, error) { return nil, 0, 0, errors.New("always broken") }
	job, err = NewJob(spec)
	if err != nil {
		t.Fatal(err)
	}
	err = job.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "always broken") || !strings.Contains(err.Error(), "gave up after 2 restarts") {
		t.Fatalf("Run = %v; want the cause and that the strategy gave up after 2 restarts", err)
	}
}

// TestExactlyOnceOnKfake: the exactly-once sink commits every window once
// (read_committed), also when the first run is stopped mid-stream and a
// second run restores and recommits.
func TestExactlyOnceOnKfake(t *testing.T) {
	for _, interrupt := range []bool{false, true} {
		t.Run(fmt.Sprintf("interrupted=%v", interrupt), func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "out"), kfake.Ports(0))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			brokers := c.ListenAddrs()[0]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			events, err := verify.Generate(verify.GenConfig{Seed: 13, Keys: 100, Partitions: 2, Events: 40000,
				Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if err := verify.Produce(ctx, brokers, "in", events, 2); err != nil {
				t.Fatal(err)
			}
			spec := JobSpec{
				Name: "eos", Brokers: brokers,
				Source:   SourceSpec{Topic: "in", Start: StartSpec{Mode: StartEarliest}},
				KeyField: "user", TimestampField: "ts",
				Window:      WindowSpec{Size: time.Second, OutOfOrderness: 100 * time.Millisecond},
				Aggregate:   AggregateSpec{ValueField: "amount"},
				Sink:        SinkSpec{Topic: "out"},
				Delivery:    ExactlyOnce,
				Parallelism: 2,
				Checkpoint:  CheckpointSpec{Interval: 30 * time.Millisecond, Dir: t.TempDir(), Timeout: time.Minute},
			}
			if interrupt {
				runCtx, stop := context.WithCancel(ctx)
				var job1 *Job
				job1, err = NewJob(spec, WithFlowControl(1, 64), WithCheckpointListener(func(id uint64, _ bool) {
					if job1.Stats().RecordsIn > 15000 {
						stop()
					}
				}))
				if err != nil {
					t.Fatal(err)
				}
				if err := job1.Run(runCtx); !errors.Is(err, context.Canceled) {
					t.Fatalf("run 1: %v", err)
				}
				t.Logf("run 1: %+v", job1.Stats())
			}
			job, err := NewJob(spec)
			if err != nil {
				t.Fatal(err)
			}
			job.Drain()
			if err := job.Run(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("last run: %+v", job.Stats())
			got, err := verify.ReadResults(ctx, brokers, "out", verify.ReadCommitted)
			if err != nil {
				t.Fatal(err)
			}
			v := verify.Compare(len(events), verify.Expected(events, time.Second), got)
			t.Log(v.String())
			if !v.OK {
				t.Fatal(v.Report())
			}
		})
	}
}

// TestRescaleExactlyOnce: an exactly-once job with parallelism 2 is stopped
// mid-stream; it restarts with parallelism 3 (and 1): window state moves by
// key group, positions by partition, pending transactions to one subtask
// each, and the old transactional ids are fenced. Every window exactly once.
func TestRescaleExactlyOnce(t *testing.T) {
	for _, newP := range []int{3, 1} {
		t.Run(fmt.Sprintf("2to%d", newP), func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "in", "out"), kfake.Ports(0))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			brokers := c.ListenAddrs()[0]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			events, err := verify.Generate(verify.GenConfig{Seed: 17, Keys: 300, Partitions: 4, Events: 200000,
				Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if err := verify.Produce(ctx, brokers, "in", events, 4); err != nil {
				t.Fatal(err)
			}
			spec := JobSpec{
				Name: "rescale", Brokers: brokers,
				Source:   SourceSpec{Topic: "in", Start: StartSpec{Mode: StartEarliest}},
				KeyField: "user", TimestampField: "ts",
				Window:      WindowSpec{Size: time.Second, OutOfOrderness: 100 * time.Millisecond},
				Aggregate:   AggregateSpec{ValueField: "amount"},
				Sink:        SinkSpec{Topic: "out"},
				Delivery:    ExactlyOnce,
				Parallelism: 2,
				Checkpoint:  CheckpointSpec{Interval: 30 * time.Millisecond, Dir: t.TempDir(), Timeout: time.Minute},
			}
			runCtx, stop := context.WithCancel(ctx)
			var job1 *Job
			job1, err = NewJob(spec, WithFlowControl(1, 64), WithCheckpointListener(func(id uint64, _ bool) {
				if id >= 2 {
					stop()
				}
			}))
			if err != nil {
				t.Fatal(err)
			}
			if err := job1.Run(runCtx); !errors.Is(err, context.Canceled) {
				t.Fatalf("run 1: %v", err)
			}
			spec.Parallelism = newP
			job2, err := NewJob(spec)
			if err != nil {
				t.Fatal(err)
			}
			job2.Drain()
			if err := job2.Run(ctx); err != nil {
				t.Fatal(err)
			}
			st1, st2 := job1.Stats(), job2.Stats()
			t.Logf("run 1 (p=2): read %d, last checkpoint %d; run 2 (p=%d): restored %d, read %d", st1.RecordsIn, st1.LastCheckpoint, newP, st2.RestoredFrom, st2.RecordsIn)
			if st2.RestoredFrom < 2 {
				t.Fatalf("run 2 did not resume from the checkpoint: %+v", st2)
			}
			got, err := verify.ReadResults(ctx, brokers, "out", verify.ReadCommitted)
			if err != nil {
				t.Fatal(err)
			}
			v := verify.Compare(len(events), verify.Expected(events, time.Second), got)
			t.Log(v.String())
			if !v.OK {
				t.Fatal(v.Report())
			}
		})
	}
}
