package weir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/integration/verify"
)

// waitFor fails the test unless ch delivers within a minute.
func waitFor[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("%s: nothing within a minute", what)
	}
	var zero T
	return zero
}

// runAsync runs job in the background; the channel receives Run's error.
func runAsync(ctx context.Context, job *Job) <-chan error {
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	return done
}

// TestCheckpointFilesArePrivate: after a job took checkpoints under the
// usual umask 022, every directory under checkpoint.dir (the live stores,
// the checkpoints) is 0700 and every file 0600, Pebble's included.
func TestCheckpointFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	f := newFixture(t, verify.GenConfig{Seed: 21, Keys: 50, Partitions: 2, Events: 5000})
	dir := filepath.Join(t.TempDir(), "ck")
	spec := f.spec("private")
	spec.Delivery = ExactlyOnce
	spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: dir}
	f.runUntil(spec, func(job *Job, id uint64) bool { return id >= 3 }, WithFlowControl(1, 64))

	dirs, files := 0, 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch m := info.Mode(); {
		case m.IsDir():
			dirs++
			if m.Perm() != 0o700 {
				t.Errorf("directory %s is %v, want drwx------", path, m)
			}
		case m.IsRegular():
			files++
			if m.Perm() != 0o600 {
				t.Errorf("file %s is %v, want -rw-------", path, m)
			}
		default:
			t.Errorf("%s is %v, neither a directory nor a regular file", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ssts, _ := filepath.Glob(filepath.Join(dir, "chk-*", "*", "db", "MANIFEST-*")); len(ssts) == 0 {
		t.Fatalf("no Pebble files in the checkpoints of %s", dir)
	}
	t.Logf("%d directories and %d files checked", dirs, files)
}

// blockRemoveAll blocks the first RemoveAll of a chk-<N> directory until
// release is closed.
type blockRemoveAll struct {
	vfs.FS
	blocked chan string
	release chan struct{}
	once    sync.Once
}

func (b *blockRemoveAll) Unwrap() vfs.FS { return b.FS }

func (b *blockRemoveAll) RemoveAll(name string) error {
	if strings.HasPrefix(filepath.Base(name), "chk-") {
		first := false
		b.once.Do(func() { first = true })
		if first {
			b.blocked <- name
			<-b.release
		}
	}
	return b.FS.RemoveAll(name)
}

// TestCheckpointRetentionOffSupervisor: while retention is stuck deleting
// an old checkpoint (a slow disk), checkpoints keep completing; once it is
// released the old checkpoint goes, and the job stops cleanly.
func TestCheckpointRetentionOffSupervisor(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 22, Keys: 50, Partitions: 2, Events: 5000})
	dir := filepath.Join(t.TempDir(), "ck")
	spec := f.spec("retention")
	spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: dir, Retain: 1}
	bfs := &blockRemoveAll{FS: vfs.Default, blocked: make(chan string, 1), release: make(chan struct{})}
	completed := make(chan uint64, 10000)
	job, err := NewJob(spec, WithFS(bfs), WithCheckpointListener(func(id uint64, _ bool) {
		select {
		case completed <- id:
		default:
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(f.ctx)
	released := sync.OnceFunc(func() { close(bfs.release) })
	done := runAsync(ctx, job)
	stopped := false
	t.Cleanup(func() {
		released()
		cancel()
		if !stopped {
			<-done
		}
	})

	stuck := waitFor(t, "retention deleting an old checkpoint", bfs.blocked)
	// Checkpoints complete while retention is stuck: two more after the
	// newest seen so far.
	var newest uint64
	for {
		select {
		case id := <-completed:
			newest = max(newest, id)
			continue
		default:
		}
		break
	}
	for target := newest + 2; newest < target; {
		newest = max(newest, waitFor(t, fmt.Sprintf("checkpoint %d while retention is stuck on %s", target, stuck), completed))
	}
	released()
	cancel()
	err = waitFor(t, "the job to stop", done)
	stopped = true
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want it cancelled", err)
	}
	if _, err := os.Stat(stuck); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after retention was released: %v", stuck, err)
	}
}

// TestCheckpointOlderUnreadableIsWarning: an older checkpoint whose
// _metadata is garbage and a chk-0 that is a file do not stop the start:
// the newest checkpoint is restored, each is a warning naming it, and
// retention removes them after the next checkpoint.
func TestCheckpointOlderUnreadableIsWarning(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 23, Keys: 100, Partitions: 2, Events: 20000})
	dir := t.TempDir()
	spec := f.spec("older")
	spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: dir, Retain: 3}
	job1 := f.runUntil(spec, func(job *Job, id uint64) bool { return id >= 4 }, WithFlowControl(1, 64))
	last := job1.Stats().LastCheckpoint
	metas, err := filepath.Glob(filepath.Join(dir, "chk-*", "_metadata"))
	if err != nil || len(metas) < 2 {
		t.Fatalf("want at least 2 checkpoints in %s: %v (%v)", dir, metas, err)
	}
	var oldest string
	for _, m := range metas {
		if !strings.HasSuffix(filepath.Dir(m), fmt.Sprintf("chk-%d", last)) && (oldest == "" || m < oldest) {
			oldest = m
		}
	}
	if err := os.WriteFile(oldest, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	chk0 := filepath.Join(dir, "chk-0")
	if err := os.WriteFile(chk0, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Run 2 drains once it has completed a checkpoint of its own (after
	// which retention runs).
	var logBuf syncBuffer
	var job *Job
	job, err = NewJob(spec, WithLogger(slog.New(slog.NewTextHandler(&logBuf, nil))),
		WithCheckpointListener(func(id uint64, _ bool) {
			if id > last {
				job.Drain()
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Run(f.ctx); err != nil {
		t.Fatal(err)
	}
	st := job.Stats()
	if st.RestoredFrom != last {
		t.Fatalf("run 2 restored checkpoint %d, want the newest, %d", st.RestoredFrom, last)
	}
	log := logBuf.String()
	for _, name := range []string{chk0, oldest} {
		found := false
		for _, l := range strings.Split(log, "\n") {
			found = found || strings.Contains(l, "level=WARN") && strings.Contains(l, "an older checkpoint cannot be read") && strings.Contains(l, name)
		}
		if !found {
			t.Errorf("no warning naming %s:\n%s", name, log)
		}
	}
	for _, p := range []string{chk0, filepath.Dir(oldest)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed by retention: %v", p, err)
		}
	}
	f.check(false)
}

// TestCheckpointFIFOMetadataRestore: a named pipe as the newest
// checkpoint's _metadata does not hang the start: it is reported as not a
// regular file, and the one before it is restored.
func TestCheckpointFIFOMetadataRestore(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 24, Keys: 100, Partitions: 2, Events: 20000})
	dir := t.TempDir()
	spec := f.spec("fifo")
	spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: dir, Retain: 3}
	job1 := f.runUntil(spec, func(job *Job, id uint64) bool { return id >= 4 }, WithFlowControl(1, 64))
	last := job1.Stats().LastCheckpoint
	meta := filepath.Join(dir, fmt.Sprintf("chk-%d", last), "_metadata")
	if err := os.Remove(meta); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(meta, 0o600); err != nil {
		t.Fatal(err)
	}
	var logBuf syncBuffer
	job, err := NewJob(spec, WithLogger(slog.New(slog.NewTextHandler(&logBuf, nil))))
	if err != nil {
		t.Fatal(err)
	}
	job.Drain()
	if err := waitFor(t, "a run over a named pipe as _metadata", runAsync(f.ctx, job)); err != nil {
		t.Fatal(err)
	}
	if st := job.Stats(); st.RestoredFrom == 0 || st.RestoredFrom >= last {
		t.Fatalf("restored checkpoint %d; want one before %d", st.RestoredFrom, last)
	}
	if log := logBuf.String(); !strings.Contains(log, meta+" is not a regular file") {
		t.Fatalf("the named pipe %s was not reported:\n%s", meta, log)
	}
	f.check(false)
}

// cancelOnRead cancels when a file under a chk-<N> directory is opened.
type cancelOnRead struct {
	vfs.FS
	cancel context.CancelFunc
}

func (c *cancelOnRead) Unwrap() vfs.FS { return c.FS }

func (c *cancelOnRead) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	if strings.Contains(name, string(filepath.Separator)+"chk-") {
		c.cancel()
	}
	return c.FS.Open(name, opts...)
}

// TestCheckpointRestoreStopsOnCancel: a cancel (SIGTERM) that comes while
// the start reads a checkpoint stops it: Run returns the cancellation and
// nothing was restored.
func TestCheckpointRestoreStopsOnCancel(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 25, Keys: 100, Partitions: 2, Events: 20000})
	dir := t.TempDir()
	spec := f.spec("cancel")
	spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: dir}
	f.runUntil(spec, func(job *Job, id uint64) bool { return id >= 2 }, WithFlowControl(1, 64))

	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	var logBuf syncBuffer
	job, err := NewJob(spec, WithFS(&cancelOnRead{FS: vfs.Default, cancel: cancel}),
		WithLogger(slog.New(slog.NewTextHandler(&logBuf, nil))))
	if err != nil {
		t.Fatal(err)
	}
	err = waitFor(t, "a cancelled restore", runAsync(ctx, job))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want it cancelled", err)
	}
	if st := job.Stats(); st.RestoredFrom != 0 {
		t.Errorf("restored checkpoint %d after the cancel", st.RestoredFrom)
	}
	if strings.Contains(logBuf.String(), "restoring from checkpoint") {
		t.Errorf("the restore went on after the cancel:\n%s", logBuf.String())
	}
}

// recorder is a slog handler that keeps the records.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// pebbleOptions is what the job gives Pebble for task.
func pebbleOptions(t *testing.T, job *Job, task string) *pebble.Options {
	t.Helper()
	po := &pebble.Options{}
	job.storeOptions(task).Tune(po)
	if po.Logger == nil {
		t.Fatal("no Pebble logger")
	}
	return po
}

func checkpointSpecNoBroker() JobSpec {
	return JobSpec{
		Name: "pebble-log", Brokers: "127.0.0.1:1",
		Source:   SourceSpec{Topic: "in"},
		KeyField: "user", TimestampField: "ts",
		Window:     WindowSpec{Size: time.Second},
		Sink:       SinkSpec{Topic: "out"},
		Checkpoint: CheckpointSpec{Interval: time.Second, Dir: "ck"},
	}
}

// TestCheckpointPebbleErrorsReachSlog: Pebble's background errors reach
// the job's log at error level, with the task; its informational lines
// do not.
func TestCheckpointPebbleErrorsReachSlog(t *testing.T) {
	rec := &recorder{}
	job, err := NewJob(checkpointSpecNoBroker(), WithLogger(slog.New(rec)))
	if err != nil {
		t.Fatal(err)
	}
	po := pebbleOptions(t, job, "window-0")
	po.Logger.Infof("replaying WAL %d", 7)
	po.Logger.Errorf("background error: %s", "disk on fire")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.recs) != 1 {
		t.Fatalf("%d records, want the error only: %v", len(rec.recs), rec.recs)
	}
	r := rec.recs[0]
	var attrs []string
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a.String()); return true })
	all := r.Message + " " + strings.Join(attrs, " ")
	if r.Level != slog.LevelError || !strings.Contains(all, "background error: disk on fire") || !strings.Contains(all, "task=window-0") {
		t.Fatalf("record %v %q; want error level with the message and the task", r.Level, all)
	}
}

// TestCheckpointPebbleFatalExits1: Pebble's Fatalf, called from one of its
// goroutines, logs at error level and exits with code 1 (not the panic's
// 2, the code for bad input).
func TestCheckpointPebbleFatalExits1(t *testing.T) {
	const env = "WEIR_TEST_PEBBLE_FATAL"
	if os.Getenv(env) == "1" {
		job, err := NewJob(checkpointSpecNoBroker(), WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
		if err != nil {
			t.Fatal(err)
		}
		po := pebbleOptions(t, job, "window-0")
		done := make(chan struct{})
		go func() {
			defer close(done)
			po.Logger.Fatalf("MANIFEST is corrupt: %s", "bad record")
		}()
		<-done
		t.Fatal("Fatalf returned")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCheckpointPebbleFatalExits1$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("the process ended with %v, want exit code 1; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "level=ERROR") || !strings.Contains(string(out), "MANIFEST is corrupt: bad record") {
		t.Fatalf("no error line with Pebble's message:\n%s", out)
	}
}

// TestCheckpointDirMadePrivate: a checkpoint.dir that exists open to
// other users (made by an older weir, 0755) is made 0700 when a job takes
// it, with a warning.
func TestCheckpointDirMadePrivate(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 22, Keys: 10, Partitions: 2, Events: 500})
	dir := filepath.Join(t.TempDir(), "ck")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	spec := f.spec("made-private")
	spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: dir}
	var log syncBuffer
	f.drain(spec, WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("checkpoint.dir is %v after the run, want drwx------", fi.Mode())
	}
	if !strings.Contains(log.String(), "it is now private (0700)") {
		t.Fatalf("no warning about the open checkpoint.dir; log:\n%s", log.String())
	}
}
