package integration

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

var (
	crashSeeds = flag.Int("crash-seeds", 0, "seeds per crash test (default: $WEIR_CRASH_SEEDS, else 10)")
	crashSeed  = flag.Int64("crash-seed", 0, "replay one crash test seed")
)

// crashSeedList is the seeds to run: -crash-seed replays one; otherwise
// -crash-seeds (or WEIR_CRASH_SEEDS, or 10) seeds from a printed base.
func crashSeedList(t *testing.T) []int64 {
	return seedList(t, *crashSeed, *crashSeeds, 10, "-crash-seed")
}

// seedList is the seeds of a seeded crash test: replay (from its replay
// flag, named replayFlag) replays one; otherwise count seeds (its count
// flag, else $WEIR_CRASH_SEEDS, else def) from a printed base.
func seedList(t *testing.T, replay int64, count, def int, replayFlag string) []int64 {
	if replay != 0 {
		return []int64{replay}
	}
	n := count
	if n == 0 {
		n = def
		if v := os.Getenv("WEIR_CRASH_SEEDS"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 {
				t.Fatalf("WEIR_CRASH_SEEDS=%q: want a positive whole number", v)
			}
		}
	}
	return seedsFrom(t, n, replayFlag)
}

// seedListCapped is seedList with at most max seeds taken from
// WEIR_CRASH_SEEDS (a count given by flag is taken whole): for the suites
// that repeat the crash matrix over another sink or feature, so that make
// test stays within its time limit.
func seedListCapped(t *testing.T, replay int64, count, def, max int, replayFlag string) []int64 {
	if replay != 0 || count != 0 {
		return seedList(t, replay, count, def, replayFlag)
	}
	seeds := seedList(t, 0, 0, def, replayFlag)
	if len(seeds) > max {
		seeds = seeds[:max]
		t.Logf("running the first %d of those seeds (at most %d here; -matrix-seeds N runs N)", max, max)
	}
	return seeds
}

// seedsFrom returns n seeds from the clock, logging how to replay one.
func seedsFrom(t *testing.T, n int, replayFlag string) []int64 {
	base := time.Now().UnixNano() % 1_000_000_000
	seeds := make([]int64, n)
	for i := range seeds {
		seeds[i] = base + int64(i)
	}
	t.Logf("seeds %d..%d (replay one: go test -p 1 -count=1 -v ./integration/ -run '^%s$' %s N)",
		seeds[0], seeds[n-1], t.Name(), replayFlag)
	return seeds
}

var (
	engineOnce sync.Once
	enginePath string
	engineErr  error
)

// engineBinary builds cmd/engine once per test binary.
func engineBinary(t testing.TB) string {
	engineOnce.Do(func() {
		root, err := broker.RepoRoot()
		if err != nil {
			engineErr = err
			return
		}
		dir, err := os.MkdirTemp("", "weir-engine-")
		if err != nil {
			engineErr = err
			return
		}
		enginePath = filepath.Join(dir, "engine")
		cmd := exec.Command("go", "build", "-o", enginePath, "./cmd/engine")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			engineErr = fmt.Errorf("go build ./cmd/engine: %v\n%s", err, out)
		}
	})
	if engineErr != nil {
		t.Fatal(engineErr)
	}
	return enginePath
}

const crashJob = `name: crash-%d
brokers: %s
parallelism: 2
source:
  topic: %s
  start:
    mode: earliest
  bounded: latest
key_field: user
timestamp_field: ts
window:
  size: 1s
  out_of_orderness: 300ms
aggregate:
  value_field: amount
sink:
  topic: %s
checkpoint:
  interval: 50ms
  dir: %s
`

// TestCrashWindowJob kills the window job (a child process running
// `engine run`) with SIGKILL at random moments and restarts it until a run
// finishes the bounded input. The newest value of every window in the
// output must equal the expected one: state restored from checkpoints never
// double-counts and never loses an event. The sink is at-least-once, so a
// window may be written more than once, always with the same value.
func TestCrashWindowJob(t *testing.T) {
	bin := engineBinary(t)
	restores := 0
	for _, seed := range crashSeedList(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			// A first run may finish before its kill point on a loaded
			// machine; then the seed runs again on fresh topics with the
			// kill right after the start.
			for attempt := 0; ; attempt++ {
				r, killed := crashOneSeed(t, bin, seed, attempt > 0)
				restores += r
				if killed || t.Failed() {
					break
				}
				if attempt == 2 {
					t.Fatal("every first run finished before it could be killed: nothing was tested")
				}
				t.Log("run 1 finished before it could be killed; again, killing right after the start")
			}
		})
	}
	if !t.Failed() && restores == 0 {
		t.Fatal("no run restored from a checkpoint: the kills never landed after a checkpoint, so nothing was tested")
	}
}

func crashOneSeed(t *testing.T, bin string, seed int64, killEarly bool) (restores int, wasKilled bool) {
	t.Logf("seed %d (replay with -crash-seed %d)", seed, seed)
	rng := rand.New(rand.NewSource(seed))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	in, out := broker.Topic(t, 4), broker.Topic(t, 4)
	events, err := verify.Generate(verify.GenConfig{Seed: seed, Keys: 500, Partitions: 4, Events: 100_000,
		Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, broker.Shared().Bootstrap(), in, events, 4); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jobFile := filepath.Join(dir, "job.yaml")
	job := fmt.Sprintf(crashJob, seed, broker.Shared().Bootstrap(), in, out, filepath.Join(dir, "checkpoints"))
	if err := os.WriteFile(jobFile, []byte(job), 0o644); err != nil {
		t.Fatal(err)
	}

	const maxKills, maxRuns = 3, 20
	kills := 0
	for run := 1; ; run++ {
		if run > maxRuns {
			t.Fatalf("no run finished in %d runs", maxRuns)
		}
		logPath := filepath.Join(dir, fmt.Sprintf("run-%d.log", run))
		logFile, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--config", jobFile, "--status-interval", "0")
		cmd.Stdout = logFile
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The kill lands after a random number (0-2) of checkpoints of
		// this run have completed, plus a random 0-80 ms: before any
		// checkpoint, between checkpoints, or mid-way through one.
		afterCheckpoints := rng.Intn(3)
		if killEarly && kills == 0 {
			afterCheckpoints = 0
		}
		extra := time.Duration(rng.Intn(80)) * time.Millisecond
		reached := make(chan struct{})
		logged := make(chan struct{})
		go func() {
			defer close(logged)
			sc := bufio.NewScanner(stderr)
			n := 0
			for sc.Scan() {
				line := sc.Text()
				fmt.Fprintln(logFile, line)
				if strings.Contains(line, "checkpoint complete") {
					n++
				}
				if n == afterCheckpoints && afterCheckpoints >= 0 {
					close(reached)
					afterCheckpoints = -1
				}
			}
		}()
		exited := make(chan error, 1)
		go func() {
			<-logged
			exited <- cmd.Wait()
		}()
		var kill <-chan time.Time
		if kills < maxKills {
			select {
			case <-reached:
				kill = time.After(extra)
			case err := <-exited:
				exited <- err
			}
		}
		var runErr error
		killed := false
		select {
		case runErr = <-exited:
		case <-kill:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			runErr = <-exited
			killed = true
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			t.Fatalf("run %d did not end: %v (log %s)", run, ctx.Err(), logPath)
		}
		logFile.Close()
		logText, _ := os.ReadFile(logPath)
		if strings.Contains(string(logText), "restoring from checkpoint") {
			restores++
		}
		if killed {
			kills++
			t.Logf("run %d: killed (SIGKILL)", run)
			continue
		}
		if runErr != nil {
			t.Fatalf("run %d failed: %v\n%s", run, runErr, tail(string(logText), 20))
		}
		t.Logf("run %d: finished; %d kills, %d runs restored from a checkpoint", run, kills, restores)
		if kills == 0 {
			return restores, false
		}
		break
	}
	got, err := verify.ReadResults(ctx, broker.Shared().Bootstrap(), out, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	v := verify.CompareLatest(len(events), verify.Expected(events, time.Second), got)
	t.Log(v.String())
	if !v.OK {
		t.Fatal(v.Report())
	}
	return restores, true
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
