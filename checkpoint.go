package weir

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/internal/privfs"
	"github.com/weirstream/weir/operator/window"
	"github.com/weirstream/weir/snapshot"
	"github.com/weirstream/weir/supervisor"
	"github.com/weirstream/weir/txsink"
)

// fingerprint names the shape of the job graph a checkpoint belongs to; a
// checkpoint of another shape is refused on restore. The parallelism is not
// part of it: a checkpoint restores into another parallelism by
// redistributing key groups, partitions and pending transactions.
//
// The window job's fingerprint names its window operator; the passthrough
// job's names its kind, so neither restores the other's checkpoints.
func (j *Job) fingerprint() string {
	if j.dataflow() {
		return j.graph.fingerprint()
	}
	s := j.spec
	if s.Kind == KindPassthrough {
		return fmt.Sprintf("kind=passthrough source(%s)->sink(%s)", s.Source.Topic, s.Sink.Topic)
	}
	return fmt.Sprintf("source(%s)->window(%dms)->sink(%s) key_groups=%d",
		s.Source.Topic, s.Window.Size.Milliseconds(), s.Sink.Topic, actors.KeyGroups)
}

// taskNames lists the job's tasks, as they are named in checkpoints.
func (j *Job) taskNames() []string {
	return j.graph.taskNames(j.spec.Parallelism)
}

// stateSetup is what Run prepares before the tasks start when checkpoints
// are on: one store per task (restored or fresh), the restored operator
// states, and the coordinator's plan.
type stateSetup struct {
	fs       vfs.FS
	root     string
	lock     *os.File
	restored *snapshot.Metadata
	cps      map[string]*actors.Checkpointing
	after    uint64
	// spillOwners are the owners of this run's exactly-once sink
	// subtasks; spill files of any other owner are garbage once the run
	// completed a checkpoint (removeStaleSpills).
	spillOwners []string
	spillGC     sync.Once
}

// removeStaleSpills deletes, once per run, the spill files of sink owners
// that no longer exist (a smaller parallelism, a sink removed): at the
// first checkpoint the run completes, every sink subtask has recovered,
// so what they took over is committed. Each live owner deletes its own
// stale files when it recovers.
func (st *stateSetup) removeStaleSpills() {
	st.spillGC.Do(func() {
		txsink.RemoveSpillsExcept(st.fs, filepath.Join(st.root, actors.SpillDir), st.spillOwners)
	})
}

func (st *stateSetup) close() {
	for _, cp := range st.cps {
		if cp.Store != nil {
			cp.Store.Close()
		}
	}
	if st.lock != nil {
		st.lock.Close()
	}
}

// BrokenCheckpointsError is returned by Run when checkpoint.dir holds
// checkpoints but none of them can be restored (corrupt, truncated,
// unreadable): the job does not start fresh over them, which would lose
// their state and, with exactly-once delivery, write committed output
// again. Restore one with WithSavepoint, repair the directory, or allow a
// fresh start with WithAllowFreshStart (engine run --allow-fresh-start).
type BrokenCheckpointsError struct {
	Dir      string
	Problems []snapshot.Problem
}

func (e *BrokenCheckpointsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "checkpoint.dir %s holds checkpoints but none can be restored:", e.Dir)
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " chk-%d: %v", p.ID, p.Err)
	}
	b.WriteString("; restore one with --from-savepoint, repair the directory, or start over with --allow-fresh-start (this discards them)")
	return b.String()
}

// ErrCheckpointDirInUse is returned when another process runs a job with the
// same checkpoint directory.
var ErrCheckpointDirInUse = errors.New("weir: checkpoint.dir is in use by another process")

// setupState opens the checkpoint directory and every task's store,
// restoring from the savepoint given with WithSavepoint, else from the
// newest complete checkpoint, else fresh.
//
// Only what a restore needs is read: the candidates from the newest
// checkpoint down to the first that verifies (checksums included); older
// checkpoints are only checked for readability (metadata and file sizes),
// and one that cannot be read is a warning. Everything it creates is
// private (directories 0700, files 0600). When ctx ends (SIGTERM) it stops,
// between files and while it checksums them.
func (j *Job) setupState(ctx context.Context) (*stateSetup, error) {
	c := j.spec.Checkpoint
	root, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint.dir: %w", err)
	}
	fs := privfs.Wrap(j.opts.fs)
	st := &stateSetup{fs: fs, root: root, cps: map[string]*actors.Checkpointing{}}
	if err := os.MkdirAll(root, privfs.DirMode); err != nil {
		return nil, fmt.Errorf("checkpoint.dir: cannot create %s: %w", root, err)
	}
	lock, err := openLock(filepath.Join(root, "LOCK"))
	if err != nil {
		return nil, fmt.Errorf("checkpoint.dir: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("checkpoint.dir %s: %w; stop the other engine or use another directory", root, ErrCheckpointDirInUse)
	}
	st.lock = lock
	// A directory made by an older weir (0755) or by hand: its checkpoints
	// hold pending output records, so others lose access to all of it.
	if fi, err := os.Stat(root); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(root, privfs.DirMode); err != nil {
			j.opts.log.Warn("checkpoint.dir is open to other users and cannot be made private", "dir", root, "mode", fi.Mode().Perm(), "err", err)
		} else {
			j.opts.log.Warn("checkpoint.dir was open to other users; it is now private (0700)", "dir", root, "was", fi.Mode().Perm())
		}
	}
	fail := func(err error) (*stateSetup, error) {
		st.close()
		return nil, err
	}
	if j.opts.onLocked != nil {
		if err := j.opts.onLocked(root); err != nil {
			return fail(fmt.Errorf("checkpoint.dir %s: %w", root, err))
		}
	}

	ids, err := snapshot.IDs(st.fs, root)
	if err != nil {
		return fail(fmt.Errorf("checkpoint.dir: %w", err))
	}
	for _, id := range ids {
		st.after = max(st.after, id)
	}

	// Which checkpoint to restore, and from which root.
	var metaRoot string
	if j.opts.savepoint != "" {
		m, r, err := j.acceptSavepoint(ctx, st.fs, true)
		if err != nil {
			return fail(err)
		}
		st.restored, metaRoot = &m, r
		st.after = max(st.after, m.ID)
	} else {
		accept := func(m snapshot.Metadata) error {
			if j.dataflow() {
				return j.graph.acceptCheckpoint(m, j.opts.allowDrop)
			}
			if m.GraphFingerprint != j.fingerprint() {
				return fmt.Errorf("snapshot: checkpoint %d in %s was taken with graph fingerprint %q, not %q (the job's operator graph changed)",
					m.ID, root, m.GraphFingerprint, j.fingerprint())
			}
			return nil
		}
		m, problems, err := snapshot.LatestAccepted(ctx, st.fs, root, j.spec.Name, accept)
		if ctx.Err() != nil {
			return fail(fmt.Errorf("checkpoint.dir: restore stopped: %w", ctx.Err()))
		}
		var broken []snapshot.Problem
		for _, p := range problems {
			if errors.Is(p.Err, snapshot.ErrIncomplete) {
				j.opts.log.Warn("ignoring an incomplete checkpoint (the job stopped while taking it)", "checkpoint", p.ID)
				continue
			}
			broken = append(broken, p)
		}
		switch {
		case errors.Is(err, snapshot.ErrNoCheckpoint) && len(broken) > 0 && !j.opts.allowFreshStart:
			// Starting over would lose the state and, with exactly-once
			// delivery, write again what was committed: refuse.
			return fail(&BrokenCheckpointsError{Dir: root, Problems: broken})
		case errors.Is(err, snapshot.ErrNoCheckpoint):
			for _, p := range broken {
				j.opts.log.Warn("discarding an unreadable checkpoint (allowed to start fresh)", "problem", p.String())
			}
		case err != nil:
			return fail(fmt.Errorf("checkpoint.dir: %w; run with the settings the checkpoint was taken with, or use a fresh checkpoint.dir", err))
		default:
			st.restored, metaRoot = &m, root
			for _, p := range broken {
				j.opts.log.Error("skipping a broken checkpoint; an older complete one is used", "problem", p.String(), "used", m.ID)
			}
			j.warnOlderCheckpoints(st, ids, m.ID)
		}
	}
	if st.restored != nil {
		j.opts.log.Info("restoring from checkpoint", "checkpoint", st.restored.ID, "savepoint", st.restored.Savepoint,
			"taken", st.restored.Time, "dir", snapshot.CheckpointDir(st.fs, metaRoot, st.restored.ID))
	} else {
		j.opts.log.Info("no checkpoint to restore; starting from the start position", "dir", root)
	}

	live := filepath.Join(root, "live")
	if st.restored != nil {
		if oldP := j.restoredParallelism(*st.restored); oldP > 0 && oldP != j.spec.Parallelism {
			if err := j.rescale(ctx, st, metaRoot, oldP); err != nil {
				return fail(err)
			}
			return st, nil
		}
	}
	for _, task := range j.taskNames() {
		liveDir := filepath.Join(live, task)
		opts := j.storeOptions(task)
		cp := j.newCheckpointing(st)
		held := st.restored != nil
		if held && j.dataflow() {
			if _, held = st.restored.Tasks[task]; !held {
				// A dataflow operator the checkpoint has no state for (added
				// to the program since): it starts empty.
				j.opts.log.Info("no state for this task in the checkpoint; it starts empty", "task", task, "checkpoint", st.restored.ID)
			}
		}
		if held {
			store, opState, err := snapshot.Restore(ctx, st.fs, metaRoot, *st.restored, task, liveDir, opts)
			if err != nil {
				return fail(err)
			}
			cp.Store, cp.OpState, cp.RestoredFrom = store, opState, st.restored.ID
		} else {
			if err := os.RemoveAll(liveDir); err != nil {
				return fail(fmt.Errorf("checkpoint.dir: clear %s: %w", liveDir, err))
			}
			store, err := snapshot.OpenStore(st.fs, liveDir, opts)
			if err != nil {
				return fail(err)
			}
			cp.Store = store
		}
		st.cps[task] = cp
	}
	return st, nil
}

// openLock opens (creating it 0600) the LOCK file of the checkpoint
// directory without blocking: it must be a regular file, not a named pipe.
func openLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_NONBLOCK, privfs.FileMode)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (mode %s); remove it, the job creates it", path, st.Mode())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// warnOlderCheckpoints logs a warning for each checkpoint in ids older than
// the one restored that cannot be read (metadata, presence and sizes of its
// files; no checksums): the job does not need it, but its owner should know.
func (j *Job) warnOlderCheckpoints(st *stateSetup, ids []uint64, restored uint64) {
	for _, id := range ids {
		if id >= restored {
			continue
		}
		if _, err := snapshot.Check(st.fs, st.root, id); err != nil && !errors.Is(err, snapshot.ErrIncomplete) {
			j.opts.log.Warn("an older checkpoint cannot be read; it is not used, and retention deletes it after the next checkpoint",
				"checkpoint", id, "err", err)
		}
	}
}

// pebbleLogger sends Pebble's errors (background errors: a failed flush or
// compaction, a corrupt sstable) to the job's log; its informational lines
// (WAL replay, ...) are dropped. Fatalf is called from Pebble's background
// goroutines, where a panic would end the process with exit code 2 (the
// code for bad input): like Pebble's default logger it logs and exits with
// code 1.
type pebbleLogger struct {
	log  *slog.Logger
	task string
	// exit ends the process (os.Exit; tests replace it).
	exit func(code int)
}

func (pebbleLogger) Infof(string, ...any) {}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble error", "task", l.task, "err", strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error("pebble fatal error; the process exits (code 1)", "task", l.task,
		"err", strings.TrimSpace(fmt.Sprintf(format, args...)))
	exit := l.exit
	if exit == nil {
		exit = os.Exit
	}
	exit(1)
}

// storeOptions keeps the stores of stateless tasks small.
func (j *Job) storeOptions(task string) snapshot.StoreOptions {
	base, _, _ := cutTaskIndex(task)
	kind := j.graph.statefulOps()[base]
	return storeOptions(kind != "process" && kind != "window", pebbleLogger{log: j.opts.log, task: task})
}

func storeOptions(small bool, logger pebble.Logger) snapshot.StoreOptions {
	return snapshot.StoreOptions{Tune: func(o *pebble.Options) {
		o.Logger = logger
		if small {
			o.MemTableSize = 256 << 10
		}
	}}
}

// WithOnLocked calls f with checkpoint.dir (an absolute path) each time the
// job has taken the directory's lock, the flock on <checkpoint.dir>/LOCK
// that no other job can hold at the same time: when Run starts and at
// every restart, before the directory is read. An error from f ends Run.
// engine run writes engine.pid there, so that only the engine holding the
// directory names itself in it.
func WithOnLocked(f func(dir string) error) Option { return func(o *options) { o.onLocked = f } }

// CheckSavepoint checks the checkpoint or savepoint given with WithSavepoint
// as Run does before restoring it, and writes nothing: a chk-<N> directory
// whose metadata is readable and complete, taken by this job (its name) with
// this graph. Run checks it again and also verifies the checksums of its
// files. Nil without WithSavepoint.
func (j *Job) CheckSavepoint() error {
	if j.opts.savepoint == "" {
		return nil
	}
	fs := j.opts.fs
	if fs == nil {
		fs = vfs.Default
	}
	_, _, err := j.acceptSavepoint(context.Background(), fs, false)
	return err
}

// acceptSavepoint reads the savepoint given with WithSavepoint (verify: and
// checks its files) and refuses one of another job or graph.
func (j *Job) acceptSavepoint(ctx context.Context, fs vfs.FS, verify bool) (snapshot.Metadata, string, error) {
	m, r, err := loadSavepoint(ctx, fs, j.opts.savepoint, verify)
	if err != nil {
		return snapshot.Metadata{}, "", err
	}
	if j.dataflow() && m.JobName == j.spec.Name {
		if err := j.graph.acceptCheckpoint(m, j.opts.allowDrop); err != nil {
			return snapshot.Metadata{}, "", fmt.Errorf("--from-savepoint %s: %w", j.opts.savepoint, err)
		}
	} else if m.JobName != j.spec.Name || m.GraphFingerprint != j.fingerprint() {
		return snapshot.Metadata{}, "", fmt.Errorf("--from-savepoint %s: it belongs to job %q with graph %q, not job %q with graph %q",
			j.opts.savepoint, m.JobName, m.GraphFingerprint, j.spec.Name, j.fingerprint())
	}
	return m, r, nil
}

// loadSavepoint reads the checkpoint or savepoint at path, a chk-<N>
// directory, and with verify checks its files.
func loadSavepoint(ctx context.Context, fs vfs.FS, path string, verify bool) (snapshot.Metadata, string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return snapshot.Metadata{}, "", fmt.Errorf("--from-savepoint %s: %w", path, err)
	}
	base := filepath.Base(abs)
	id, err := strconv.ParseUint(strings.TrimPrefix(base, "chk-"), 10, 64)
	if !strings.HasPrefix(base, "chk-") || err != nil {
		return snapshot.Metadata{}, "", fmt.Errorf("--from-savepoint %s: not a checkpoint directory; give a chk-<N> directory as printed by engine savepoint or engine checkpoints", path)
	}
	root := filepath.Dir(abs)
	m, err := snapshot.ReadMetadata(fs, root, id)
	if err != nil {
		return snapshot.Metadata{}, "", fmt.Errorf("--from-savepoint %s: %w", path, err)
	}
	if !verify {
		return m, root, nil
	}
	if err := snapshot.Verify(ctx, fs, root, m); err != nil {
		return snapshot.Metadata{}, "", fmt.Errorf("--from-savepoint %s: %w", path, err)
	}
	return m, root, nil
}

func (j *Job) newCheckpointing(st *stateSetup) *actors.Checkpointing {
	return &actors.Checkpointing{FS: st.fs, Root: st.root, ExactlyOnce: j.spec.Checkpoint.Mode != CheckpointAtLeastOnce,
		SnapshotTimeout: j.spec.Checkpoint.Timeout, Failpoint: j.opts.failpoint}
}

// restoredParallelism is the parallelism checkpoint m was taken with: the
// number of subtasks of the first operator with state that it and the
// program share (every subtask of an operator with state has a task
// there), 0 when they share none.
func (j *Job) restoredParallelism(m snapshot.Metadata) int {
	ops := j.graph.statefulOps()
	uids := slices.Sorted(maps.Keys(ops))
	for _, uid := range uids {
		n := 0
		for task := range m.Tasks {
			if base, _, ok := cutTaskIndex(task); ok && base == uid {
				n++
			}
		}
		if n > 0 {
			return n
		}
	}
	return 0
}

// rescale restores a checkpoint taken with parallelism oldP into the job's
// parallelism (Flink's rescaling by key groups), operator by operator:
//
//  1. every subtask of a source gets the positions of all its partitions
//     (each keeps the ones it owns now);
//  2. keyed state (windows, keyed Process) moves by key group: each entry
//     goes to the subtask that owns its key group now; the watermark
//     restored is the smallest;
//  3. the pending transactions of old sink subtask k go to new subtask
//     k mod p, which also fences the transactional ids of old subtasks it
//     takes over, so no transaction of the old layout stays open.
//
// Operators the checkpoint has no state for start empty; state of
// operators the program lacks was refused or allowed to drop before.
func (j *Job) rescale(ctx context.Context, st *stateSetup, metaRoot string, oldP int) error {
	m := *st.restored
	newP := j.spec.Parallelism
	j.opts.log.Warn("restoring a checkpoint taken with another parallelism: redistributing state",
		"checkpoint", m.ID, "from", oldP, "to", newP)
	scratch := filepath.Join(st.root, "live", "rescale")
	defer os.RemoveAll(scratch)
	// readOld restores an old task into scratch and hands its store and
	// operator state to f.
	readOld := func(task string, f func(store *snapshot.Store, op []byte) error) error {
		dir := filepath.Join(scratch, task)
		store, op, err := snapshot.Restore(ctx, st.fs, metaRoot, m, task, dir, j.storeOptions(task))
		if err != nil {
			return err
		}
		ferr := f(store, op)
		if err := store.Close(); err != nil && ferr == nil {
			ferr = err
		}
		return ferr
	}
	// Fresh stores for every new task.
	for _, task := range j.taskNames() {
		liveDir := filepath.Join(st.root, "live", task)
		if err := os.RemoveAll(liveDir); err != nil {
			return fmt.Errorf("checkpoint.dir: clear %s: %w", liveDir, err)
		}
		store, err := snapshot.OpenStore(st.fs, liveDir, j.storeOptions(task))
		if err != nil {
			return err
		}
		cp := j.newCheckpointing(st)
		cp.Store, cp.RestoredFrom = store, m.ID
		st.cps[task] = cp
	}
	ops := j.graph.statefulOps()
	uids := slices.Sorted(maps.Keys(ops))
	for _, uid := range uids {
		if _, held := m.Tasks[supervisor.TaskName(uid, 0)]; !held {
			continue // new since the checkpoint: starts empty
		}
		var err error
		switch kind := ops[uid]; kind {
		case "source":
			err = j.rescaleSource(st, uid, oldP, readOld)
		case "sink":
			err = j.rescaleSink(st, uid, oldP, readOld)
		default:
			err = j.rescaleKeyed(st, uid, kind, oldP, readOld)
		}
		if err != nil {
			return fmt.Errorf("rescale %s from checkpoint %d: %w", uid, m.ID, err)
		}
	}
	return nil
}

type readOldFunc func(task string, f func(store *snapshot.Store, op []byte) error) error

// rescaleSource gives every new subtask of source uid the merged
// positions of the old ones.
func (j *Job) rescaleSource(st *stateSetup, uid string, oldP int, readOld readOldFunc) error {
	merged, err := actors.MergeSourceStates(func(add func(op []byte) error) error {
		for i := 0; i < oldP; i++ {
			if err := readOld(supervisor.TaskName(uid, i), func(_ *snapshot.Store, op []byte) error { return add(op) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := 0; i < j.spec.Parallelism; i++ {
		st.cps[supervisor.TaskName(uid, i)].OpState = merged
	}
	return nil
}

// rescaleKeyed moves the keyed state of operator uid by key group and
// merges its operator states (the smallest watermark).
func (j *Job) rescaleKeyed(st *stateSetup, uid, kind string, oldP int, readOld readOldFunc) error {
	newP := j.spec.Parallelism
	targets := make([]*snapshot.Store, newP)
	for i := range targets {
		targets[i] = st.cps[supervisor.TaskName(uid, i)].Store
	}
	var ops [][]byte
	for i := 0; i < oldP; i++ {
		err := readOld(supervisor.TaskName(uid, i), func(store *snapshot.Store, op []byte) error {
			ops = append(ops, op)
			return actors.RedistributeWindowState(store, targets)
		})
		if err != nil {
			return err
		}
	}
	var (
		op  []byte
		err error
	)
	if kind == "window" {
		op, err = window.MergeOpStates(ops)
	} else {
		op, err = mergeProcessStates(ops)
	}
	if err != nil {
		return err
	}
	for i := 0; i < newP; i++ {
		st.cps[supervisor.TaskName(uid, i)].OpState = op
	}
	return nil
}

// rescaleSink gives the pending transactions of old subtask k to new
// subtask k mod p, which fences the transactional ids of the old subtasks
// beyond p.
func (j *Job) rescaleSink(st *stateSetup, uid string, oldP int, readOld readOldFunc) error {
	newP := j.spec.Parallelism
	prefix := j.spec.Sink.TransactionalIDPrefix
	pg := false
	for _, n := range j.graph.sinks {
		if n.uid == uid {
			prefix = n.sink.spec.TransactionalIDPrefix
			pg = n.sink.pg != nil
		}
	}
	for k := 0; k < oldP; k++ {
		cp := st.cps[supervisor.TaskName(uid, k%newP)]
		err := readOld(supervisor.TaskName(uid, k), func(_ *snapshot.Store, op []byte) error {
			if len(op) > 0 && string(op) != "{}" {
				cp.OpStates = append(cp.OpStates, op)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if k >= newP && j.spec.Delivery == ExactlyOnce {
			if pg {
				// PostgreSQL: the old subtask's slot sessions are
				// terminated, its prepared transactions rolled back.
				cp.FenceIDs = append(cp.FenceIDs, txsink.PostgresIDs(txsink.Owner(j.spec.Name, uid, k), txsinkPool)...)
				continue
			}
			cp.FenceIDs = append(cp.FenceIDs, txsink.TransactionalIDs(prefix, j.spec.Name, uid, k, k+1, txsinkPool)...)
		}
	}
	return nil
}

// txsinkPool is the number of transactional producers per sink subtask.
const txsinkPool = 2
