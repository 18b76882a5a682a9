package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/snapshot"
)

const checkpointsAbout = `Lists the checkpoints and savepoints in the job's checkpoint.dir, one line
per chk-<N> directory, oldest first: id, time taken (RFC 3339), size, state
and directory. The state is complete, savepoint (a complete savepoint),
incomplete (no metadata: in progress or aborted) or corrupt: <why>. The
newest complete checkpoint is verified in full (sizes and checksums), as a
restart would; older ones are checked for their metadata and the presence
and sizes of their files, without reading them (--verify reads every byte
of every one). Only regular files are opened: a named pipe or device in
their place is reported as corrupt, never read. Symbolic links are not
followed when sizing. It only reads, so it works while the job runs. A bad job file, or a job without
checkpoint.interval and checkpoint.dir, is one line and exit code 2. Exit
codes: 0 listed (or nothing to list), 1 the directory cannot be read, 2 bad
input.`

const savepointAbout = `Takes a savepoint of the job running with this job file: reads the pid of
its engine from <checkpoint.dir>/engine.pid (written by engine run), sends
it SIGUSR1, waits until a new complete savepoint appears in checkpoint.dir
and prints its directory on stdout. Restore it with
engine run --config job.yaml --from-savepoint DIR. Exit codes: 0 printed,
1 no savepoint within --timeout or the engine exited, 2 bad input or no
running engine for this job.`

// listAttempts bounds the retries of a listing that raced with retention
// deleting a checkpoint.
const listAttempts = 3

// savepointPoll is the time between two looks at checkpoint.dir while
// engine savepoint waits.
const savepointPoll = 100 * time.Millisecond

func checkpointsCmd(args []string, stdout, stderr io.Writer) int {
	flags := flagSet("checkpoints", checkpointsAbout)
	config := flags.String("config", "", "the job file (YAML) whose checkpoint.dir is listed; required")
	verifyAll := flags.Bool("verify", false, "verify the checksums of every checkpoint and savepoint, not only the newest complete one (reads every byte)")
	if code, done := parseFlags(flags, args, stdout, stderr); done {
		return code
	}
	root, code, ok := jobCheckpointRoot("checkpoints", *config, stderr)
	if !ok {
		return code
	}
	list := snapshot.List
	if *verifyAll {
		list = func(fs vfs.FS, root string) ([]snapshot.Info, error) {
			return snapshot.ListVerified(context.Background(), fs, root)
		}
	}
	infos, err := listCheckpointsWith(list, root)
	if err != nil {
		fmt.Fprintf(stderr, "engine checkpoints: %s\n", oneLine(err.Error()))
		return exitFailed
	}
	if len(infos) == 0 {
		fmt.Fprintf(stdout, "no checkpoints in %s\n", root)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tSIZE\tSTATE\tPATH")
	for _, in := range infos {
		when := "-"
		if !in.Time.IsZero() {
			when = in.Time.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", in.ID, when, humanSize(in.Size), checkpointState(in), in.Dir)
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "engine checkpoints: %s\n", oneLine(err.Error()))
		return exitFailed
	}
	return exitOK
}

// checkpointState is the STATE column of engine checkpoints.
func checkpointState(in snapshot.Info) string {
	switch {
	case in.Err != nil:
		return "corrupt: " + oneLine(in.Err.Error())
	case !in.Complete:
		return "incomplete"
	case in.Savepoint:
		return "savepoint"
	}
	return "complete"
}

// listCheckpoints lists root, oldest first. A checkpoint deleted by the
// running job's retention while it is listed is left out: the listing is
// retried (a bounded number of times) when it failed, and a corrupt row
// whose directory has gone is dropped.
func listCheckpoints(root string) ([]snapshot.Info, error) {
	return listCheckpointsWith(snapshot.List, root)
}

func listCheckpointsWith(list func(vfs.FS, string) ([]snapshot.Info, error), root string) ([]snapshot.Info, error) {
	var infos []snapshot.Info
	var err error
	for range listAttempts {
		if infos, err = list(vfs.Default, root); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	out := infos[:0]
	for _, in := range infos {
		if in.Err != nil {
			if _, err := os.Stat(in.Dir); errors.Is(err, fs.ErrNotExist) {
				continue
			}
		}
		out = append(out, in)
	}
	return out, nil
}

// humanSize formats n bytes with decimal units: 512 B, 21.7 MB.
func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

func savepointCmd(args []string, stdout, stderr io.Writer) int {
	flags := flagSet("savepoint", savepointAbout)
	config := flags.String("config", "", "the job file (YAML) of the running job; required")
	timeout := flags.Duration("timeout", 2*time.Minute, "how long to wait for the savepoint to complete")
	if code, done := parseFlags(flags, args, stdout, stderr); done {
		return code
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "engine savepoint: --timeout %v: must be positive, e.g. 2m\n", *timeout)
		return exitBadInput
	}
	root, code, ok := jobCheckpointRoot("savepoint", *config, stderr)
	if !ok {
		return code
	}
	pidFile := filepath.Join(root, pidFileName)
	pid, err := runningEngine(root)
	if err != nil {
		fmt.Fprintf(stderr, "engine savepoint: no running engine for this job (no live pid in %s: %s); start it with engine run\n",
			pidFile, oneLine(err.Error()))
		return exitBadInput
	}

	var newest uint64 // every checkpoint so far; the savepoint comes after
	infos, err := listCheckpoints(root)
	if err != nil {
		fmt.Fprintf(stderr, "engine savepoint: %s\n", oneLine(err.Error()))
		return exitFailed
	}
	for _, in := range infos {
		newest = max(newest, in.ID)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		fmt.Fprintf(stderr, "engine savepoint: signal the engine (pid %d): %v\n", pid, err)
		return exitFailed
	}

	deadline := time.Now().Add(*timeout)
	tick := time.NewTicker(savepointPoll)
	defer tick.Stop()
	var lastErr error
	for {
		infos, err := listCheckpoints(root)
		lastErr = err
		for _, in := range infos {
			if in.ID > newest && in.Savepoint && in.Complete {
				fmt.Fprintln(stdout, in.Dir)
				return exitOK
			}
		}
		if syscall.Kill(pid, 0) != nil {
			fmt.Fprintf(stderr, "engine savepoint: the engine (pid %d) exited before a savepoint completed; see its log\n", pid)
			return exitFailed
		}
		if !time.Now().Before(deadline) {
			why := "see the engine's log"
			if lastErr != nil {
				why = "last listing: " + oneLine(lastErr.Error())
			}
			fmt.Fprintf(stderr, "engine savepoint: no new savepoint in %s after %v (pid %d); %s\n", root, *timeout, pid, why)
			return exitFailed
		}
		<-tick.C
	}
}

// jobCheckpointRoot loads the job file and returns its checkpoint.dir as an
// absolute path. When it fails it has printed one line and ok is false.
func jobCheckpointRoot(cmd, config string, stderr io.Writer) (root string, code int, ok bool) {
	if config == "" {
		fmt.Fprintf(stderr, "engine %s: --config is required: give the job file, e.g. --config job.yaml\n", cmd)
		return "", exitBadInput, false
	}
	spec, err := weir.LoadJobFile(config)
	if err != nil {
		fmt.Fprintf(stderr, "engine: %s\n", oneLine(err.Error()))
		return "", exitBadInput, false
	}
	if spec.Checkpoint.Interval == 0 || spec.Checkpoint.Dir == "" {
		what := "checkpoint.interval"
		if spec.Checkpoint.Dir == "" {
			what = "checkpoint.dir"
		}
		fmt.Fprintf(stderr, "engine %s: %s: not set; checkpoints are off for this job (job file %s)\n", cmd, what, config)
		return "", exitBadInput, false
	}
	root, err = checkpointRoot(spec)
	if err != nil {
		fmt.Fprintf(stderr, "engine %s: %s\n", cmd, oneLine(err.Error()))
		return "", exitBadInput, false
	}
	return root, 0, true
}

// checkpointRoot is spec's checkpoint.dir as an absolute path, as the job
// resolves it (relative to the working directory).
func checkpointRoot(spec weir.JobSpec) (string, error) {
	root, err := filepath.Abs(spec.Checkpoint.Dir)
	if err != nil {
		return "", fmt.Errorf("checkpoint.dir %s: %w", spec.Checkpoint.Dir, err)
	}
	return root, nil
}

// lockHeld says whether a process holds the lock of the job running on
// root (the flock on root/LOCK taken by the job). It takes the lock for a
// moment when it is free; a missing LOCK file is a free lock.
func lockHeld(root string) (bool, error) {
	// O_NONBLOCK: a named pipe in its place must not block the open.
	f, err := os.OpenFile(filepath.Join(root, "LOCK"), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lock: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return false, fmt.Errorf("lock: %w", err)
	} else if !st.Mode().IsRegular() {
		return false, fmt.Errorf("lock: %s is not a regular file", f.Name())
	}
	switch err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return false, nil // closing f releases it
}

// livePid returns the pid in root/engine.pid if that process is alive.
func livePid(root string) (int, error) {
	b, err := os.ReadFile(filepath.Join(root, pidFileName))
	if err != nil {
		return 0, errors.New(pathErrCause(err))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("not a pid: %s", quoteArg(strings.TrimSpace(string(b))))
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return pid, nil
}

// holderWait bounds how long dirInUse waits for the engine holding a
// checkpoint.dir to name itself in engine.pid (it does so right after
// taking the lock).
const holderWait = 2 * time.Second

// dirInUse is the line refusing checkpoint.dir root, held by another
// process: it names the engine's pid from engine.pid.
func dirInUse(root string) string {
	holder := "engine pid unknown: no live pid in " + filepath.Join(root, pidFileName)
	deadline := time.Now().Add(holderWait)
	for {
		if pid, err := livePid(root); err == nil && pid != os.Getpid() {
			holder = "engine pid " + strconv.Itoa(pid)
			break
		}
		if !time.Now().Before(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Sprintf("engine: checkpoint.dir %s: %v (%s); stop it or use another directory", root, weir.ErrCheckpointDirInUse, holder)
}

// runningEngine returns the pid in root/engine.pid if that process is
// alive and a job holds root's lock (so a stale pid file whose pid was
// reused by another process is never signalled).
func runningEngine(root string) (int, error) {
	pid, err := livePid(root)
	if err != nil {
		return 0, err
	}
	held, err := lockHeld(root)
	if err != nil {
		return 0, err
	}
	if !held {
		return 0, fmt.Errorf("pid %d is alive but no job holds %s", pid, filepath.Join(root, "LOCK"))
	}
	return pid, nil
}

// checkDirUsable refuses a checkpoint.dir root that the job could not
// create or write, without creating anything: root, or its nearest
// existing parent, must be a directory this process may write.
func checkDirUsable(root string) error {
	const writeSearch = 0x2 | 0x1 // access(2): W_OK | X_OK
	for p := root; ; {
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.IsDir() && p == root:
			return errors.New("not a directory")
		case err == nil && !fi.IsDir():
			return fmt.Errorf("cannot create it: %s is not a directory", p)
		case err == nil:
			if err := syscall.Access(p, writeSearch); err != nil {
				if p == root {
					return fmt.Errorf("not writable: %v", err)
				}
				return fmt.Errorf("cannot create it in %s: %v", p, err)
			}
			return nil
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return errors.New(pathErrCause(err))
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}

// writePidFile writes this process's pid to root/engine.pid (atomically:
// temp file and rename) and returns the file's path. engine run calls it
// while its job holds root's lock (weir.WithOnLocked).
func writePidFile(root string) (string, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", fmt.Errorf("cannot create it: %s", pathErrCause(err))
	}
	path := filepath.Join(root, pidFileName)
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %s", tmp, pathErrCause(err))
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

// removePidFile removes root/engine.pid if it still names this process,
// holding root's lock meanwhile: an engine that took the directory since
// (and wrote its own pid) keeps its file.
func removePidFile(root string) {
	if f, err := os.Open(filepath.Join(root, "LOCK")); err == nil {
		defer f.Close() // releases the lock
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			return // another engine holds the directory: the file is its
		}
	}
	path := filepath.Join(root, pidFileName)
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}

// pathErrCause is the cause of a *fs.PathError without the path, which the
// message names already.
func pathErrCause(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
