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

// fixture is an in-process broker (kfake) with topics "in" and "out", the
// generated input already in "in", and a deadline for the test.
type fixture struct {
	t       *testing.T
	ctx     context.Context
	brokers string
	events  []verify.Event
	// held are events generated but not produced yet (produceHeld).
	held       []verify.Event
	partitions int
}

// newFixture starts kfake and produces the events of gen (Start, Step and
// the out-of-orderness default to what the tests use).
func newFixture(t *testing.T, gen verify.GenConfig) *fixture {
	t.Helper()
	return startFixture(t, gen, false)
}

// newHeldFixture is newFixture producing only the first half of the
// events; produceHeld produces the rest.
func newHeldFixture(t *testing.T, gen verify.GenConfig) *fixture {
	t.Helper()
	return startFixture(t, gen, true)
}

// startFixture starts kfake with topics (default "in" and "out") and
// produces the events to "in", only their first half when holdHalf.
func startFixture(t *testing.T, gen verify.GenConfig, holdHalf bool, topics ...string) *fixture {
	t.Helper()
	if gen.Start == 0 {
		gen.Start = 1_700_000_000_000
	}
	if gen.Step == 0 {
		gen.Step = time.Millisecond
	}
	if gen.OutOfOrderness == 0 {
		gen.OutOfOrderness = 100 * time.Millisecond
	}
	if len(topics) == 0 {
		topics = []string{"in", "out"}
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(gen.Partitions), topics...), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	f := &fixture{t: t, ctx: ctx, brokers: c.ListenAddrs()[0], partitions: gen.Partitions}
	if f.events, err = verify.Generate(gen); err != nil {
		t.Fatal(err)
	}
	produce := f.events
	if holdHalf {
		produce, f.held = f.events[:len(f.events)/2], f.events[len(f.events)/2:]
	}
	if err := verify.Produce(ctx, f.brokers, "in", produce, gen.Partitions); err != nil {
		t.Fatal(err)
	}
	return f
}

// produceHeld produces the events newHeldFixture held back.
func (f *fixture) produceHeld() error {
	return verify.Produce(f.ctx, f.brokers, "in", f.held, f.partitions)
}

// spec is the window job over the fixture's topics: 1 s windows, 100 ms
// out-of-orderness (the generator's bound), from the earliest offsets.
func (f *fixture) spec(name string) JobSpec {
	return JobSpec{
		Name: name, Brokers: f.brokers,
		Source:   SourceSpec{Topic: "in", Start: StartSpec{Mode: StartEarliest}},
		KeyField: "user", TimestampField: "ts",
		Window:    WindowSpec{Size: time.Second, OutOfOrderness: 100 * time.Millisecond},
		Aggregate: AggregateSpec{ValueField: "amount"},
		Sink:      SinkSpec{Topic: "out"},
	}
}

// drain runs a job built from spec until it has drained its input.
func (f *fixture) drain(spec JobSpec, opts ...Option) *Job {
	f.t.Helper()
	job, err := NewJob(spec, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	job.Drain()
	if err := job.Run(f.ctx); err != nil {
		f.t.Fatal(err)
	}
	return job
}

// runUntil runs a job built from spec and cancels it (no drain) once stop
// returns true after a completed checkpoint: the first run of a restore test.
func (f *fixture) runUntil(spec JobSpec, stop func(job *Job, id uint64) bool, opts ...Option) *Job {
	f.t.Helper()
	runCtx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	var job *Job
	opts = append(opts, WithCheckpointListener(func(id uint64, _ bool) {
		if stop(job, id) {
			cancel()
		}
	}))
	job, err := NewJob(spec, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := job.Run(runCtx); !errors.Is(err, context.Canceled) {
		f.t.Fatalf("first run: %v, want it cancelled", err)
	}
	return job
}

// check reads the output with read_committed and compares it with the
// expected windows: every window exactly once (exact), or its newest value
// right (at-least-once output after a restore).
func (f *fixture) check(exact bool) verify.Verdict {
	f.t.Helper()
	got, err := verify.ReadResults(f.ctx, f.brokers, "out", verify.ReadCommitted)
	if err != nil {
		f.t.Fatal(err)
	}
	expected := verify.Expected(f.events, time.Second)
	v := verify.CompareLatest(len(f.events), expected, got)
	if exact {
		v = verify.Compare(len(f.events), expected, got)
	}
	f.t.Log(v.String())
	if !v.OK {
		f.t.Fatal(v.Report())
	}
	return v
}

// TestJobOnKfake runs the window job on the in-process broker, drains it,
// and compares every window result with the verifier's expected one.
func TestJobOnKfake(t *testing.T) {
	for _, p := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("parallelism=%d", p), func(t *testing.T) {
			f := newFixture(t, verify.GenConfig{Seed: int64(p), Keys: 50, Partitions: 4, Events: 5000,
				Step: 10 * time.Millisecond, OutOfOrderness: 100 * time.Millisecond})
			spec := f.spec("t")
			spec.Parallelism = p
			job := f.drain(spec)
			if st := job.Stats(); st.RecordsIn != int64(len(f.events)) || st.LateDropped != 0 {
				t.Fatalf("stats %+v, want %d records in and none late", st, len(f.events))
			}
			f.check(true)
		})
	}
}

// TestCheckpointRestoreOnKfake: a job takes checkpoints and is cancelled
// mid-stream; a second run restores the newest checkpoint and drains. The
// latest result of every window must be right, and the second run must
// have restored (read fewer records than the input).
func TestCheckpointRestoreOnKfake(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 7, Keys: 200, Partitions: 4, Events: 60000})
	spec := f.spec("ckpt")
	spec.Parallelism = 2
	spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: t.TempDir()}
	// Run 1 stops after a checkpoint triggered once at least 10,000
	// records had been read has completed.
	var armedAt atomic.Uint64
	job1 := f.runUntil(spec, func(job *Job, id uint64) bool {
		if job.Stats().RecordsIn < 10000 {
			return false
		}
		if armedAt.Load() == 0 {
			armedAt.Store(id + 1) // the next one was triggered after this point
			return false
		}
		return id >= armedAt.Load()
	}, WithFlowControl(1, 64))
	st1 := job1.Stats()
	if armedAt.Load() == 0 || st1.LastCheckpoint < armedAt.Load() {
		t.Fatalf("run 1 ended before a checkpoint after 10,000 records: %+v", st1)
	}
	st2 := f.drain(spec).Stats()
	t.Logf("run 1: %+v; run 2: %+v", st1, st2)
	if st2.RestoredFrom != st1.LastCheckpoint {
		t.Fatalf("run 2 restored checkpoint %d, want the newest, %d", st2.RestoredFrom, st1.LastCheckpoint)
	}
	if st2.RecordsIn >= int64(len(f.events)) {
		t.Fatalf("run 2 read %d records, all of the input: it did not resume from the checkpoint", st2.RecordsIn)
	}
	f.check(false)
}

// TestCorruptCheckpointFallsBack: the newest checkpoint is damaged (a bit
// flipped in its metadata, or its metadata missing); the next run reports it
// and restores the previous complete checkpoint, and the output is right.
func TestCorruptCheckpointFallsBack(t *testing.T) {
	for _, damage := range []string{"bit-flip", "truncate", "missing-metadata"} {
		t.Run(damage, func(t *testing.T) {
			f := newFixture(t, verify.GenConfig{Seed: 3, Keys: 100, Partitions: 2, Events: 30000})
			dir := t.TempDir()
			spec := f.spec("corrupt")
			spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: dir, Retain: 5}
			job1 := f.runUntil(spec, func(job *Job, id uint64) bool {
				return id >= 4 && job.Stats().RecordsIn > 5000
			}, WithFlowControl(1, 64))
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
			st := f.drain(spec, WithLogger(slog.New(slog.NewTextHandler(&logBuf, nil)))).Stats()
			if st.RestoredFrom == 0 || st.RestoredFrom >= last {
				t.Fatalf("run 2 restored checkpoint %d; want the one before the damaged %d", st.RestoredFrom, last)
			}
			if damage != "missing-metadata" && !strings.Contains(logBuf.String(), "skipping a broken checkpoint") {
				t.Fatalf("the damaged checkpoint %d was not reported:\n%s", last, logBuf.String())
			}
			t.Logf("damaged checkpoint %d, restored %d", last, st.RestoredFrom)
			f.check(false)
		})
	}
}

// TestAllCheckpointsBrokenRefusesFreshStart: every checkpoint in
// checkpoint.dir is damaged. The next run does not start fresh over them
// (it would lose their state): it fails before any task starts with one
// line naming the directory, each checkpoint and the way out, and leaves
// them in place; with WithAllowFreshStart it starts from the start
// position, and its output is right.
func TestAllCheckpointsBrokenRefusesFreshStart(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 5, Keys: 100, Partitions: 2, Events: 20000})
	dir := t.TempDir()
	spec := f.spec("all-broken")
	spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: dir, Retain: 3}
	f.runUntil(spec, func(job *Job, id uint64) bool { return id >= 4 }, WithFlowControl(1, 64))
	metas, err := filepath.Glob(filepath.Join(dir, "chk-*", "_metadata"))
	if err != nil || len(metas) == 0 {
		t.Fatalf("no checkpoint metadata in %s (%v)", dir, err)
	}
	for _, meta := range metas {
		b, err := os.ReadFile(meta)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x10
		if err := os.WriteFile(meta, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	job, err := NewJob(spec)
	if err != nil {
		t.Fatal(err)
	}
	job.Drain()
	err = job.Run(f.ctx)
	var broken *BrokenCheckpointsError
	if !errors.As(err, &broken) || len(broken.Problems) != len(metas) {
		t.Fatalf("run over %d damaged checkpoints: %v; want a BrokenCheckpointsError naming each", len(metas), err)
	}
	msg := err.Error()
	for _, meta := range metas {
		if !strings.Contains(msg, filepath.Base(filepath.Dir(meta))+":") {
			t.Errorf("the error does not name %s: %s", filepath.Dir(meta), msg)
		}
	}
	if !strings.Contains(msg, dir) || !strings.Contains(msg, "--allow-fresh-start") || strings.ContainsAny(msg, "\r\n") {
		t.Errorf("want one line naming %s and --allow-fresh-start: %q", dir, msg)
	}
	if st := job.Stats(); st.RecordsIn != 0 {
		t.Fatalf("the refused run read %d records", st.RecordsIn)
	}
	for _, meta := range metas {
		if _, err := os.Stat(meta); err != nil {
			t.Fatalf("a damaged checkpoint is gone after the refusal: %v", err)
		}
	}
	t.Logf("refused: %s", msg)

	st := f.drain(spec, WithAllowFreshStart()).Stats()
	if st.RestoredFrom != 0 || st.RecordsIn != int64(len(f.events)) {
		t.Fatalf("fresh start: restored %d, read %d records; want nothing restored and all %d read", st.RestoredFrom, st.RecordsIn, len(f.events))
	}
	f.check(false)
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
	f := newFixture(t, verify.GenConfig{Seed: 5, Keys: 10, Partitions: 2, Events: 2000})
	spec := f.spec("graph")
	spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: t.TempDir()}
	f.runUntil(spec, func(*Job, uint64) bool { return true })
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
		err = j.Run(f.ctx)
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
	// Half the input first; the rest once a checkpoint has completed, and
	// the injected failure on the first record read after that, so the
	// restart has a checkpoint to restore whatever the machine's speed.
	f := newHeldFixture(t, verify.GenConfig{Seed: 11, Keys: 100, Partitions: 2, Events: 40000})
	json := JSONExtract("user", "ts", "amount")
	var armed, failed, heldIn atomic.Bool
	produced := make(chan error, 1)
	spec := f.spec("restart")
	spec.KeyField, spec.TimestampField, spec.Aggregate = "", "", AggregateSpec{}
	spec.Restart = RestartSpec{Strategy: "fixed-delay", Attempts: 2, Delay: 10 * time.Millisecond}
	spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: t.TempDir()}
	spec.Extract = func(v []byte) ([]byte, int64, float64, error) {
		if armed.Load() && !failed.Swap(true) {
			return nil, 0, 0, errors.New("injected failure")
		}
		return json(v)
	}
	var job *Job
	job, err := NewJob(spec, WithFlowControl(1, 64), WithCheckpointListener(func(uint64, bool) {
		if !armed.Swap(true) {
			go func() {
				err := f.produceHeld()
				heldIn.Store(true)
				produced <- err
			}()
		}
		// Once the failure happened, a checkpoint completed after the
		// restart and the held half is in the topic, the job may finish
		// (a drain stops at the end offsets of the moment).
		if failed.Load() && job.Stats().Restarts > 0 && heldIn.Load() {
			job.Drain()
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Run(f.ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	st := job.Stats()
	if st.Restarts != 1 || st.RestoredFrom == 0 {
		t.Fatalf("stats %+v: want one restart from a checkpoint", st)
	}
	t.Logf("restored from %d after the injected failure", st.RestoredFrom)
	f.check(false)

	// Every run fails: the strategy gives up after its 2 restarts.
	spec.Name, spec.Checkpoint.Dir = "restart-give-up", t.TempDir()
	spec.Extract = func([]byte) ([]byte, int64, float64, error) { return nil, 0, 0, errors.New("always broken") }
	job, err = NewJob(spec)
	if err != nil {
		t.Fatal(err)
	}
	err = job.Run(f.ctx)
	if err == nil || !strings.Contains(err.Error(), "always broken") || !strings.Contains(err.Error(), "gave up after 2 restarts") {
		t.Fatalf("Run = %v; want the cause and that the strategy gave up after 2 restarts", err)
	}
}

// eosSpec is the window job with exactly-once delivery and parallelism 2.
func (f *fixture) eosSpec(name string) JobSpec {
	spec := f.spec(name)
	spec.Delivery = ExactlyOnce
	spec.Parallelism = 2
	spec.Checkpoint = CheckpointSpec{Interval: 30 * time.Millisecond, Dir: f.t.TempDir(), Timeout: time.Minute}
	return spec
}

// TestExactlyOnceOnKfake: the exactly-once sink commits every window once
// (read_committed), also when the first run is stopped mid-stream and a
// second run restores and recommits.
func TestExactlyOnceOnKfake(t *testing.T) {
	for _, interrupt := range []bool{false, true} {
		t.Run(fmt.Sprintf("interrupted=%v", interrupt), func(t *testing.T) {
			f := newFixture(t, verify.GenConfig{Seed: 13, Keys: 100, Partitions: 2, Events: 40000})
			spec := f.eosSpec("eos")
			if interrupt {
				job1 := f.runUntil(spec, func(job *Job, _ uint64) bool { return job.Stats().RecordsIn > 15000 }, WithFlowControl(1, 64))
				t.Logf("run 1: %+v", job1.Stats())
			}
			t.Logf("last run: %+v", f.drain(spec).Stats())
			f.check(true)
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
			f := newFixture(t, verify.GenConfig{Seed: 17, Keys: 300, Partitions: 4, Events: 200000})
			spec := f.eosSpec("rescale")
			st1 := f.runUntil(spec, func(_ *Job, id uint64) bool { return id >= 2 }, WithFlowControl(1, 64)).Stats()
			spec.Parallelism = newP
			st2 := f.drain(spec).Stats()
			t.Logf("run 1 (p=2): read %d, last checkpoint %d; run 2 (p=%d): restored %d, read %d",
				st1.RecordsIn, st1.LastCheckpoint, newP, st2.RestoredFrom, st2.RecordsIn)
			if st2.RestoredFrom < 2 {
				t.Fatalf("run 2 did not resume from the checkpoint: %+v", st2)
			}
			f.check(true)
		})
	}
}

// TestAtLeastOnceCheckpoints: with checkpoint.mode at-least-once nothing is
// held at barriers; checkpoints still complete, and a run without failures
// is exact. A spec asking for exactly-once delivery on such checkpoints is
// refused, naming the key.
func TestAtLeastOnceCheckpoints(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 19, Keys: 100, Partitions: 4, Events: 40000})
	spec := f.spec("alo")
	spec.Parallelism = 2
	spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: t.TempDir(), Mode: CheckpointAtLeastOnce}
	// Unbounded until two checkpoints completed, then drained.
	var job *Job
	job, err := NewJob(spec, WithFlowControl(1, 64), WithCheckpointListener(func(id uint64, _ bool) {
		if id >= 2 {
			job.Drain()
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Run(f.ctx); err != nil {
		t.Fatal(err)
	}
	if st := job.Stats(); st.Checkpoints < 2 {
		t.Fatalf("fewer than 2 checkpoints completed: %+v", st)
	}
	f.check(true)
	spec.Delivery = ExactlyOnce
	if _, err := NewJob(spec); err == nil || !strings.HasPrefix(err.Error(), "checkpoint.mode:") {
		t.Fatalf("NewJob = %v; want a checkpoint.mode error", err)
	}
}
