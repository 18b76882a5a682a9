package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/weirstream/weir"
)

const runAbout = `Runs the job described by a job file (docs/jobfile.md, examples/job.yaml)
until SIGINT or SIGTERM stops it or it fails. The job file is checked, then
the brokers are asked for the source topic; a problem with either is one
line on stderr and exit code 2, before anything runs. The log goes to
stderr; a status line (records in, results out, late dropped, rate) goes to
stdout every --status-interval. Exit codes: 0 stopped by a signal or ended
normally, 1 failed at run time, 2 bad input.`

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("run", runAbout)
	config := fs.String("config", "", "the job file (YAML) to run; required")
	checkTimeout := fs.Duration("check-timeout", 10*time.Second, "how long to wait for the brokers to answer before giving up")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	statusEvery := fs.Duration("status-interval", 5*time.Second, "time between status lines on stdout; 0 disables them")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
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
	lvl, err := logLevel(*level)
	if err != nil {
		return bad("%v", err)
	}

	spec, err := weir.LoadJobFile(*config)
	if err != nil {
		fmt.Fprintf(stderr, "engine: %s\n", oneLine(err.Error()))
		return exitBadInput
	}

	ctx, stopped := signalContext()
	defer stopped.release()

	if err := weir.CheckBrokers(ctx, spec, *checkTimeout); err != nil {
		if sig := stopped.signal(); sig != "" {
			fmt.Fprintf(stderr, "engine: stopped by %s before the job started\n", sig)
			return exitOK
		}
		fmt.Fprintf(stderr, "engine: %s\n", oneLine(err.Error()))
		return exitBadInput
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	job, err := weir.NewJob(spec, weir.WithLogger(log))
	if err != nil {
		fmt.Fprintf(stderr, "engine: %s\n", oneLine(err.Error()))
		return exitBadInput
	}

	spec = job.Spec()
	log.Info("job starting", "job", spec.Name, "brokers", spec.Brokers, "source", spec.Source.Topic,
		"sink", spec.Sink.Topic, "parallelism", spec.Parallelism, "delivery", spec.Delivery)
	start := time.Now()
	stopStatus := make(chan struct{})
	statusDone := every(*statusEvery, stopStatus, statusLine(stdout, job, start))
	err = job.Run(ctx)
	close(stopStatus)
	<-statusDone

	st := job.Stats()
	summary := fmt.Sprintf("records in=%d results out=%d late dropped=%d after %v",
		st.RecordsIn, st.ResultsOut, st.LateDropped, time.Since(start).Round(time.Millisecond))
	if sig := stopped.signal(); sig != "" {
		fmt.Fprintf(stderr, "engine: job %s stopped by %s; %s\n", spec.Name, sig, summary)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "engine: %s\n", oneLine(err.Error()))
		return exitFailed
	}
	fmt.Fprintf(stderr, "engine: job %s ended; %s\n", spec.Name, summary)
	return exitOK
}

// statusLine returns the function that prints run's status line.
func statusLine(w io.Writer, job *weir.Job, start time.Time) func(time.Time) {
	last, lastIn := start, int64(0)
	return func(now time.Time) {
		st := job.Stats()
		rate := perSecond(st.RecordsIn-lastIn, now.Sub(last))
		last, lastIn = now, st.RecordsIn
		fmt.Fprintf(w, "status: t=%v records in=%d results out=%d late dropped=%d rate=%d/s\n",
			now.Sub(start).Round(time.Second), st.RecordsIn, st.ResultsOut, st.LateDropped, rate)
	}
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
	go func() {
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
	}()
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
	go func() {
		select {
		case sig := <-s.ch:
			signal.Stop(s.ch)
			s.mu.Lock()
			s.sig = sig
			s.mu.Unlock()
			cancel()
		case <-s.done:
		}
	}()
	return ctx, s
}

// signal returns the name of the signal that stopped the command, or "".
func (s *stopSignal) signal() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.sig {
	case nil:
		return ""
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.sig.String()
}

func (s *stopSignal) release() {
	s.once.Do(func() {
		signal.Stop(s.ch)
		close(s.done)
		s.cancel()
	})
}
