package main

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/verify"
)

// runEngineEnv runs the binary with args and extra environment variables;
// it returns the output and how the process ended (Wait's error).
func runEngineEnv(t *testing.T, env []string, args ...string) (result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, engineBin, args...)
	cmd.Env = append(workerEnv(cmd.Environ(), ""), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("engine %q: %v (%v)\nstdout:\n%s\nstderr:\n%s", args, err, ctx.Err(), stdout.String(), stderr.String())
	}
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	}
	return r, err
}

func TestRunFailpointMalformed(t *testing.T) {
	job := writeJobFile(t, closedPort(t), "")
	for _, v := range []string{"bogus", "mid-epoch@0", "mid-epoch@x", "mid-epoch@", "@3", "mid-epoch@-1"} {
		t.Run(v, func(t *testing.T) {
			r, _ := runEngineEnv(t, []string{weir.FailpointEnv + "=" + v}, "run", "--config", job)
			wantBadInput(t, r, "engine run: WEIR_FAILPOINT=", strconv.Quote(v))
		})
	}
}

// TestRunFailpointExactlyOnce: an exactly-once job on kfake armed with
// after-complete-before-commit dies by SIGKILL at that step, printing the
// failpoint line; a second, bounded run of the same job restores the
// checkpoint, commits what the first did not, reads to the end and exits
// 0, and read_committed sees every window exactly once.
func TestRunFailpointExactlyOnce(t *testing.T) {
	brokers := startKfake(t)
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	events, err := verify.Generate(verify.GenConfig{Seed: 5, Keys: 30, Partitions: 2, Events: 6000,
		Start: 1_700_000_000_000, Step: 10 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, "in", events, 2); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	extra := "delivery: exactly-once\nparallelism: 2\ncheckpoint:\n  interval: 50ms\n  timeout: 1m\n  dir: " + dir + "\n"
	job := writeJobFile(t, brokers, extra)

	r, err := runEngineEnv(t, []string{weir.FailpointEnv + "=after-complete-before-commit"},
		"run", "--config", job, "--status-interval", "0", "--log-level", "warn")
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("run 1: %v, want killed by SIGKILL\nstderr:\n%s", err, r.stderr)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("run 1 ended with %v, want killed by SIGKILL\nstderr:\n%s", err, r.stderr)
	}
	if !strings.Contains(r.stderr, "failpoint after-complete-before-commit hit (1): killing the process\n") {
		t.Fatalf("run 1: no failpoint line on stderr:\n%s", r.stderr)
	}

	bounded := filepath.Join(t.TempDir(), "bounded.yaml")
	writeFile(t, bounded, strings.Replace(mustRead(t, job), "  start:\n", "  bounded: latest\n  start:\n", 1))
	r, err = runEngineEnv(t, nil, "run", "--config", bounded, "--status-interval", "0", "--log-level", "warn")
	if err != nil {
		t.Fatalf("run 2 (bounded): %v\nstderr:\n%s", err, r.stderr)
	}
	if ls := lines(r.stderr); len(ls) == 0 || !strings.HasPrefix(ls[len(ls)-1], "engine: job t ended; ") {
		t.Errorf("run 2: last stderr line should say the job ended:\n%s", r.stderr)
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
	all, err := verify.ReadAll(ctx, brokers, "out", verify.ReadUncommitted)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < len(got) {
		t.Errorf("read_uncommitted saw %d records, fewer than read_committed's %d", len(all), len(got))
	}
	t.Logf("aborted result records: %d (read_uncommitted %d, read_committed %d)", len(all)-len(got), len(all), len(got))
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

var (
	chaosKillRE    = regexp.MustCompile(`^chaos: (killed at (\S+)@(\d+)|killed by SIGKILL .*) \(restart (\d+)\)$`)
	chaosSummaryRE = regexp.MustCompile(`^chaos: (\d+) kills \((\d+) at failpoints, (\d+) plain SIGKILLs\), (\d+) restarts, (\d+) aborted result records \(read_uncommitted (\d+), read_committed (\d+)\)$`)
)

// TestDemoChaos runs the chaos demo: workers killed at random protocol
// steps and restarted, and still every window exactly once. Randomized by
// its seed, printed and replayed with -seed.
func TestDemoChaos(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed=%d (replay: go test ./cmd/engine -run '^TestDemoChaos$' -seed=%d)", seed, seed)
	r := runEngine(t, "demo", "--chaos", "--duration", "8s", "--rate", "2000", "--seed", strconv.FormatInt(seed, 10))
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	ls := lines(r.stdout)
	var kills, restart int
	var summary []string
	for _, l := range ls {
		if m := chaosKillRE.FindStringSubmatch(l); m != nil {
			kills++
			if n, _ := strconv.Atoi(m[4]); n != restart+1 {
				t.Errorf("kill line %q: restart %d, want %d", l, n, restart+1)
			}
			restart++
			if m[2] != "" && !contains(weir.Failpoints, m[2]) {
				t.Errorf("kill line %q: unknown failpoint %q", l, m[2])
			}
		}
		if m := chaosSummaryRE.FindStringSubmatch(l); m != nil {
			summary = m
		}
	}
	if kills == 0 {
		t.Fatalf("no kill reported:\n%s", r.stdout)
	}
	if summary == nil {
		t.Fatalf("no chaos summary line:\n%s", r.stdout)
	}
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	if k, fp, plain, rs := atoi(summary[1]), atoi(summary[2]), atoi(summary[3]), atoi(summary[4]); k != kills || fp+plain != k || rs != kills {
		t.Errorf("summary %q: want %d kills (failpoints + plain) and as many restarts", summary[0], kills)
	}
	if aborted, unc, com := atoi(summary[5]), atoi(summary[6]), atoi(summary[7]); aborted != unc-com || aborted < 0 {
		t.Errorf("summary %q: aborted records should be read_uncommitted minus read_committed, not negative", summary[0])
	}
	if !strings.Contains(r.stdout, "chaos: seed="+strconv.FormatInt(seed, 10)+";") {
		t.Errorf("seed %d not printed:\n%s", seed, r.stdout)
	}
	last := ls[len(ls)-1]
	if !regexp.MustCompile(`^verdict: exactly-once OK input=16000 results=\d+ duplicates=0 missing=0 wrong=0$`).MatchString(last) {
		t.Errorf("last line %q, want the OK verdict", last)
	}
	t.Logf("%s\n%s", summary[0], last)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestPickFault: the faults are reproducible from the seed, cover plain
// kills and every failpoint, and stay within their bounds.
func TestPickFault(t *testing.T) {
	a, b := rand.New(rand.NewPCG(7, 0x63686173)), rand.New(rand.NewPCG(7, 0x63686173))
	seen := map[string]bool{}
	for range 1000 {
		f := pickFault(a)
		if g := pickFault(b); g != f {
			t.Fatalf("same seed, different faults: %+v and %+v", f, g)
		}
		switch {
		case f.name == "":
			if f.delay < chaosDelayMin || f.delay >= chaosDelayMax || f.env() != "" {
				t.Fatalf("plain fault %+v out of bounds", f)
			}
			seen["plain"] = true
		default:
			if f.hit < 1 || f.hit > chaosHitMax || f.env() != f.name+"@"+strconv.Itoa(f.hit) {
				t.Fatalf("failpoint fault %+v out of bounds", f)
			}
			seen[f.name] = true
		}
	}
	for _, want := range append([]string{"plain"}, weir.Failpoints...) {
		if !seen[want] {
			t.Errorf("1000 faults never picked %s", want)
		}
	}
}

func TestWorkerEnv(t *testing.T) {
	env := []string{"A=1", weir.FailpointEnv + "=mid-epoch", "B=2"}
	if got := strings.Join(workerEnv(env, ""), " "); got != "A=1 B=2" {
		t.Errorf("workerEnv without failpoint = %q", got)
	}
	if got := strings.Join(workerEnv(env, "after-commit@3"), " "); got != "A=1 B=2 "+weir.FailpointEnv+"=after-commit@3" {
		t.Errorf("workerEnv with failpoint = %q", got)
	}
}

// TestDemoJobFile: the job file the chaos workers run parses back to the
// demo's spec.
func TestDemoJobFile(t *testing.T) {
	c := demoConfig{duration: time.Second, rate: 10, keys: 1, partitions: 1, parallelism: 3,
		window: 1500 * time.Millisecond, outOfOrderness: 200 * time.Millisecond, checkpoint: 500 * time.Millisecond}
	for _, bound := range []weir.Bound{weir.Unbounded, weir.BoundLatest} {
		spec := demoSpec(c, "127.0.0.1:9092", filepath.Join(t.TempDir(), "a dir"))
		spec.Source.Bounded = bound
		got, err := weir.ParseJobFile(demoJobFile(spec))
		if err != nil {
			t.Fatalf("bounded %q: %v\n%s", bound, err, demoJobFile(spec))
		}
		want := spec.WithDefaults()
		got = got.WithDefaults()
		if got.Name != want.Name || got.Brokers != want.Brokers || got.Parallelism != want.Parallelism ||
			got.Source.Topic != want.Source.Topic || got.Source.Start.Mode != want.Source.Start.Mode || got.Source.Bounded != bound ||
			got.KeyField != want.KeyField || got.TimestampField != want.TimestampField || got.Window != want.Window ||
			!reflect.DeepEqual(got.Aggregate, want.Aggregate) || got.Sink.Topic != want.Sink.Topic || got.Delivery != weir.ExactlyOnce ||
			got.Checkpoint != want.Checkpoint {
			t.Errorf("bounded %q: parsed %+v\nwant %+v", bound, got, want)
		}
	}
}
