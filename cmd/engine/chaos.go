package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/verify"
)

// The chaos demo runs the job as child processes, `engine run --config
// job.yaml` of this very binary against the demo's in-process broker, and
// kills them while the generator produces.
const (
	// chaosPlainOneIn: one fault in this many is a plain SIGKILL after a
	// random delay; the others arm a failpoint.
	chaosPlainOneIn = 4
	// chaosHitMax bounds the random hit count of a failpoint (name@N).
	chaosHitMax = 8
	// chaosDelayMin and chaosDelayMax bound the delay of a plain SIGKILL.
	chaosDelayMin = 300 * time.Millisecond
	chaosDelayMax = 3 * time.Second
	// chaosFailpointWait: a worker that has not reached its failpoint in
	// this long is killed anyway.
	chaosFailpointWait = 20 * time.Second
	// chaosExitWait bounds the wait for a killed worker to be reaped.
	chaosExitWait = 30 * time.Second
	// chaosTailLines is how many of a worker's last stderr lines are kept
	// to explain an unexpected exit.
	chaosTailLines = 10
	// chaosLineMax bounds one line read from a worker.
	chaosLineMax = 1 << 20
	// chaosCheckTimeout is the workers' --check-timeout.
	chaosCheckTimeout = 30 * time.Second
)

// fault is what is done to one worker: a failpoint (name, hit count) or,
// when name is empty, a plain SIGKILL after delay.
type fault struct {
	name  string
	hit   int
	delay time.Duration
}

// env is the value of WEIR_FAILPOINT for f, "" for a plain SIGKILL.
func (f fault) env() string {
	if f.name == "" {
		return ""
	}
	return f.name + "@" + strconv.Itoa(f.hit)
}

// pickFault draws the next fault from rng.
func pickFault(rng *rand.Rand) fault {
	if rng.IntN(chaosPlainOneIn) == 0 {
		return fault{delay: chaosDelayMin + time.Duration(rng.Int64N(int64(chaosDelayMax-chaosDelayMin)))}
	}
	return fault{name: weir.Failpoints[rng.IntN(len(weir.Failpoints))], hit: 1 + rng.IntN(chaosHitMax)}
}

// runChaos runs the demo's job as child processes in dir while the
// generator produces, killing and restarting them, and then lets a last,
// bounded child read to the end offsets and commit.
func runChaos(ctx context.Context, c demoConfig, spec weir.JobSpec, dir string, gen *verify.Generator, start time.Time, out, stderr io.Writer) (demoRun, error) {
	bin, err := os.Executable()
	if err != nil {
		return demoRun{}, fmt.Errorf("chaos: find this binary to run the workers: %w", err)
	}
	jobFile := filepath.Join(dir, "job.yaml")
	bounded := spec
	bounded.Source.Bounded = weir.BoundLatest
	boundedFile := filepath.Join(dir, "job-bounded.yaml")
	for path, s := range map[string]weir.JobSpec{jobFile: spec, boundedFile: bounded} {
		if err := os.WriteFile(path, demoJobFile(s), 0o644); err != nil {
			return demoRun{}, fmt.Errorf("chaos: write the job file: %w", err)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(c.seed), 0x63686173))
	fmt.Fprintf(out, "chaos: seed=%d; workers run %s run --config %s\n", c.seed, bin, jobFile)

	// The generator runs meanwhile; stopGen stops it (bounded) when the
	// chaos fails first.
	type generated struct {
		events []verify.Event
		err    error
	}
	genDone := make(chan generated, 1)
	stopGenerator := make(chan struct{})
	goSafe(func() {
		events, err := produceLive(ctx, spec.Brokers, c, gen, stopGenerator)
		genDone <- generated{events, err}
	})
	generating := true
	var cur *worker
	fail := func(err error) (demoRun, error) {
		if cur != nil {
			cur.kill()
			cur.wait(chaosExitWait)
		}
		if generating {
			close(stopGenerator)
			select {
			case <-genDone:
			case <-time.After(demoStopTimeout):
			}
		}
		return demoRun{}, err
	}

	var run demoRun
	var gened generated
	for generating {
		select {
		case gened = <-genDone:
			generating = false
			if gened.err != nil {
				return fail(gened.err)
			}
			continue
		default:
		}
		f := pickFault(rng)
		if cur, err = startWorker(bin, run.restarts, jobFile, f.env(), c.logLevelName, c.logFormat, out, stderr); err != nil {
			return fail(err)
		}
		wait := chaosFailpointWait
		if f.name == "" {
			wait = f.delay
		}
		timer := time.NewTimer(wait)
		how := ""
		select {
		case <-cur.done:
		case <-timer.C:
			how = fmt.Sprintf("killed by SIGKILL after %v", f.delay.Round(time.Millisecond))
			if f.name != "" {
				how = fmt.Sprintf("killed by SIGKILL: failpoint %s not reached in %v", f.env(), wait)
			}
			cur.kill()
		case gened = <-genDone:
			generating = false
			if gened.err != nil {
				timer.Stop()
				return fail(gened.err)
			}
			how = "killed by SIGKILL as the generator finished"
			cur.kill()
		case <-ctx.Done():
			timer.Stop()
			return fail(ctx.Err())
		}
		timer.Stop()
		if !cur.wait(chaosExitWait) {
			return fail(fmt.Errorf("chaos: worker %d did not exit within %v of SIGKILL", cur.n, chaosExitWait))
		}
		w := cur
		cur = nil
		run.addStats(w)
		killed, code := w.exitStatus()
		switch {
		case killed && w.failpointHit():
			run.failpointKills++
			how = "killed at " + f.env()
		case killed && how == "":
			how = "killed by SIGKILL from outside the demo"
		case !killed:
			return fail(fmt.Errorf("chaos: worker %d exited with code %d instead of being killed: %s", w.n, code, w.lastLines()))
		}
		run.kills++
		run.restarts++
		fmt.Fprintf(out, "chaos: %s (restart %d)\n", how, run.restarts)
	}

	fmt.Fprintf(out, "chaos: generator done; the last worker reads to the end offsets (source.bounded: latest), commits and exits (restart %d)\n", run.restarts)
	if cur, err = startWorker(bin, run.restarts, boundedFile, "", c.logLevelName, c.logFormat, out, stderr); err != nil {
		return fail(err)
	}
	drainTimeout := 2*c.duration + 2*time.Minute
	select {
	case <-cur.done:
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-time.After(drainTimeout):
		return fail(fmt.Errorf("chaos: the last worker did not finish within %v", drainTimeout))
	}
	w := cur
	cur = nil
	run.addStats(w)
	if killed, code := w.exitStatus(); killed || code != 0 {
		return demoRun{}, fmt.Errorf("chaos: the last worker exited with code %d (killed=%v): %s", code, killed, w.lastLines())
	}
	run.events = gened.events
	run.elapsed = time.Since(start)
	return run, nil
}

// addStats adds the last counters worker w printed.
func (r *demoRun) addStats(w *worker) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r.recordsIn += w.recordsIn
	r.resultsOut += w.resultsOut
}

// countersRE finds the counters in engine run's status and summary lines.
var countersRE = regexp.MustCompile(`records in=(\d+) results out=(\d+)`)

// worker is one child process `engine run`.
type worker struct {
	n    int // 0 for the first, then the restart number
	cmd  *exec.Cmd
	done chan struct{} // closed once the process is reaped; then err is set
	err  error         // from Wait

	mu         sync.Mutex
	failpoint  string   // the "failpoint ... hit" line, if printed
	tail       []string // the last stderr lines
	recordsIn  int64    // the last counters printed
	resultsOut int64
}

// startWorker starts `engine run --config jobFile` with WEIR_FAILPOINT set
// to failpoint (unset when empty). Its stdout and stderr lines are copied
// to out and stderr, prefixed with "worker N: ".
func startWorker(bin string, n int, jobFile, failpoint, logLevel, logFormat string, out, stderr io.Writer) (*worker, error) {
	cmd := exec.Command(bin, "run", "--config", jobFile, "--status-interval", "1s",
		"--log-level", logLevel, "--log-format", logFormat, "--check-timeout", chaosCheckTimeout.String())
	cmd.Env = workerEnv(os.Environ(), failpoint)
	stdoutPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("chaos: worker %d: %w", n, err)
	}
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("chaos: worker %d: %w", n, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("chaos: start worker %d: %w", n, err)
	}
	w := &worker{n: n, cmd: cmd, done: make(chan struct{})}
	prefix := fmt.Sprintf("worker %d: ", n)
	var readers sync.WaitGroup
	readers.Add(2)
	goSafe(func() {
		defer readers.Done()
		scanLines(stdoutPipe, func(l string) {
			w.counters(l)
			fmt.Fprintln(out, prefix+l)
		})
	})
	goSafe(func() {
		defer readers.Done()
		scanLines(stderrPipe, func(l string) {
			w.mu.Lock()
			if strings.HasPrefix(l, "failpoint ") && strings.HasSuffix(l, ": killing the process") {
				w.failpoint = l
			}
			if len(w.tail) == chaosTailLines {
				w.tail = append(w.tail[:0], w.tail[1:]...)
			}
			w.tail = append(w.tail, l)
			w.mu.Unlock()
			w.counters(l)
			fmt.Fprintln(stderr, prefix+l)
		})
	})
	goSafe(func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		w.err = cmd.Wait()
		close(w.done)
	})
	return w, nil
}

// workerEnv is env without WEIR_FAILPOINT, plus WEIR_FAILPOINT=failpoint
// when failpoint is not empty.
func workerEnv(env []string, failpoint string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, weir.FailpointEnv+"=") {
			out = append(out, kv)
		}
	}
	if failpoint != "" {
		out = append(out, weir.FailpointEnv+"="+failpoint)
	}
	return out
}

// scanLines calls f for every line of r, then reads r to its end.
func scanLines(r io.Reader, f func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), chaosLineMax)
	for sc.Scan() {
		f(sc.Text())
	}
	_, _ = io.Copy(io.Discard, r)
}

// counters records the counters of a status or summary line.
func (w *worker) counters(l string) {
	m := countersRE.FindStringSubmatch(l)
	if m == nil {
		return
	}
	in, err1 := strconv.ParseInt(m[1], 10, 64)
	res, err2 := strconv.ParseInt(m[2], 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	w.mu.Lock()
	w.recordsIn, w.resultsOut = in, res
	w.mu.Unlock()
}

// kill sends SIGKILL to the worker.
func (w *worker) kill() { _ = w.cmd.Process.Signal(syscall.SIGKILL) }

// wait waits at most d for the worker to be reaped and reports whether it was.
func (w *worker) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.done:
		return true
	case <-t.C:
		return false
	}
}

// exitStatus says, once the worker is reaped, whether SIGKILL ended it,
// else its exit code.
func (w *worker) exitStatus() (killed bool, code int) {
	if w.err == nil {
		return false, 0
	}
	var ee *exec.ExitError
	if !errors.As(w.err, &ee) {
		return false, -1
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal() == syscall.SIGKILL, -1
	}
	return false, ee.ExitCode()
}

// failpointHit reports whether the worker printed that its failpoint hit.
func (w *worker) failpointHit() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failpoint != ""
}

// lastLines is the worker's last stderr lines on one line.
func (w *worker) lastLines() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.tail) == 0 {
		return "nothing on stderr"
	}
	return "last stderr lines: " + strings.Join(w.tail, " | ")
}

// demoJobFile is the job file of spec, as much of it as the demo sets.
func demoJobFile(s weir.JobSpec) []byte {
	var b strings.Builder
	b.WriteString("# Written by engine demo --chaos: the job every worker runs.\n")
	fmt.Fprintf(&b, "name: %s\n", s.Name)
	fmt.Fprintf(&b, "brokers: %q\n", s.Brokers)
	fmt.Fprintf(&b, "parallelism: %d\n", s.Parallelism)
	fmt.Fprintf(&b, "source:\n  topic: %s\n  start:\n    mode: %s\n", s.Source.Topic, s.Source.Start.Mode)
	if s.Source.Bounded != weir.Unbounded {
		fmt.Fprintf(&b, "  bounded: %s\n", s.Source.Bounded)
	}
	fmt.Fprintf(&b, "key_field: %s\ntimestamp_field: %s\n", s.KeyField, s.TimestampField)
	fmt.Fprintf(&b, "window:\n  size: %v\n  out_of_orderness: %v\n", s.Window.Size, s.Window.OutOfOrderness)
	if s.Aggregate.ValueField != "" {
		fmt.Fprintf(&b, "aggregate:\n  value_field: %s\n", s.Aggregate.ValueField)
	}
	fmt.Fprintf(&b, "sink:\n  topic: %s\n", s.Sink.Topic)
	fmt.Fprintf(&b, "delivery: %s\n", s.Delivery)
	if s.Checkpoint.Interval > 0 {
		fmt.Fprintf(&b, "checkpoint:\n  interval: %v\n  dir: %q\n", s.Checkpoint.Interval, s.Checkpoint.Dir)
		if s.Checkpoint.Timeout > 0 {
			fmt.Fprintf(&b, "  timeout: %v\n", s.Checkpoint.Timeout)
		}
	}
	return []byte(b.String())
}
