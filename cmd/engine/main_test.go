package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/verify"
)

var seedFlag = flag.Int64("seed", 0, "seed for the demo test (0: pick one and print it)")

// engineBin is the binary built by TestMain, with the test hooks of tag
// enginetest (testhook_enginetest.go).
var engineBin string

// execTimeout bounds every run of the binary.
const execTimeout = 3 * time.Minute

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "engine-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine test: temp dir:", err)
		os.Exit(1)
	}
	engineBin = filepath.Join(dir, "engine")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	out, err := exec.CommandContext(ctx, "go", "build", "-tags", "enginetest", "-o", engineBin, ".").CombinedOutput()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "engine test: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one run of the binary.
type result struct {
	stdout, stderr string
	code           int
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// engine runs the binary with args and returns its output and exit code.
func runEngine(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, engineBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("engine %q: %v (ctx: %v)\nstdout:\n%s\nstderr:\n%s", args, err, ctx.Err(), r.stdout, r.stderr)
	}
	return r
}

func TestHelp(t *testing.T) {
	commandsListed := func(t *testing.T, out string) {
		t.Helper()
		for _, c := range []string{"run", "validate", "checkpoints", "savepoint", "status", "demo", "help"} {
			if !regexp.MustCompile(`(?m)^  ` + c + ` +\S`).MatchString(out) {
				t.Errorf("command %s not listed on its own line in:\n%s", c, out)
			}
		}
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"help", "help"}} {
		r := runEngine(t, args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("engine %q: exit %d, stderr %q", args, r.code, r.stderr)
		}
		commandsListed(t, r.stdout)
	}

	r := runEngine(t)
	if r.code != 2 || r.stdout != "" {
		t.Errorf("engine without arguments: exit %d, stdout %q; want 2 and the help on stderr", r.code, r.stdout)
	}
	commandsListed(t, r.stderr)

	for _, tc := range []struct {
		args  []string
		flags []string
	}{
		{[]string{"run", "--help"}, []string{"-config", "-check-timeout", "-log-level", "-status-interval", "-from-savepoint"}},
		{[]string{"checkpoints", "--help"}, []string{"-config"}},
		{[]string{"help", "checkpoints"}, []string{"-config"}},
		{[]string{"savepoint", "--help"}, []string{"-config", "-timeout"}},
		{[]string{"help", "savepoint"}, []string{"-timeout"}},
		{[]string{"run", "-h"}, []string{"-config"}},
		{[]string{"help", "run"}, []string{"-config"}},
		{[]string{"demo", "--help"}, []string{"-duration", "-rate", "-keys", "-partitions", "-parallelism", "-window", "-out-of-orderness", "-seed", "-checkpoint-interval", "-chaos", "-http", "-hold"}},
		{[]string{"help", "demo"}, []string{"-rate", "-log-level", "-log-format"}},
		{[]string{"status", "--help"}, []string{"-http", "-json", "-timeout"}},
		{[]string{"help", "status"}, []string{"-http"}},
		{[]string{"run", "--help"}, []string{"-log-format"}},
		{[]string{"validate", "--help"}, []string{"-config", "-check-timeout"}},
		{[]string{"help", "validate"}, []string{"-config"}},
	} {
		r := runEngine(t, tc.args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("engine %q: exit %d, stderr %q", tc.args, r.code, r.stderr)
		}
		if !strings.HasPrefix(r.stdout, "Usage: engine "+tc.args[len(tc.args)-1]) && !strings.HasPrefix(r.stdout, "Usage: engine "+tc.args[0]) {
			t.Errorf("engine %q: stdout does not start with the usage:\n%s", tc.args, r.stdout)
		}
		for _, f := range tc.flags {
			if !strings.Contains(r.stdout, "  "+f+" ") && !strings.Contains(r.stdout, "  "+f+"\n") {
				t.Errorf("engine %q: flag %s not described in:\n%s", tc.args, f, r.stdout)
			}
		}
	}

	r = runEngine(t, "run", "--help")
	for _, w := range append([]string{"WEIR_FAILPOINT=NAME[@N]", "failpoint NAME hit (N): killing the process"}, weir.Failpoints...) {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("engine run --help does not mention %q:\n%s", w, r.stdout)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `engine: unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, `engine help: unknown command "frobnicate"`},
		{[]string{"run", "--bogus"}, "engine run: flag provided but not defined: -bogus"},
		{[]string{"demo", "extra"}, `engine demo: unexpected argument "extra"`},
	} {
		r := runEngine(t, tc.args...)
		if r.code != 2 || r.stdout != "" || len(lines(r.stderr)) != 1 || !strings.HasPrefix(r.stderr, tc.want) {
			t.Errorf("engine %q: exit %d, stdout %q, stderr %q; want exit 2 and one line starting %q", tc.args, r.code, r.stdout, r.stderr, tc.want)
		}
	}
}

// writeJobFile writes a job file reading topic in and writing out on
// brokers, with extra lines appended, and returns its path.
func writeJobFile(t *testing.T, brokers, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "job.yaml")
	body := `name: t
brokers: ` + brokers + `
source:
  topic: in
  start:
    mode: earliest
key_field: user
timestamp_field: ts
window:
  size: 1s
  out_of_orderness: 200ms
aggregate:
  value_field: amount
sink:
  topic: out
` + extra
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantBadInput checks that r is exit 2 with nothing on stdout and exactly
// one stderr line containing every string of want.
func wantBadInput(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.code != 2 || r.stdout != "" || len(lines(r.stderr)) != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2, no stdout and one stderr line", r.code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr %q does not contain %q", r.stderr, w)
		}
	}
}

func TestRunBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	valid := writeJobFile(t, "127.0.0.1:9092", "")
	missing := filepath.Join(dir, "missing.yaml")
	unknownKey := write("unknown.yaml", "name: t\nbrokers: 127.0.0.1:9092\nsourc:\n  topic: in\n")
	badDuration := write("duration.yaml", strings.Replace(mustRead(t, valid), "size: 1s", "size: 10x", 1))
	badMemory := write("memory.yaml", mustRead(t, valid)+"memory:\n  limit: lots\n")
	badHTTP := write("http.yaml", mustRead(t, valid)+"http:\n  addr: 127.0.0.1:port\n")
	inUse, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inUse.Close()
	exactlyOnce := write("eo.yaml", mustRead(t, valid)+"delivery: exactly-once\ncheckpoint:\n  interval: 1s\n  dir: "+dir+"\n")

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing file", []string{"run", "--config", missing}, []string{"engine: job file " + missing, "no such file"}},
		{"unknown key", []string{"run", "--config", unknownKey}, []string{"engine: job file", "line 3", "sourc: unknown key", "did you mean source?"}},
		{"bad duration", []string{"run", "--config", badDuration}, []string{"engine: job file", "window.size", `"10x"`}},
		{"no config", []string{"run"}, []string{"engine run: --config is required"}},
		{"zero check timeout", []string{"run", "--config", valid, "--check-timeout", "0s"}, []string{"--check-timeout"}},
		{"negative status interval", []string{"run", "--config", valid, "--status-interval", "-1s"}, []string{"--status-interval"}},
		{"bad log level", []string{"run", "--config", valid, "--log-level", "loud"}, []string{"--log-level", "loud"}},
		{"bad flag value", []string{"run", "--config", valid, "--check-timeout", "soon"}, []string{"engine run:", "check-timeout"}},
		{"memory limit without unit", []string{"run", "--config", valid, "--memory-limit", "512"}, []string{"engine run: --memory-limit \"512\": 512 is below the least, 64MiB", "2GiB, or off"}},
		{"memory limit in MB", []string{"run", "--config", valid, "--memory-limit", "2GB"}, []string{"engine run: --memory-limit", "write a binary unit, e.g. 2GiB"}},
		{"bad --http", []string{"run", "--config", valid, "--http", "localhost:http"}, []string{"engine run: --http:", `port "http" is not a number`, "127.0.0.1:8081"}},
		{"bad http.addr", []string{"run", "--config", badHTTP}, []string{"engine: job file", "http.addr", `port "port" is not a number`}},
		{"--http in use", []string{"run", "--config", valid, "--http", inUse.Addr().String()}, []string{"engine: --http " + inUse.Addr().String(), "pick another with --http"}},
		{"bad memory.limit", []string{"run", "--config", badMemory}, []string{"engine: job file", "memory.limit: ", `"lots" is not a size`, "or off"}},
		// Refused by NewJob after the broker check; the broker is
		// unreachable here, so the check reports first.
		{"exactly-once on a closed port", []string{"run", "--config", exactlyOnce, "--check-timeout", "1s"}, []string{"brokers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantBadInput(t, runEngine(t, tc.args...), tc.want...)
		})
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRunUnreachableBroker(t *testing.T) {
	addr := closedPort(t)
	job := writeJobFile(t, addr, "")
	wantBadInput(t, runEngine(t, "run", "--config", job, "--check-timeout", "2s"), "engine: brokers:", addr)
}

// startKfake starts an in-process broker with topics in and out.
func startKfake(t *testing.T) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "out"), kfake.Ports(0), kfake.ListenFn(loopbackListen))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

func TestRunMissingTopic(t *testing.T) {
	brokers := startKfake(t)
	job := writeJobFile(t, brokers, "")
	job2 := filepath.Join(filepath.Dir(job), "other.yaml")
	if err := os.WriteFile(job2, []byte(strings.Replace(mustRead(t, job), "topic: in", "topic: nosuch", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	wantBadInput(t, runEngine(t, "run", "--config", job2, "--check-timeout", "10s"), "engine: source.topic:", `"nosuch"`)
}

// startRun starts `engine run` and returns the command, its stdout lines
// and a function returning its stderr once it has exited.
func startRun(t *testing.T, ctx context.Context, args ...string) (*exec.Cmd, <-chan string, *bytes.Buffer) {
	t.Helper()
	cmd := exec.CommandContext(ctx, engineBin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 1024)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case out <- sc.Text():
			case <-ctx.Done():
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
	}()
	return cmd, out, &stderr
}

var statusRE = regexp.MustCompile(`^status: t=\S+ records in=(\d+) results out=(\d+) late dropped=(\d+) rate=\d+/s lag=(\d+) checkpoints=(\d+)$`)

// TestRunStopsOnSignal runs a job on kfake until it has read every input
// record, then stops it with SIGTERM: exit 0 and a line saying so. It
// logs the soft memory limit --memory-limit gave.
func TestRunStopsOnSignal(t *testing.T) {
	brokers := startKfake(t)
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	events, err := verify.Generate(verify.GenConfig{Seed: 1, Keys: 20, Partitions: 2, Events: 3000,
		Start: 1_700_000_000_000, Step: 10 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, "in", events, 2); err != nil {
		t.Fatal(err)
	}
	job := writeJobFile(t, brokers, "")
	cmd, out, stderr := startRun(t, ctx, "run", "--config", job, "--status-interval", "100ms", "--log-level", "info", "--memory-limit", "1GiB")

	var last string
	found := false
	for l := range out {
		m := statusRE.FindStringSubmatch(l)
		if m == nil {
			cmd.Process.Kill()
			t.Fatalf("unexpected stdout line %q", l)
		}
		last = l
		if in, _ := strconv.Atoi(m[1]); in == len(events) {
			found = true
			break
		}
	}
	if !found {
		t.Fatalf("no status line with records in=%d (last %q, ctx %v); stderr:\n%s", len(events), last, ctx.Err(), stderr)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range out { // drain until the process closes stdout
	}
	err = cmd.Wait()
	if err != nil {
		t.Fatalf("engine run after SIGTERM: %v (ctx %v); stderr:\n%s", err, ctx.Err(), stderr)
	}
	ls := lines(stderr.String())
	if len(ls) == 0 || !strings.HasPrefix(ls[len(ls)-1], "engine: job t stopped by SIGTERM; records in=3000 ") {
		t.Fatalf("last stderr line should say the job stopped; stderr:\n%s", stderr)
	}
	if want := `msg="soft memory limit" limit=1GiB from=--memory-limit`; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr does not log the memory limit (%s):\n%s", want, stderr)
	}
}

// TestRunFailsAtRunTime: a record that is not JSON fails the job (the
// default bad_records: fail): exit 1 and a last line naming the cause.
func TestRunFailsAtRunTime(t *testing.T) {
	brokers := startKfake(t)
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	produceNotJSON(t, ctx, brokers)
	job := writeJobFile(t, brokers, "")
	cmd, out, stderr := startRun(t, ctx, "run", "--config", job, "--status-interval", "0", "--log-level", "error")
	var stdout []string
	for l := range out {
		stdout = append(stdout, l)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("engine run: %v (ctx %v), want exit 1; stderr:\n%s", err, ctx.Err(), stderr)
	}
	if len(stdout) != 0 {
		t.Errorf("stdout %q with --status-interval 0", stdout)
	}
	ls := lines(stderr.String())
	t.Logf("last stderr line: %s", ls[len(ls)-1])
	if last := ls[len(ls)-1]; !strings.HasPrefix(last, "engine: job t: ") || !strings.Contains(last, "offset 0") {
		t.Errorf("last stderr line %q should name the job and the bad record's offset; stderr:\n%s", last, stderr)
	}
}

func TestDemoBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "0"}, "--rate 0"},
		{[]string{"--rate", "-5"}, "--rate -5"},
		{[]string{"--duration", "-1s"}, "--duration -1s"},
		{[]string{"--duration", "0s"}, "--duration 0s"},
		{[]string{"--keys", "0"}, "--keys 0"},
		{[]string{"--partitions", "0"}, "--partitions 0"},
		{[]string{"--parallelism", "0"}, "--parallelism 0"},
		{[]string{"--parallelism", "129"}, "--parallelism 129"},
		{[]string{"--window", "0s"}, "--window 0s"},
		{[]string{"--window", "1500us"}, "--window 1.5ms"},
		{[]string{"--out-of-orderness", "-1ms"}, "--out-of-orderness -1ms"},
		{[]string{"--rate", "1000000", "--duration", "1m"}, "at most 20000000"},
		{[]string{"--rate", "1", "--duration", "500ms"}, "less than one event"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--checkpoint-interval", "5ms"}, "--checkpoint-interval 5ms"},
		{[]string{"--checkpoint-interval", "1h"}, "--checkpoint-interval 1h0m0s"},
		{[]string{"--rate", "fast"}, "engine demo: invalid value"},
		{[]string{"--http", "127.0.0.1:x:y"}, "engine demo: --http \"127.0.0.1:x:y\" is not host:port"},
		{[]string{"--http", "off", "--hold"}, "--hold keeps the status page up after the verdict: it needs --http"},
		{[]string{"--chaos", "--hold"}, "cannot be used with --chaos"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			wantBadInput(t, runEngine(t, append([]string{"demo"}, tc.args...)...), tc.want)
		})
	}
}

// TestDemo runs the demo end to end; it is randomized by its seed, which
// is printed and replayed with -seed.
func TestDemo(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed=%d (replay: go test ./cmd/engine -run '^TestDemo$' -seed=%d)", seed, seed)
	r := runEngine(t, "demo", "--duration", "3s", "--rate", "2000", "--seed", strconv.FormatInt(seed, 10))
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	ls := lines(r.stdout)
	var verdicts, throughput, progress int
	for _, l := range ls {
		switch {
		case strings.HasPrefix(l, "verdict:"):
			verdicts++
		case strings.HasPrefix(l, "throughput: 6000 events processed in "):
			throughput++
		case regexp.MustCompile(`^t=\d+s events in=\d+ results out=\d+ rate=\d+/s$`).MatchString(l):
			progress++
		}
	}
	if verdicts != 1 || throughput != 1 || progress == 0 {
		t.Errorf("%d verdict, %d throughput and %d progress lines; want 1, 1 and some:\n%s", verdicts, throughput, progress, r.stdout)
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("seed=%d ", seed)) {
		t.Errorf("seed %d not printed:\n%s", seed, r.stdout)
	}
	last := ls[len(ls)-1]
	if !regexp.MustCompile(`^verdict: exactly-once OK input=6000 results=\d+ duplicates=0 missing=0 wrong=0$`).MatchString(last) {
		t.Errorf("last line %q, want the OK verdict", last)
	}
}

func TestVerdict(t *testing.T) {
	events, err := verify.Generate(verify.GenConfig{Seed: 3, Keys: 5, Partitions: 2, Events: 500,
		Start: 1_700_000_000_000, Step: 10 * time.Millisecond, OutOfOrderness: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	want := verify.Expected(events, time.Second)
	if len(want) < 2 {
		t.Fatalf("only %d expected windows", len(want))
	}

	var b bytes.Buffer
	if code := verdict(&b, events, time.Second, want); code != 0 {
		t.Errorf("correct output: exit code %d", code)
	}
	if ok := fmt.Sprintf("verdict: exactly-once OK input=500 results=%d duplicates=0 missing=0 wrong=0\n", len(want)); b.String() != ok {
		t.Errorf("correct output printed %q, want %q", b.String(), ok)
	}

	for _, tc := range []struct {
		name    string
		got     []verify.Result
		line    string
		example string
	}{
		{"duplicate", append(append([]verify.Result{}, want...), want[1]),
			fmt.Sprintf("verdict: FAILED input=500 results=%d duplicates=1 missing=0 wrong=0", len(want)+1), "duplicate: "},
		{"missing", want[1:],
			fmt.Sprintf("verdict: FAILED input=500 results=%d duplicates=0 missing=1 wrong=0", len(want)-1), "missing: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if code := verdict(&b, events, time.Second, tc.got); code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			ls := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			if ls[0] != tc.line {
				t.Errorf("verdict line %q, want %q", ls[0], tc.line)
			}
			if len(ls) < 2 || !strings.HasPrefix(ls[1], "  "+tc.example) {
				t.Errorf("no %q example after the verdict:\n%s", tc.example, b.String())
			}
		})
	}
}

func TestLoopbackListen(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0", "localhost:0", "nonsense"} {
		if ln, err := loopbackListen("tcp", addr); err == nil {
			ln.Close()
			t.Errorf("loopbackListen(%q) listened", addr)
		}
	}
	ln, err := loopbackListen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("loopbackListen(127.0.0.1:0): %v", err)
	}
	defer ln.Close()
	if err := checkLoopback(ln.Addr().String()); err != nil {
		t.Error(err)
	}
}

func TestDemoSpecBuilds(t *testing.T) {
	c := demoConfig{duration: time.Second, rate: 10, keys: 1, partitions: 1, parallelism: 3,
		window: time.Second, outOfOrderness: 200 * time.Millisecond, checkpoint: 500 * time.Millisecond}
	if err := c.validate(); err != nil || c.events != 10 {
		t.Fatalf("validate: %v, events %d", err, c.events)
	}
	dir := t.TempDir()
	job, err := weir.NewJob(demoSpec(c, "127.0.0.1:9092", dir))
	if err != nil {
		t.Fatal(err)
	}
	if s := job.Spec(); s.Delivery != weir.ExactlyOnce || s.Parallelism != 3 || s.Window.OutOfOrderness != c.outOfOrderness ||
		s.Checkpoint.Interval != c.checkpoint || s.Checkpoint.Dir != dir {
		t.Errorf("spec %+v", s)
	}
}

// TestRunConfigNotRegular: a --config that is a FIFO, a device or a
// directory is refused on one line with exit 2, without waiting for a
// writer on the FIFO. A regression that opens the FIFO for reading blocks:
// the bounded run then fails the test instead of hanging it.
func TestRunConfigNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "job.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want string
	}{
		{fifo, "is a named pipe (FIFO), not a regular file"},
		{"/dev/null", "is a device, not a regular file"},
		{dir, "is a directory"},
	} {
		for _, cmd := range []string{"run", "checkpoints", "savepoint"} {
			t.Run(cmd+"/"+filepath.Base(tc.path), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c := exec.CommandContext(ctx, engineBin, cmd, "--config", tc.path)
				var stdout, stderr bytes.Buffer
				c.Stdout, c.Stderr = &stdout, &stderr
				err := c.Run()
				if ctx.Err() != nil {
					t.Fatalf("engine %s --config %s still running after 30s (blocked on the file?)", cmd, tc.path)
				}
				r := result{stdout: stdout.String(), stderr: stderr.String()}
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					r.code = ee.ExitCode()
				}
				wantBadInput(t, r, "engine: job file "+tc.path+": ", tc.want)
			})
		}
	}
}

// TestRunPanicExits1: a panic is an internal error, exit code 1 with a
// last line saying so, whether it happens on run's own path or in a
// goroutine the binary started (here the status line's); Go's own exit
// code for a panic, 2, means bad input here. The test build's hook
// (WEIR_ENGINE_TEST_PANIC) panics at the named point.
func TestRunPanicExits1(t *testing.T) {
	brokers := startKfake(t)
	job := writeJobFile(t, brokers, "")
	for _, tc := range []struct {
		point string
		args  []string
	}{
		{"run", []string{"run", "--config", job}},
		{"status", []string{"run", "--config", job, "--status-interval", "10ms", "--log-level", "error"}},
	} {
		t.Run(tc.point, func(t *testing.T) {
			r, _ := runEngineEnv(t, []string{"WEIR_ENGINE_TEST_PANIC=" + tc.point}, tc.args...)
			ls := lines(r.stderr)
			if r.code != 1 || len(ls) == 0 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
			}
			want := "engine: internal error (a bug; please report it with the log above): panic: test panic at " + tc.point
			if last := ls[len(ls)-1]; last != want {
				t.Errorf("last stderr line %q, want %q; stderr:\n%s", last, want, r.stderr)
			}
		})
	}
}

// TestRunSIGTERMWhileRestarting: the job failed (a record that is not
// JSON) and waits an hour to restart; SIGTERM then stops the engine at
// once, exit 0, instead of waiting for a savepoint that a job that is not
// running cannot take (the latest checkpoint is kept).
func TestRunSIGTERMWhileRestarting(t *testing.T) {
	brokers := startKfake(t)
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	produceNotJSON(t, ctx, brokers)
	dir := filepath.Join(t.TempDir(), "ck")
	job := writeJobFile(t, brokers, checkpointLines(dir)+"restart:\n  strategy: fixed-delay\n  attempts: 5\n  delay: 1h\n")
	cmd := exec.CommandContext(ctx, engineBin, "run", "--config", job, "--status-interval", "0", "--log-level", "info")
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	// Wait until the engine has logged the failure and its restart delay.
	for !strings.Contains(stderr.String(), "restarting from the latest complete checkpoint") {
		select {
		case <-ctx.Done():
			t.Fatalf("no restart logged: %v; stderr:\n%s", ctx.Err(), stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	exited = true
	if err != nil {
		t.Fatalf("engine run: %v (ctx %v), want exit 0; stderr:\n%s", err, ctx.Err(), stderr)
	}
	if !strings.Contains(stderr.String(), "SIGTERM while the job is not running") {
		t.Errorf("stderr does not say the job stopped while not running:\n%s", stderr)
	}
}

// lockedBuffer is a bytes.Buffer a test may read while a process writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// produceNotJSON writes a record that is not JSON to partition 0 of "in".
func produceNotJSON(t *testing.T, ctx context.Context, brokers string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "in", Partition: 0, Value: []byte("not json")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestRunServesStatus runs a job on kfake with --http and, once the job
// has read every record, reads /api/job and /metrics from it; the bound
// address is logged. The flag wins over the job file's http.addr.
func TestRunServesStatus(t *testing.T) {
	brokers := startKfake(t)
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	events, err := verify.Generate(verify.GenConfig{Seed: 3, Keys: 20, Partitions: 2, Events: 2000,
		Start: 1_700_000_000_000, Step: 10 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, "in", events, 2); err != nil {
		t.Fatal(err)
	}
	// The job file names another address: the flag wins.
	addr := closedPort(t)
	job := writeJobFile(t, brokers, "http:\n  addr: "+closedPort(t)+"\n")
	cmd, out, stderr := startRun(t, ctx, "run", "--config", job, "--status-interval", "100ms", "--http", addr)
	defer cmd.Process.Kill()
	found := false
	for l := range out {
		if m := statusRE.FindStringSubmatch(l); m != nil && m[1] == strconv.Itoa(len(events)) {
			found = true
			break
		}
	}
	if !found {
		t.Fatalf("no status line with records in=%d (ctx %v)", len(events), ctx.Err())
	}
	get := func(path string) []byte {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s %v\n%s", path, resp.Status, err, body)
		}
		return body
	}
	var js struct {
		Name      string `json:"name"`
		State     string `json:"state"`
		Operators []struct {
			ID        string `json:"id"`
			RecordsIn int64  `json:"records_in"`
		} `json:"operators"`
	}
	if err := json.Unmarshal(get("/api/job"), &js); err != nil {
		t.Fatal(err)
	}
	if js.Name != "t" || js.State != "running" || len(js.Operators) == 0 || js.Operators[0].ID != "source" || js.Operators[0].RecordsIn != int64(len(events)) {
		t.Fatalf("/api/job: %+v; want job t running, its source with %d records in", js, len(events))
	}
	want := `weir_operator_records_in_total{job="t",operator="source",subtask="0"}`
	if m := string(get("/metrics")); !strings.Contains(m, want) || !strings.Contains(m, "weir_checkpoints_completed_total") {
		t.Fatalf("/metrics does not hold %s:\n%s", want, m)
	}
	// The status page (package internal/obs/ui) is served at /.
	if page := string(get("/")); !strings.Contains(page, `<section id="graph">`) || !strings.Contains(page, `<script src="app.js">`) {
		t.Fatalf("/ is not the status page:\n%s", page)
	}
	if js := string(get("/app.js")); !strings.Contains(js, `"api/job"`) {
		t.Fatalf("/app.js is not the status page's script:\n%.300s", js)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range out {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("engine run after SIGTERM: %v; stderr:\n%s", err, stderr)
	}
	if want := "status and metrics at http://" + addr + "/"; !strings.Contains(stderr.String(), want) {
		t.Fatalf("stderr does not log %q:\n%s", want, stderr)
	}
}
