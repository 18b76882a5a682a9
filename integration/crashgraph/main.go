// Command crashgraph is the dataflow program of TestCrashGraph
// (integration/crashgraph_test.go), which builds it, kills it with
// SIGKILL at seeded moments and restarts it.
//
// It runs, exactly-once with checkpoints:
//
//	FromKafka(-in, JSON events {user, ts, amount, seq}, event time with a bound)
//	  -> KeyBy(user)
//	  -> Process "per-user": a ValueState (records seen for the user) and a
//	     MapState (window start -> sum and count), one event-time timer per
//	     (user, 1-second window) that emits the window's sum and count
//	  -> ToKafka(-windows)                     the window results
//	  +  SideOutput "counts" -> ToKafka(-counts) for every input record
//	     the user's running count: the k-th record of a user gives k.
//
// Every record written carries -run, the number of the run that produced
// it, so that the test can tell which run fired a timer; the test
// compares every other field with values computed from the input.
//
// It prints "crashgraph: running" on stderr when the job starts, logs the
// engine's lines (among them "checkpoint complete" and "restoring from
// checkpoint") on stderr, and exits 0 when a -bounded run has read its
// input to the end; any error exits 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/supervisor"
)

// event is an input record (verify.Event's wire form).
type event struct {
	User   string `json:"user"`
	TS     int64  `json:"ts"`
	Amount int64  `json:"amount"`
	Seq    int64  `json:"seq"`
}

// windowResult is one user's sum and count of amounts in the one-second
// event-time window starting at Start; Run is the run that fired it.
type windowResult struct {
	User  string `json:"user"`
	Start int64  `json:"start"`
	Sum   int64  `json:"sum"`
	Count int64  `json:"count"`
	Run   int    `json:"run"`
}

// countRecord says that the record Seq (event time TS) was the K-th record
// of User; Run is the run that handled it. Late is set for a record at or
// behind the watermark, which no window counts (the test expects none).
type countRecord struct {
	User string `json:"user"`
	K    int64  `json:"k"`
	Seq  int64  `json:"seq"`
	TS   int64  `json:"ts"`
	Run  int    `json:"run"`
	Late bool   `json:"late,omitempty"`
}

// window is the running sum and count of one open window.
type window struct {
	Sum   int64 `json:"sum"`
	Count int64 `json:"count"`
}

// windowSize is the tumbling window, in event-time milliseconds.
const windowSize = 1000

// perUser is the keyed process function.
type perUser struct {
	run    int
	counts weir.OutputTag[countRecord]

	seen    *weir.ValueState[int64]
	windows *weir.MapState[int64, window]
}

func (p *perUser) Open(ctx *weir.OpenContext) error {
	var err error
	if p.seen, err = weir.ValueStateOf[int64](ctx, "seen"); err != nil {
		return fmt.Errorf("value state seen: %w", err)
	}
	if p.windows, err = weir.MapStateOf[int64, window](ctx, "windows"); err != nil {
		return fmt.Errorf("map state windows: %w", err)
	}
	return nil
}

func (p *perUser) OnElement(ctx *weir.Context[windowResult], e event) error {
	n, _ := p.seen.Value()
	n++
	p.seen.Update(n)
	late := e.TS <= ctx.CurrentWatermark()
	p.counts.Emit(ctx, countRecord{User: ctx.Key(), K: n, Seq: e.Seq, TS: e.TS, Run: p.run, Late: late})
	if late {
		return nil
	}
	start := e.TS - e.TS%windowSize
	w, _ := p.windows.Get(start)
	w.Sum += e.Amount
	w.Count++
	p.windows.Put(start, w)
	ctx.RegisterEventTimer(start + windowSize - 1)
	return nil
}

func (p *perUser) OnTimer(ctx *weir.Context[windowResult], ts int64) error {
	if ctx.TimeDomain() != weir.EventTimeDomain {
		return fmt.Errorf("timer %d of user %q: a processing-time timer, none was registered", ts, ctx.Key())
	}
	start := ts - (windowSize - 1)
	w, ok := p.windows.Get(start)
	if !ok {
		return fmt.Errorf("timer %d of user %q: no open window at %d", ts, ctx.Key(), start)
	}
	p.windows.Remove(start)
	ctx.Emit(windowResult{User: ctx.Key(), Start: start, Sum: w.Sum, Count: w.Count, Run: p.run})
	return nil
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka bootstrap servers")
	name := flag.String("name", "crashgraph", "job name (checkpoints, transactional ids)")
	in := flag.String("in", "", "input topic of JSON events")
	windowsTopic := flag.String("windows", "", "sink topic of the window results")
	countsTopic := flag.String("counts", "", "sink topic of the running counts (side output)")
	dir := flag.String("checkpoint-dir", "", "checkpoint directory")
	interval := flag.Duration("checkpoint-interval", 100*time.Millisecond, "checkpoint interval")
	parallelism := flag.Int("parallelism", 2, "parallelism of every operator")
	bound := flag.Duration("out-of-orderness", 300*time.Millisecond, "event-time bound of the watermarks")
	bounded := flag.Bool("bounded", false, "stop at the end the input has at the start, and exit 0")
	run := flag.Int("run", 0, "number of this run, written into every output record")
	flag.Parse()
	if *in == "" || *windowsTopic == "" || *countsTopic == "" || *dir == "" {
		fmt.Fprintln(os.Stderr, "crashgraph: -in, -windows, -counts and -checkpoint-dir are required")
		os.Exit(2)
	}
	if err := runJob(*brokers, *name, *in, *windowsTopic, *countsTopic, *dir, *interval, *parallelism, *bound, *bounded, *run); err != nil {
		fmt.Fprintf(os.Stderr, "crashgraph: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "crashgraph: finished")
}

func runJob(brokers, name, in, windowsTopic, countsTopic, dir string, interval time.Duration, parallelism int, bound time.Duration, bounded bool, run int) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	env := weir.NewEnv(name,
		weir.Brokers(brokers),
		weir.Parallelism(parallelism),
		weir.Guarantee(weir.ExactlyOnce),
		weir.Checkpoints(interval, dir),
		// A failure ends the run (exit 1) instead of a restart inside the
		// process: the test sees it at once.
		weir.Restart(weir.RestartSpec{Strategy: supervisor.RestartNone}),
		weir.JobOptions(weir.WithLogger(log)),
	)
	srcOpts := []weir.SourceOption{
		weir.SourceUID("events"),
		weir.FromEarliest(),
		weir.EventTime(func(e event) int64 { return e.TS }, bound),
	}
	if bounded {
		srcOpts = append(srcOpts, weir.BoundedAtLatest())
	}
	events := weir.FromKafka(env, in, weir.JSON[event](), srcOpts...)
	counts := weir.NewOutputTag[countRecord]("counts")
	results := weir.Process(weir.KeyBy(events, func(e event) string { return e.User }),
		&perUser{run: run, counts: counts}, weir.UID("per-user"))
	weir.ToKafka(results, windowsTopic, weir.KeyedJSON(func(r windowResult) string { return r.User }), weir.SinkUID("windows"))
	weir.ToKafka(weir.SideOutput(results, counts), countsTopic,
		weir.KeyedJSON(func(c countRecord) string { return c.User }), weir.SinkUID("counts"))

	job, err := env.Build()
	if err != nil {
		return fmt.Errorf("build the job: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "crashgraph: running (run %d, bounded %v)\n", run, bounded)
	if err := job.Run(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted: %w", err)
		}
		return fmt.Errorf("run: %w", err)
	}
	return nil
}
