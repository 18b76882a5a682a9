package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/obs"
	"github.com/weirstream/weir/txsink"
)

var runAbout = `Runs the job described by a job file (docs/jobfile.md, examples/job.yaml)
until a signal stops it or it fails. The job file is checked, then the
brokers are asked for the source topic; a problem with either is one line
on stderr and exit code 2, before anything runs. The log goes to stderr; a
status line (records in, results out, late dropped, rate, total lag of the
source partitions, checkpoints completed) goes to stdout every
--status-interval. A bounded job (source.bounded) whose stderr is a
terminal also gets a progress bar with the ETA on stderr. Secret property
values (names with password, secret or token) are shown as [redacted].

With checkpoints on (checkpoint.interval and checkpoint.dir), the job
restores the newest complete checkpoint in checkpoint.dir, or the one given
with --from-savepoint; once it holds the directory's lock it writes its pid
to <checkpoint.dir>/engine.pid (engine savepoint reads it). A checkpoint.dir
held by another engine (the line names its pid), or a --from-savepoint
directory that is missing, not a chk-<N> directory, incomplete or of
another job, is one line and exit code 2, before the brokers are asked and
before anything is written; a savepoint whose files turn out corrupt too.
So is a checkpoint.dir that holds checkpoints none of which can be
restored: the job does not start fresh over them unless
--allow-fresh-start. An exactly-once job whose checkpoint is older than
the newest epoch its progress topic shows committed (an older savepoint
given, newer checkpoints deleted or broken), or that starts from no
checkpoint over markers of an earlier run of the same job, would write
committed results again: that start is refused with one line naming both
ids, exit code 2, unless --allow-replay-committed (duplicates accepted;
--allow-fresh-start accepts it too when nothing is restored).

Signals:
  SIGTERM  graceful stop. With checkpoints on: take a savepoint (bounded by
           checkpoint.timeout, at most 2m), stop, print "engine: stopped
           with savepoint PATH" and exit 0; if the savepoint fails the job is
           cancelled and the exit code is 1. While the job restores or
           waits to restart, and without checkpoints: cancel (exit 0).
  SIGINT   cancel the job now (exit 0).
  SIGUSR1  take a savepoint and print "savepoint: PATH" on stdout; the job
           keeps running.
A second SIGINT or SIGTERM kills the process.

Status and metrics: with --http ADDR (or the job file's http.addr; the flag
wins) the engine serves GET /metrics (Prometheus text format, docs/metrics.md)
and the REST status /api/job, /api/checkpoints, /api/operators/{id},
/api/throughput (JSON, docs/rest.md) and the status page at / (open
http://ADDR/ in a browser; engine status --http ADDR prints the same) on
ADDR, host:port; a bare port binds 127.0.0.1, port 0 picks a free one. The bound address is logged at start
("status and metrics at http://..."). A malformed address, or one that
cannot be bound, is one line and exit code 2, before the brokers are asked.

Memory: the process's soft memory limit (the Go runtime's GOMEMLIMIT) is
--memory-limit, else the GOMEMLIMIT environment variable, else the job
file's memory.limit, else 75% of the memory available to the process (its
cgroup's memory limit, or the machine's memory without one). The limit in
use and where it came from are logged at start.

Environment:
  WEIR_FAILPOINT=NAME[@N]  crash test: the process kills itself with SIGKILL
           the N-th time (default 1) the job reaches the protocol step NAME,
           after printing "failpoint NAME hit (N): killing the process" on
           stderr. NAME is one of:
             ` + strings.Join(weir.Failpoints, "\n             ") + `
           Restarting the same job file restores the latest checkpoint and
           commits what the killed process had not. A malformed value is
           one line and exit code 2.

Exit codes: 0 stopped by a signal or ended normally, 1 failed at run time
or an internal error (a panic: its stack, then a last line "engine:
internal error ..."), 2 bad input.`

// httpListen picks the address of the --http listener: the flag wins over
// the job file's http.addr. key names where it came from, for errors; ""
// addr: no listener.
func httpListen(flag, file string) (addr, key string) {
	if flag != "" {
		return flag, "--http"
	}
	if file != "" {
		return file, "http.addr"
	}
	return "", ""
}

// savepointTimeoutMax caps the time a signal's savepoint may take.
const savepointTimeoutMax = 2 * time.Minute

// pidFileName is the file in checkpoint.dir that names the running engine.
const pidFileName = "engine.pid"

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("run", runAbout)
	config := fs.String("config", "", "the job file (YAML, a regular file: a FIFO, device or directory is refused) to run; required")
	checkTimeout := fs.Duration("check-timeout", 10*time.Second, "how long to wait for the brokers to answer before giving up")
	logs := addLogFlags(fs, "info", "log level: debug, info, warn or error")
	statusEvery := fs.Duration("status-interval", 5*time.Second, "time between status lines on stdout; 0 disables them")
	freshStart := fs.Bool("allow-fresh-start", false, "start from the start position when checkpoint.dir holds checkpoints but none can be\nrestored (corrupt, truncated); without it such a start is refused")
	memLimit := fs.String("memory-limit", "", "the Go runtime's soft memory limit (GOMEMLIMIT) of the process: a size such as 2GiB (units B, KiB,\nMiB, GiB; at least 64MiB), or off. Wins over GOMEMLIMIT, which wins over the job file's\nmemory.limit; without any, 75% of the cgroup's memory limit, or of the machine's memory")
	httpAddr := fs.String("http", "", "serve the job's status and Prometheus metrics on host:port (a bare port binds 127.0.0.1;\nport 0 picks a free one): GET /metrics, /api/job, /api/checkpoints, /api/operators/{id};\nwins over the job file's http.addr")
	replayCommitted := fs.Bool("allow-replay-committed", false, "start an exactly-once job from a checkpoint older than the newest epoch its progress topic\nshows committed (or from none over markers of an earlier run), writing those results again;\nwithout it such a start is refused (one line, exit 2)")
	fromSavepoint := fs.String("from-savepoint", "", "restore this checkpoint or savepoint (a chk-<N> directory, as printed by engine savepoint\nor engine checkpoints) instead of the newest checkpoint in checkpoint.dir")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	testPanic("run")
	// Everything the command writes goes through the redaction of secret
	// property values (weir.IsSecretProperty), known once the job file is
	// parsed.
	// A bounded job on a terminal gets a progress bar on stderr, kept
	// below the log and the status lines (bar.writer).
	term := stderr
	stdout, stderr = weir.RedactingWriter(stdout), weir.RedactingWriter(stderr)
	bar := &progressBar{term: stderr}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "engine run: "+format+"\n", a...)
		return exitBadInput
	}
	switch {
	case *config == "":
		return bad("--config is required: give the job file, e.g. --config job.yaml")
	case *checkTimeout <= 0:
		return bad("--check-timeout %v: must be positive, e.g. 10s", *checkTimeout)
	case *statusEvery < 0:
		return bad("--status-interval %v: must not be negative (0 disables status lines)", *statusEvery)
	}
	log, _, err := logs.logger(bar.writer(stderr))
	if err != nil {
		return bad("%v", err)
	}
	routeClientLogs(log)
	var flagLimit int64 // 0: --memory-limit not given
	if *memLimit != "" {
		if flagLimit, err = weir.ParseMemoryLimit(*memLimit); err != nil {
			return bad("--memory-limit %s: %s", quoteArg(*memLimit), oneLine(err.Error()))
		}
	}
	if *httpAddr != "" {
		if _, err := obs.ListenAddr(*httpAddr); err != nil {
			return bad("--http: %s", oneLine(err.Error()))
		}
	}
	failpoint, err := weir.FailpointFromEnv()
	if err != nil {
		return bad("%s", oneLine(err.Error()))
	}

	spec, err := weir.LoadJobFile(*config)
	if err != nil {
		fmt.Fprintf(stderr, "engine: %s\n", oneLine(err.Error()))
		return exitBadInput
	}
	checkpoints := spec.Checkpoint.Interval > 0
	if *fromSavepoint != "" {
		if !checkpoints {
			return bad("--from-savepoint needs checkpoints: set checkpoint.interval and checkpoint.dir in the job file")
		}
		switch fi, err := os.Stat(*fromSavepoint); {
		case err != nil:
			return bad("--from-savepoint %s: %s", *fromSavepoint, oneLine(pathErrCause(err)))
		case !fi.IsDir():
			return bad("--from-savepoint %s: not a directory; give a chk-<N> directory as printed by engine savepoint or engine checkpoints", *fromSavepoint)
		}
	}

	out := &syncWriter{w: bar.writer(stdout)}
	opts := []weir.Option{weir.WithLogger(log)}
	if failpoint != nil {
		opts = append(opts, failpoint)
		log.Warn("failpoint armed: the process kills itself with SIGKILL at that protocol step", "env", weir.FailpointEnv+"="+os.Getenv(weir.FailpointEnv))
	}
	if *fromSavepoint != "" {
		opts = append(opts, weir.WithSavepoint(*fromSavepoint))
	}
	if *freshStart {
		opts = append(opts, weir.WithAllowFreshStart())
	}
	if *replayCommitted {
		opts = append(opts, weir.WithAllowReplayCommitted())
	}
	var root string // checkpoint.dir, absolute; "" with checkpoints off
	if checkpoints {
		if root, err = checkpointRoot(spec); err != nil {
			fmt.Fprintf(stderr, "engine: %s\n", oneLine(err.Error()))
			return exitBadInput
		}
		// engine.pid is written under checkpoint.dir's lock, each time
		// the job takes it: only the engine holding the directory names
		// itself there.
		opts = append(opts, weir.WithOnLocked(func(dir string) error {
			_, err := writePidFile(dir)
			return err
		}))
	}
	job, err := weir.NewJob(spec, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "engine: %s\n", oneLine(err.Error()))
		return exitBadInput
	}
	spec = job.Spec()

	// What can be refused without the brokers is refused before asking
	// them, and before anything is written: a savepoint that is not one of
	// this job, a checkpoint.dir that cannot be created or written or that
	// another engine holds.
	if err := job.CheckSavepoint(); err != nil {
		fmt.Fprintf(stderr, "engine: %s\n", oneLine(err.Error()))
		return exitBadInput
	}
	if checkpoints {
		if err := checkDirUsable(root); err != nil {
			fmt.Fprintf(stderr, "engine: checkpoint.dir %s: %s; fix its permissions or use another directory\n", root, oneLine(err.Error()))
			return exitBadInput
		}
		switch held, err := lockHeld(root); {
		case err != nil:
			fmt.Fprintf(stderr, "engine: checkpoint.dir %s: %s\n", root, oneLine(err.Error()))
			return exitBadInput
		case held:
			fmt.Fprintln(stderr, dirInUse(root))
			return exitBadInput
		}
	}

	// The listener is bound before anything runs: an address in use is
	// one line and exit code 2.
	if addr, key := httpListen(*httpAddr, spec.HTTP.Addr); addr != "" {
		srv, err := serveStatus(addr, job)
		if err != nil {
			fmt.Fprintf(stderr, "engine: %s %s: %s\n", key, addr, oneLine(err.Error()))
			return exitBadInput
		}
		defer srv.Close()
		log.Info("status and metrics at http://"+srv.Addr+"/", "metrics", "http://"+srv.Addr+"/metrics", "api", "http://"+srv.Addr+"/api/job")
	}

	ctl := startController(log, out, checkpoints, min(spec.Checkpoint.Timeout, savepointTimeoutMax))
	defer ctl.release()

	if err := weir.CheckBrokers(ctl.ctx, spec, *checkTimeout); err != nil {
		if sig := ctl.stopSignal(); sig != "" {
			fmt.Fprintf(stderr, "engine: stopped by %s before the job started\n", sig)
			return exitOK
		}
		fmt.Fprintf(stderr, "engine: %s\n", oneLine(err.Error()))
		return exitBadInput
	}
	if checkpoints {
		defer removePidFile(root)
	}

	// Set once the input is known good: a refused start prints one line.
	setMemoryLimit(flagLimit, spec, os.Getenv, weir.DefaultMemoryLimit, log)
	log.Info("job starting", "job", spec.Name, "brokers", spec.Brokers, "source", spec.Source.Topic,
		"sink", spec.Sink.Topic, "parallelism", spec.Parallelism, "delivery", spec.Delivery)
	start := time.Now()
	stopStatus := make(chan struct{})
	statusDone := every(*statusEvery, stopStatus, statusLine(out, job, start))
	showBar := wantProgress(spec, term, stderrIsTerminal)
	sampler := &progressSampler{start: start, last: start}
	barDone := every(progressInterval(showBar), stopStatus, func(now time.Time) {
		bar.draw(barLine(sampler.sample(job.Stats(), now, false)))
	})
	ctl.setJob(job)
	err = job.Run(ctl.ctx)
	ctl.release()
	close(stopStatus)
	<-statusDone
	<-barDone
	if showBar {
		bar.finish(barLine(sampler.sample(job.Stats(), time.Now(), err == nil && ctl.stopSignal() == "")))
	}

	st := job.Stats()
	summary := fmt.Sprintf("records in=%d results out=%d late dropped=%d after %v",
		st.RecordsIn, st.ResultsOut, st.LateDropped, time.Since(start).Round(time.Millisecond))
	sig := ctl.stopSignal()
	savepoint, savepointErr := ctl.stopSavepoint()
	switch {
	case savepointErr != nil:
		if err != nil && !errors.Is(err, context.Canceled) {
			savepointErr = err // the job failed meanwhile: that is the cause
		}
		fmt.Fprintf(stderr, "engine: job %s cancelled by %s without a savepoint: %s; %s\n",
			spec.Name, sig, oneLine(savepointErr.Error()), summary)
		return exitFailed
	case savepoint != "" && err == nil:
		fmt.Fprintf(stderr, "engine: job %s stopped by %s; %s\n", spec.Name, sig, summary)
		fmt.Fprintf(stderr, "engine: stopped with savepoint %s\n", savepoint)
		return exitOK
	case sig != "" && savepoint == "":
		fmt.Fprintf(stderr, "engine: job %s stopped by %s; %s\n", spec.Name, sig, summary)
		return exitOK
	case errors.Is(err, weir.ErrCheckpointDirInUse):
		// Another engine took the lock between the check above and the
		// job's own.
		fmt.Fprintln(stderr, dirInUse(root))
		return exitBadInput
	case err != nil:
		fmt.Fprintf(stderr, "engine: %s\n", oneLine(err.Error()))
		// Run refuses broken checkpoints and a bad --from-savepoint (one
		// whose files do not match its metadata) before any task starts:
		// bad input. A refused savepoint is told by RestoredFrom, which
		// Run sets once the restore is set up.
		var broken *weir.BrokenCheckpointsError
		if errors.As(err, &broken) || errors.Is(err, txsink.ErrReplayCommitted) || (*fromSavepoint != "" && st.RestoredFrom == 0) {
			return exitBadInput
		}
		return exitFailed
	}
	fmt.Fprintf(stderr, "engine: job %s ended; %s\n", spec.Name, summary)
	return exitOK
}

// controller receives the signals run acts on, from before the broker check
// until the job has ended. Before the job runs, SIGINT and SIGTERM cancel
// ctx. While it runs: SIGTERM stops it with a savepoint when checkpoints
// are on (else cancels), SIGINT cancels, SIGUSR1 takes a savepoint. After
// the first SIGINT or SIGTERM their default handling is restored, so a
// second one kills the process.
type controller struct {
	ctx         context.Context // the job's context
	cancel      context.CancelFunc
	log         *slog.Logger
	out         io.Writer
	checkpoints bool
	timeout     time.Duration // bound of one savepoint

	stop     chan os.Signal // SIGINT, SIGTERM
	usr1     chan os.Signal // SIGUSR1
	runDone  chan struct{}  // closed by release: Run has returned
	loopDone chan struct{}  // closed when the loop has returned
	once     sync.Once

	mu            sync.Mutex
	job           *weir.Job // set just before Run
	sig           os.Signal // the first SIGINT or SIGTERM
	savepointPath string    // the SIGTERM savepoint
	savepointErr  error     // why the SIGTERM savepoint failed
}

// startController starts receiving the signals; release must be called when
// the command ends. timeout bounds each savepoint.
func startController(log *slog.Logger, out io.Writer, checkpoints bool, timeout time.Duration) *controller {
	ctx, cancel := context.WithCancel(context.Background())
	c := &controller{ctx: ctx, cancel: cancel, log: log, out: out, checkpoints: checkpoints, timeout: timeout,
		stop: make(chan os.Signal, 1), usr1: make(chan os.Signal, 1),
		runDone: make(chan struct{}), loopDone: make(chan struct{})}
	signal.Notify(c.usr1, syscall.SIGUSR1)
	signal.Notify(c.stop, syscall.SIGINT, syscall.SIGTERM)
	goSafe(c.loop)
	return c
}

// setJob hands the job about to run to the controller.
func (c *controller) setJob(j *weir.Job) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.job = j
}

func (c *controller) loop() {
	defer close(c.loopDone)
	for {
		select {
		case <-c.runDone:
			return
		case sig := <-c.stop:
			signal.Stop(c.stop)
			c.mu.Lock()
			c.sig = sig
			job := c.job
			c.mu.Unlock()
			if sig != syscall.SIGTERM || !c.checkpoints || job == nil {
				c.cancel()
				continue
			}
			path, err := c.savepointIfRunning(job.StopWithSavepoint)
			switch {
			case errors.Is(err, weir.ErrNotRunning):
				// Restoring or between restarts: there is nothing newer
				// than the checkpoint being restored to save; stop now
				// (the restore takes the cancel) and keep it.
				c.log.Info("SIGTERM while the job is not running (restoring or restarting): stopping; the latest checkpoint is kept")
				c.cancel()
				err = nil
			case err != nil:
				c.log.Error("SIGTERM: the savepoint failed; cancelling the job", "err", err)
				c.cancel()
			default:
				c.log.Info("SIGTERM: savepoint taken; stopping the job", "savepoint", path)
			}
			c.mu.Lock()
			c.savepointPath, c.savepointErr = path, err
			c.mu.Unlock()
		case <-c.usr1:
			c.mu.Lock()
			job := c.job
			c.mu.Unlock()
			switch {
			case !c.checkpoints:
				c.log.Warn("SIGUSR1: checkpoints are off for this job; no savepoint taken")
				continue
			case job == nil:
				c.log.Warn("SIGUSR1: the job has not started yet; no savepoint taken")
				continue
			}
			path, err := c.savepoint(job.Savepoint)
			if err != nil {
				c.log.Error("SIGUSR1: the savepoint failed; the job keeps running", "err", err)
				continue
			}
			fmt.Fprintf(c.out, "savepoint: %s\n", path)
		}
	}
}

// savepointIfRunning calls take once, bounded by c.timeout and by Run's
// return: weir.ErrNotRunning when the job is restoring or restarting.
func (c *controller) savepointIfRunning(take func(context.Context) (string, error)) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	goSafe(func() {
		select {
		case <-c.runDone:
			cancel()
		case <-ctx.Done():
		}
	})
	return take(ctx)
}

// savepoint calls take, bounded by c.timeout and by Run's return. A job
// that is not running yet (still restoring) is asked again every 100ms.
func (c *controller) savepoint(take func(context.Context) (string, error)) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	goSafe(func() {
		select {
		case <-c.runDone:
			cancel()
		case <-ctx.Done():
		}
	})
	retry := time.NewTicker(100 * time.Millisecond)
	defer retry.Stop()
	for {
		path, err := take(ctx)
		if !errors.Is(err, weir.ErrNotRunning) {
			return path, err
		}
		select {
		case <-retry.C:
		case <-c.runDone:
			return "", err
		case <-ctx.Done():
			return "", fmt.Errorf("%w (still after %v)", err, c.timeout)
		}
	}
}

// stopSignal returns the name of the signal that stopped the command, or "".
func (c *controller) stopSignal() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return signalName(c.sig)
}

// signalName names sig as in the messages: SIGINT, SIGTERM; "" for none.
func signalName(sig os.Signal) string {
	switch sig {
	case nil:
		return ""
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return sig.String()
}

// stopSavepoint returns the SIGTERM savepoint, or why it failed.
func (c *controller) stopSavepoint() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.savepointPath, c.savepointErr
}

// release ends the controller once Run has returned (or will not run) and
// waits for it. Later SIGUSR1s are ignored; SIGINT and SIGTERM get their
// default handling back.
func (c *controller) release() {
	c.once.Do(func() {
		close(c.runDone)
		<-c.loopDone
		signal.Stop(c.stop)
		signal.Ignore(syscall.SIGUSR1)
		signal.Stop(c.usr1)
		c.cancel()
	})
}

// syncWriter serializes writes to w (status and savepoint lines).
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// statusLine returns the function that prints run's status line.
func statusLine(w io.Writer, job *weir.Job, start time.Time) func(time.Time) {
	last, lastIn := start, int64(0)
	return func(now time.Time) {
		testPanic("status")
		st := job.Stats()
		rate := perSecond(st.RecordsIn-lastIn, now.Sub(last))
		last, lastIn = now, st.RecordsIn
		fmt.Fprintf(w, "status: t=%v records in=%d results out=%d late dropped=%d rate=%d/s lag=%d checkpoints=%d\n",
			now.Sub(start).Round(time.Second), st.RecordsIn, st.ResultsOut, st.LateDropped, rate, totalLag(st.Lag), st.Checkpoints)
	}
}

// totalLag is the sum of the lag of every source partition.
func totalLag(lag map[int32]int64) int64 {
	var n int64
	for _, l := range lag {
		n += l
	}
	return n
}

// perSecond returns n per d, rounded; 0 when d is not positive.
func perSecond(n int64, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(float64(n)/d.Seconds() + 0.5)
}

// every calls f every interval until stop is closed; the returned channel
// is closed when it has returned. interval 0 never calls f.
func every(interval time.Duration, stop <-chan struct{}, f func(now time.Time)) <-chan struct{} {
	done := make(chan struct{})
	goSafe(func() {
		defer close(done)
		if interval <= 0 {
			<-stop
			return
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				f(now)
			case <-stop:
				return
			}
		}
	})
	return done
}

// stopSignal records the first SIGINT or SIGTERM.
type stopSignal struct {
	mu     sync.Mutex
	sig    os.Signal
	ch     chan os.Signal
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// signalContext returns a context cancelled by the first SIGINT or SIGTERM.
// After that signal the default handling is restored, so a second one kills
// the process. release must be called when the command ends.
func signalContext() (context.Context, *stopSignal) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stopSignal{ch: make(chan os.Signal, 1), cancel: cancel, done: make(chan struct{})}
	signal.Notify(s.ch, syscall.SIGINT, syscall.SIGTERM)
	goSafe(func() {
		select {
		case sig := <-s.ch:
			signal.Stop(s.ch)
			s.mu.Lock()
			s.sig = sig
			s.mu.Unlock()
			cancel()
		case <-s.done:
		}
	})
	return ctx, s
}

// signal returns the name of the signal that stopped the command, or "".
func (s *stopSignal) signal() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return signalName(s.sig)
}

func (s *stopSignal) release() {
	s.once.Do(func() {
		signal.Stop(s.ch)
		close(s.done)
		s.cancel()
	})
}
