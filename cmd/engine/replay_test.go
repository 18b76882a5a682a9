package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/integration/verify"
)

// TestRunRefusesReplayOfCommitted is crash-matrix row 9's limit: a bounded
// exactly-once run commits its epochs and keeps its checkpoints; a run
// restoring the oldest of them (--from-savepoint), older than the epochs
// the progress topic shows committed, is refused with one line naming both
// ids and --allow-replay-committed, exit 2, before reading a record; so is
// a fresh start (another checkpoint.dir) over those markers. With
// --allow-replay-committed both run to the end.
func TestRunRefusesReplayOfCommitted(t *testing.T) {
	brokers := startKfake(t)
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	events, err := verify.Generate(verify.GenConfig{Seed: 9, Keys: 20, Partitions: 2, Events: 30000,
		Start: 1_700_000_000_000, Step: 10 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ck")
	extra := "delivery: exactly-once\ncheckpoint:\n  interval: 20ms\n  retain: 1000\n  dir: " + dir + "\n"
	job := writeJobFile(t, brokers, extra)
	unbounded := mustRead(t, job)
	body := strings.Replace(unbounded, "  topic: in\n", "  topic: in\n  bounded: latest\n", 1)
	if err := os.WriteFile(job, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// The first run is unbounded and starts on the empty input: its first
	// checkpoint holds no record, so every result it writes is of a later
	// epoch. The input is produced once that checkpoint exists, and the
	// run is stopped (SIGTERM: a savepoint, its epoch committed) once a
	// result is written. Whatever the machine's speed, the first
	// checkpoint is then older than an epoch committed with results.
	firstJob := filepath.Join(t.TempDir(), "first.yaml")
	if err := os.WriteFile(firstJob, []byte(unbounded), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, engineBin, "run", "--config", firstJob, "--status-interval", "0", "--log-level", "warn")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	checkpointIDs := func() []int {
		chks, err := filepath.Glob(filepath.Join(dir, "chk-*"))
		if err != nil {
			t.Fatal(err)
		}
		var ids []int
		for _, c := range chks {
			if id, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(c), "chk-")); err == nil {
				ids = append(ids, id)
			}
		}
		sort.Ints(ids)
		return ids
	}
	waitFor := func(what string, done func() bool) {
		t.Helper()
		for !done() {
			select {
			case <-ctx.Done():
				t.Fatalf("the first run: %s not within %v; stderr:\n%s", what, execTimeout, stderr.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitFor("no checkpoint", func() bool { return len(checkpointIDs()) > 0 })
	if err := verify.Produce(ctx, brokers, "in", events, 2); err != nil {
		t.Fatal(err)
	}
	waitFor("no result written", func() bool {
		out, err := verify.ReadAll(ctx, brokers, "out", verify.ReadUncommitted)
		if err != nil {
			t.Fatal(err)
		}
		return len(out) > 0
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("first run, stopped by SIGTERM: %v; stderr:\n%s", err, stderr.String())
	}
	ids := checkpointIDs()
	oldest := filepath.Join(dir, "chk-"+strconv.Itoa(ids[0]))

	r := runEngine(t, "run", "--config", job, "--status-interval", "0", "--log-level", "error", "--from-savepoint", oldest)
	wantRefused(t, r, "checkpoint "+strconv.Itoa(ids[0])+" is older than epoch ", "already committed", "progress topic out.weir-progress", "--allow-replay-committed")
	t.Logf("refused: %s", r.stderr)

	fresh := strings.Replace(body, "dir: "+dir, "dir: "+filepath.Join(t.TempDir(), "ck2"), 1)
	freshJob := filepath.Join(t.TempDir(), "fresh.yaml")
	if err := os.WriteFile(freshJob, []byte(fresh), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runEngine(t, "run", "--config", freshJob, "--status-interval", "0", "--log-level", "error")
	wantRefused(t, r, "no checkpoint is restored", "already committed", "--allow-replay-committed")

	for _, args := range [][]string{{"--config", job, "--from-savepoint", oldest}, {"--config", freshJob}} {
		r = runEngine(t, append([]string{"run", "--status-interval", "0", "--log-level", "warn", "--allow-replay-committed"}, args...)...)
		if r.code != 0 {
			t.Fatalf("run %q --allow-replay-committed: exit %d; stderr:\n%s", args, r.code, r.stderr)
		}
	}
}

// wantRefused is wantBadInput for a refusal that the job's log may precede
// (the task that refused logs it at error level): exit 2 and one "engine:"
// line, the last, holding every want.
func wantRefused(t *testing.T, r result, want ...string) {
	t.Helper()
	var own []string
	for _, l := range lines(r.stderr) {
		if !strings.HasPrefix(l, "time=") {
			own = append(own, l)
		}
	}
	if r.code != 2 || r.stdout != "" || len(own) != 1 || !strings.HasPrefix(own[0], "engine: ") || !strings.HasSuffix(r.stderr, own[0]+"\n") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2, no stdout and one engine line, the last", r.code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(own[0], w) {
			t.Errorf("%q does not contain %q", own[0], w)
		}
	}
}
