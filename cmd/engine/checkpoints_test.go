package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/integration/verify"
	"github.com/weirstream/weir/snapshot"
)

// checkpointLines is the checkpoint section of a job file writing to dir.
func checkpointLines(dir string) string {
	return "checkpoint:\n  interval: 50ms\n  dir: " + dir + "\n"
}

func TestCheckpointsBadInput(t *testing.T) {
	dir := t.TempDir()
	noCheckpoints := writeJobFile(t, "127.0.0.1:9092", "")
	noInterval := writeJobFile(t, "127.0.0.1:9092", "checkpoint:\n  dir: "+dir+"\n")
	missing := filepath.Join(dir, "missing.yaml")
	for _, cmd := range []string{"checkpoints", "savepoint"} {
		for _, tc := range []struct {
			name string
			args []string
			want []string
		}{
			{"no config", nil, []string{"engine " + cmd + ": --config is required"}},
			{"missing file", []string{"--config", missing}, []string{"engine: job file " + missing, "no such file"}},
			{"checkpoints off", []string{"--config", noCheckpoints}, []string{"engine " + cmd + ": checkpoint.dir: not set; checkpoints are off for this job"}},
			{"no interval", []string{"--config", noInterval}, []string{"engine " + cmd + ": checkpoint.interval: not set; checkpoints are off for this job"}},
			{"extra argument", []string{"--config", noCheckpoints, "x"}, []string{`engine ` + cmd + `: unexpected argument "x"`}},
		} {
			t.Run(cmd+"/"+tc.name, func(t *testing.T) {
				wantBadInput(t, runEngine(t, append([]string{cmd}, tc.args...)...), tc.want...)
			})
		}
	}
	wantBadInput(t, runEngine(t, "savepoint", "--config", noCheckpoints, "--timeout", "0s"), "--timeout 0s")
}

func TestCheckpointsEmpty(t *testing.T) {
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
		job := writeJobFile(t, "127.0.0.1:9092", checkpointLines(dir))
		r := runEngine(t, "checkpoints", "--config", job)
		if r.code != 0 || r.stderr != "" || r.stdout != "no checkpoints in "+dir+"\n" {
			t.Errorf("dir %s: exit %d, stdout %q, stderr %q; want exit 0 and %q", dir, r.code, r.stdout, r.stderr, "no checkpoints in "+dir)
		}
	}
}

// TestSavepointNoEngine: without a live engine holding the job's lock,
// engine savepoint refuses on one line and signals nobody. The stale
// engine.pid names this test process, which SIGUSR1 would kill.
func TestSavepointNoEngine(t *testing.T) {
	dir := t.TempDir()
	job := writeJobFile(t, "127.0.0.1:9092", checkpointLines(dir))
	wantBadInput(t, runEngine(t, "savepoint", "--config", job), "no running engine for this job", filepath.Join(dir, "engine.pid"), "start it with engine run")

	if err := os.WriteFile(filepath.Join(dir, "engine.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantBadInput(t, runEngine(t, "savepoint", "--config", job), "no running engine for this job", "no job holds")

	if err := os.WriteFile(filepath.Join(dir, "engine.pid"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantBadInput(t, runEngine(t, "savepoint", "--config", job), "no running engine for this job", `not a pid: "garbage"`)
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1500: "1.5 kB",
		21_700_000: "21.7 MB", 3_200_000_000: "3.2 GB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

var chkRE = regexp.MustCompile(`/chk-(\d+)$`)

// checkpointID returns the id of a chk-<N> path, failing the test if it is
// not one or is not a directory.
func checkpointID(t *testing.T, path string) uint64 {
	t.Helper()
	m := chkRE.FindStringSubmatch(path)
	if m == nil {
		t.Fatalf("%q is not a chk-<N> path", path)
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Fatalf("%s: not a directory (%v)", path, err)
	}
	id, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// nextLine returns the next stdout line of a running engine, or fails the
// test when stdout closes or ctx ends first.
func nextLine(t *testing.T, ctx context.Context, out <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-out:
		if !ok {
			t.Fatal("engine closed stdout")
		}
		return l
	case <-ctx.Done():
		t.Fatalf("no stdout line: %v", ctx.Err())
	}
	return ""
}

var checkpointRowRE = regexp.MustCompile(`^(\d+) +(\S+) +(\d+ B|\d+\.\d [kMGTPE]B) +(complete|savepoint|incomplete|corrupt: .*?) +(/\S+)$`)

// TestCheckpointLifecycle runs a job with checkpoints on kfake and drives
// it the way an operator does: SIGUSR1 and engine savepoint take
// savepoints while it runs, a second engine on the same checkpoint.dir is
// refused, SIGTERM stops it with a savepoint, engine checkpoints lists them,
// and a bounded run restores an older savepoint with --from-savepoint.
func TestCheckpointLifecycle(t *testing.T) {
	brokers := startKfake(t)
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	events, err := verify.Generate(verify.GenConfig{Seed: 2, Keys: 20, Partitions: 2, Events: 3000,
		Start: 1_700_000_000_000, Step: 10 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, "in", events, 2); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ck")
	job := writeJobFile(t, brokers, checkpointLines(dir))
	cmd, out, stderr := startRun(t, ctx, "run", "--config", job, "--status-interval", "0", "--log-level", "info")
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})

	// SIGUSR1 is handled once engine.pid exists.
	pidFile := filepath.Join(dir, "engine.pid")
	for {
		b, err := os.ReadFile(pidFile)
		if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(cmd.Process.Pid) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s with pid %d: %v", pidFile, cmd.Process.Pid, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}

	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	l := nextLine(t, ctx, out)
	first, ok := strings.CutPrefix(l, "savepoint: ")
	if !ok {
		t.Fatalf("stdout line %q after SIGUSR1, want savepoint: PATH", l)
	}
	firstID := checkpointID(t, first)

	r := runEngine(t, "savepoint", "--config", job, "--timeout", "1m")
	if r.code != 0 || r.stderr != "" || len(lines(r.stdout)) != 1 {
		t.Fatalf("engine savepoint: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	second := strings.TrimSpace(r.stdout)
	if secondID := checkpointID(t, second); secondID <= firstID {
		t.Errorf("engine savepoint printed %s, not newer than %s", second, first)
	}
	if l := nextLine(t, ctx, out); l != "savepoint: "+second {
		t.Errorf("the engine printed %q for the savepoint of engine savepoint, want %q", l, "savepoint: "+second)
	}

	// The listing works while the job runs.
	r = runEngine(t, "checkpoints", "--config", job)
	if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "ID ") {
		t.Errorf("engine checkpoints while running: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	wantBadInput(t, runEngine(t, "run", "--config", job, "--check-timeout", "10s"),
		"engine: checkpoint.dir "+dir, "in use by another process")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for l := range out {
		t.Errorf("unexpected stdout line after SIGTERM: %q", l)
	}
	err = cmd.Wait()
	exited = true
	if err != nil {
		t.Fatalf("engine run after SIGTERM: %v (ctx %v); stderr:\n%s", err, ctx.Err(), stderr)
	}
	ls := lines(stderr.String())
	last, ok := strings.CutPrefix(ls[len(ls)-1], "engine: stopped with savepoint ")
	if !ok {
		t.Fatalf("last stderr line should name the savepoint; stderr:\n%s", stderr)
	}
	thirdID := checkpointID(t, last)
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after the engine exited: %v", pidFile, err)
	}

	r = runEngine(t, "checkpoints", "--config", job)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("engine checkpoints: exit %d, stderr %q", r.code, r.stderr)
	}
	t.Logf("engine checkpoints after SIGTERM:\n%s", r.stdout)
	rows := lines(r.stdout)
	if !regexp.MustCompile(`^ID +TIME +SIZE +STATE +PATH$`).MatchString(rows[0]) {
		t.Errorf("header %q", rows[0])
	}
	states := map[uint64]string{}
	var prev uint64
	for _, row := range rows[1:] {
		m := checkpointRowRE.FindStringSubmatch(row)
		if m == nil {
			t.Errorf("row %q does not match %s", row, checkpointRowRE)
			continue
		}
		id, _ := strconv.ParseUint(m[1], 10, 64)
		if id <= prev {
			t.Errorf("row %q: ids not increasing", row)
		}
		prev = id
		if _, err := time.Parse(time.RFC3339, m[2]); err != nil && m[4] != "incomplete" {
			t.Errorf("row %q: time: %v", row, err)
		}
		if m[5] != filepath.Join(dir, "chk-"+m[1]) {
			t.Errorf("row %q: path %s", row, m[5])
		}
		states[id] = m[4]
	}
	complete := 0
	for id, st := range states {
		switch {
		case strings.HasPrefix(st, "corrupt"):
			t.Errorf("checkpoint %d: %s", id, st)
		case st == "complete":
			complete++
		}
	}
	for _, id := range []uint64{firstID, thirdID} {
		if states[id] != "savepoint" {
			t.Errorf("checkpoint %d listed as %q, want savepoint:\n%s", id, states[id], r.stdout)
		}
	}
	if complete == 0 {
		t.Errorf("no complete (periodic) checkpoint listed:\n%s", r.stdout)
	}

	// A bounded run restores the first savepoint (older than the newest
	// checkpoint, which a plain restart would take) and ends.
	bounded := filepath.Join(t.TempDir(), "bounded.yaml")
	body := strings.Replace(mustRead(t, job), "  topic: in\n", "  topic: in\n  bounded: latest\n", 1)
	if err := os.WriteFile(bounded, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runEngine(t, "run", "--config", bounded, "--from-savepoint", first, "--status-interval", "0")
	if r.code != 0 {
		t.Fatalf("bounded run from %s: exit %d; stderr:\n%s", first, r.code, r.stderr)
	}
	restored := false
	for _, l := range lines(r.stderr) {
		if strings.Contains(l, `msg="restoring from checkpoint"`) && strings.Contains(l, " checkpoint="+strconv.FormatUint(firstID, 10)+" ") &&
			strings.Contains(l, " savepoint=true ") {
			restored = true
		}
	}
	if !restored {
		t.Errorf("no log line restoring checkpoint %d; stderr:\n%s", firstID, r.stderr)
	}
	if ls := lines(r.stderr); !strings.HasPrefix(ls[len(ls)-1], "engine: job t ended; ") {
		t.Errorf("last stderr line %q, want the job ended", ls[len(ls)-1])
	}

	// Refused savepoints: one line, exit 2. Those that reach the job log
	// "job starting" at info level first; warn keeps stderr to the error.
	other := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(other, []byte(strings.Replace(body, "name: t\n", "name: other\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	notChk := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing", []string{"--config", bounded, "--from-savepoint", "/nonexistent"}, []string{"engine run: --from-savepoint /nonexistent:", "no such file"}},
		{"a file", []string{"--config", bounded, "--from-savepoint", bounded}, []string{"not a directory"}},
		{"not chk-N", []string{"--config", bounded, "--from-savepoint", notChk, "--log-level", "warn"}, []string{notChk, "not a checkpoint directory"}},
		{"other job", []string{"--config", other, "--from-savepoint", first, "--log-level", "warn"}, []string{first, `belongs to job "t"`}},
		{"checkpoints off", []string{"--config", writeJobFile(t, brokers, ""), "--from-savepoint", first}, []string{"--from-savepoint needs checkpoints"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantBadInput(t, runEngine(t, append([]string{"run"}, tc.args...)...), tc.want...)
		})
	}
}

// TestRunSIGINTWithCheckpoints: SIGINT cancels a job with checkpoints on
// without a savepoint: exit 0, the stopped line, engine.pid removed.
func TestRunSIGINTWithCheckpoints(t *testing.T) {
	brokers := startKfake(t)
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "ck")
	job := writeJobFile(t, brokers, checkpointLines(dir))
	cmd, out, stderr := startRun(t, ctx, "run", "--config", job, "--status-interval", "0", "--log-level", "warn")
	pidFile := filepath.Join(dir, "engine.pid")
	for {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			cmd.Process.Kill()
			t.Fatalf("no %s: %v", pidFile, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for l := range out {
		t.Errorf("unexpected stdout line %q", l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("engine run after SIGINT: %v; stderr:\n%s", err, stderr)
	}
	ls := lines(stderr.String())
	if len(ls) == 0 || !strings.HasPrefix(ls[len(ls)-1], "engine: job t stopped by SIGINT; ") {
		t.Errorf("last stderr line should say the job stopped by SIGINT; stderr:\n%s", stderr)
	}
	if strings.Contains(stderr.String(), "stopped with savepoint") {
		t.Errorf("SIGINT took a savepoint; stderr:\n%s", stderr)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after the engine exited: %v", pidFile, err)
	}
}

// TestRunSIGTERMSavepointFails: when the SIGTERM savepoint cannot be
// written (its chk-<N> path is taken by a file), the job is cancelled and
// the exit code is 1 with one last line naming the cause.
func TestRunSIGTERMSavepointFails(t *testing.T) {
	brokers := startKfake(t)
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "ck")
	// No periodic checkpoint within the test: only the savepoints.
	job := writeJobFile(t, brokers, "checkpoint:\n  interval: 1h\n  dir: "+dir+"\n")
	cmd, out, stderr := startRun(t, ctx, "run", "--config", job, "--status-interval", "0", "--log-level", "warn")
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	pidFile := filepath.Join(dir, "engine.pid")
	for {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s: %v", pidFile, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// A first savepoint shows the job runs and gives the next ids.
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	l := nextLine(t, ctx, out)
	path, ok := strings.CutPrefix(l, "savepoint: ")
	if !ok {
		t.Fatalf("stdout line %q after SIGUSR1, want savepoint: PATH", l)
	}
	id := checkpointID(t, path)
	for next := id + 1; next <= id+10; next++ {
		if err := os.WriteFile(filepath.Join(dir, "chk-"+strconv.FormatUint(next, 10)), []byte("in the way"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for l := range out {
		t.Errorf("unexpected stdout line %q", l)
	}
	err := cmd.Wait()
	exited = true
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("engine run: %v, want exit 1; stderr:\n%s", err, stderr)
	}
	ls := lines(stderr.String())
	t.Logf("last stderr line: %s", ls[len(ls)-1])
	if !strings.HasPrefix(ls[len(ls)-1], "engine: job t cancelled by SIGTERM without a savepoint: ") {
		t.Errorf("last stderr line should say the job was cancelled without a savepoint; stderr:\n%s", stderr)
	}
}

// TestRunBadSavepointBeforeBrokers: a --from-savepoint that is not a
// checkpoint of this job is refused before the brokers are asked (their
// address is a closed port here, which would be the error otherwise) and
// before anything is written: checkpoint.dir is not even created.
func TestRunBadSavepointBeforeBrokers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ck")
	job := writeJobFile(t, closedPort(t), checkpointLines(dir))
	incomplete := filepath.Join(t.TempDir(), "chk-7") // no _metadata
	if err := os.Mkdir(incomplete, 0o755); err != nil {
		t.Fatal(err)
	}
	notChk := t.TempDir()
	for _, tc := range []struct {
		name string
		path string
		want []string
	}{
		{"not chk-N", notChk, []string{"engine: --from-savepoint " + notChk + ": not a checkpoint directory"}},
		{"no metadata", incomplete, []string{"engine: --from-savepoint " + incomplete + ": "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runEngine(t, "run", "--config", job, "--from-savepoint", tc.path, "--check-timeout", "5s")
			wantBadInput(t, r, tc.want...)
			if strings.Contains(r.stderr, "brokers") {
				t.Errorf("the brokers were checked first: %q", r.stderr)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("checkpoint.dir %s after a refused savepoint: %v (want nothing written)", dir, err)
			}
		})
	}
}

// TestRunTwoEnginesOneDir starts two engines on one checkpoint.dir at the
// same moment, a few times: exactly one runs; the other exits 2 with one
// line naming the pid of the one that runs, which engine.pid names too
// (it is written under the directory's lock).
func TestRunTwoEnginesOneDir(t *testing.T) {
	brokers := startKfake(t)
	dir := filepath.Join(t.TempDir(), "ck")
	job := writeJobFile(t, brokers, checkpointLines(dir))
	pidFile := filepath.Join(dir, "engine.pid")
	for round := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
		defer cancel()
		type run struct {
			cmd    *exec.Cmd
			stderr *bytes.Buffer
			err    error
			done   chan struct{}
		}
		var runs [2]*run
		for i := range runs {
			cmd := exec.CommandContext(ctx, engineBin, "run", "--config", job, "--status-interval", "0", "--log-level", "error")
			r := &run{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
			cmd.Stderr = r.stderr
			runs[i] = r
		}
		for _, r := range runs {
			if err := r.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { r.err = r.cmd.Wait(); close(r.done) }()
			t.Cleanup(func() {
				r.cmd.Process.Kill()
				<-r.done
			})
		}
		// The loser exits; the winner runs until it is stopped.
		var loser, winner *run
		select {
		case <-runs[0].done:
			loser, winner = runs[0], runs[1]
		case <-runs[1].done:
			loser, winner = runs[1], runs[0]
		case <-ctx.Done():
			t.Fatalf("round %d: neither engine exited: %v", round, ctx.Err())
		}
		res := result{stderr: loser.stderr.String()}
		var ee *exec.ExitError
		if errors.As(loser.err, &ee) {
			res.code = ee.ExitCode()
		}
		wantPid := strconv.Itoa(winner.cmd.Process.Pid)
		wantBadInput(t, res, "engine: checkpoint.dir "+dir+": ", "in use by another process (engine pid "+wantPid+")")
		// The winner names itself in engine.pid once it holds the lock.
		pidWait := time.After(30 * time.Second)
		for {
			b, err := os.ReadFile(pidFile)
			if err == nil && strings.TrimSpace(string(b)) == wantPid {
				break
			}
			select {
			case <-winner.done:
				t.Fatalf("round %d: the winner exited: %v; stderr:\n%s", round, winner.err, winner.stderr)
			case <-pidWait:
				t.Fatalf("round %d: %s holds %q (%v), want the winner's pid %s", round, pidFile, b, err, wantPid)
			case <-time.After(20 * time.Millisecond):
			}
		}
		if err := winner.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		<-winner.done
		if winner.err != nil {
			t.Fatalf("round %d: the winner after SIGINT: %v; stderr:\n%s", round, winner.err, winner.stderr)
		}
		if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("round %d: %s after the winner exited: %v", round, pidFile, err)
		}
	}
}

// TestRunCheckpointDirUnusable: a checkpoint.dir that cannot be created
// (a file is in the way) or that is a file is bad input, refused before
// the brokers are asked (a closed port here) and with nothing written.
func TestRunCheckpointDirUnusable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		want string
	}{
		{filepath.Join(file, "ck"), "cannot create it: " + file + " is not a directory"},
		{file, "not a directory"},
	} {
		job := writeJobFile(t, closedPort(t), checkpointLines(tc.dir))
		wantBadInput(t, runEngine(t, "run", "--config", job, "--check-timeout", "5s"), "engine: checkpoint.dir "+tc.dir+": "+tc.want)
	}
}

// quietLogger drops Pebble's log lines.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(f string, args ...any) {
	panic(fmt.Sprintf(f, args...))
}

// writeCheckpoints writes complete checkpoints 1..n of job t (one task)
// under root with the snapshot package, and returns their metadata.
func writeCheckpoints(t *testing.T, root string, n int) []snapshot.Metadata {
	t.Helper()
	store, err := snapshot.OpenStore(vfs.Default, filepath.Join(t.TempDir(), "live"),
		snapshot.StoreOptions{Tune: func(o *pebble.Options) { o.Logger = quietLogger{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var out []snapshot.Metadata
	for id := uint64(1); id <= uint64(n); id++ {
		b := store.NewBatch()
		for k := range 100 {
			if err := b.Set([]byte(fmt.Sprintf("k%03d", k)), []byte(fmt.Sprintf("v%d", id))); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		b.Close()
		p, err := store.Snapshot(snapshot.TaskDir(vfs.Default, root, id, "window-0"), []byte(fmt.Sprintf("opstate %d", id)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		h, err := p.Wait(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		m := snapshot.Metadata{JobName: "t", GraphFingerprint: "fp", ID: id, Time: time.Unix(1_700_000_000+int64(id), 0).UTC(),
			Tasks: map[string]snapshot.Handle{"window-0": h}}
		if err := snapshot.WriteMetadata(vfs.Default, root, m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestCheckpointsVerifiesNewestAndRefusesFIFO: engine checkpoints
// verifies the newest complete checkpoint only (a flipped bit in an older
// one shows with --verify), and a named pipe as the newest _metadata is a
// corrupt row naming it, not a hang.
func TestCheckpointsVerifiesNewestAndRefusesFIFO(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ck")
	writeCheckpoints(t, dir, 3)
	opstate := filepath.Join(dir, "chk-1", "window-0", "opstate")
	b, err := os.ReadFile(opstate)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0x10
	if err := os.WriteFile(opstate, b, 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "chk-4", "_metadata")
	if err := os.MkdirAll(filepath.Dir(fifo), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	job := writeJobFile(t, "127.0.0.1:9092", checkpointLines(dir))

	states := func(args ...string) map[string]string {
		t.Helper()
		r := runEngine(t, append([]string{"checkpoints", "--config", job}, args...)...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("engine checkpoints %q: exit %d, stderr %q", args, r.code, r.stderr)
		}
		out := map[string]string{}
		for _, row := range lines(r.stdout)[1:] {
			m := checkpointRowRE.FindStringSubmatch(row)
			if m == nil {
				t.Fatalf("row %q does not match %s", row, checkpointRowRE)
			}
			out[m[1]] = m[4]
		}
		return out
	}
	got := states()
	want := map[string]string{"1": "complete", "2": "complete", "3": "complete"}
	for id, st := range want {
		if got[id] != st {
			t.Errorf("checkpoint %s: %q, want %q (older checkpoints are not re-read)", id, got[id], st)
		}
	}
	if st := got["4"]; !strings.HasPrefix(st, "corrupt: "+fifo+" is not a regular file") {
		t.Errorf("checkpoint 4: %q; want corrupt, naming %s as not a regular file", st, fifo)
	}
	got = states("--verify")
	if st := got["1"]; !strings.HasPrefix(st, "corrupt: ") || !strings.Contains(st, "crc32c") {
		t.Errorf("checkpoint 1 with --verify: %q; want corrupt (checksum)", st)
	}
	if got["2"] != "complete" || got["3"] != "complete" {
		t.Errorf("with --verify: %v", got)
	}
}
