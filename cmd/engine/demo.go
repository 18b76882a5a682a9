package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/verify"
	"github.com/weirstream/weir/internal/kafkaconf"
	"github.com/weirstream/weir/internal/obs"
)

const demoAbout = `Runs a self-checking demo on an in-process Kafka broker (kfake, bound to
127.0.0.1): a generator produces events {"user","ts","amount","seq"} live at
--rate for --duration to the topic demo-events, with event time following
the wall clock; the window job (count and sum of amount per user and
--window) runs from the start and writes to demo-results with exactly-once
delivery: Kafka transactions committed on checkpoints, taken every
--checkpoint-interval into a temporary directory that is removed at the
end. Progress is printed once a second. When the generator is done the job
is drained (it commits its last epoch), its output is read back with
read_committed and compared with the expected windows: every window
exactly once with the right count and sum. One verdict line is printed.

With --chaos the job runs as child processes (engine run on a generated job
file) that the demo kills with SIGKILL and restarts while the generator
produces: each child is armed with a random failpoint and hit count
(WEIR_FAILPOINT, see engine run --help) or killed after a random delay,
and each restart restores the latest checkpoint and commits what the
killed child had not. Every kill is printed. After the generator is done a
last child reads up to the end offsets (source.bounded: latest), commits
and exits; then the verdict is computed as above, and the kills, restarts
and aborted result records (read_uncommitted) are printed.

The job serves its status page and REST status (see engine run --http) on
--http, by default a free port on 127.0.0.1; the demo prints "status page:
http://ADDR/" at the start. Open it in a browser while the demo runs, or
read it with engine status --http ADDR. --hold keeps it up after the
verdict until SIGINT or SIGTERM (the exit code is still the verdict's).
With --chaos the job runs in child processes that are killed, and no status
page is served.

Exit codes: 0 verdict OK, 1 FAILED or a run-time failure, 2 bad flags.
--seed replays a run's events and, with --chaos, its sequence of faults.`

const (
	demoSource = "demo-events"
	demoSink   = "demo-results"

	// demoEventsMax bounds --rate × --duration: every event is kept in
	// memory to compute the expected windows.
	demoEventsMax = 20_000_000
	// demoPartitionsMax bounds --partitions.
	demoPartitionsMax = 1024
	// demoKeysMax bounds --keys.
	demoKeysMax = 10_000_000

	// demoInFlightMax bounds the events handed to the producer without a
	// delivery report.
	demoInFlightMax = 10_000
	// demoStallTimeout is the longest wait for one delivery report.
	demoStallTimeout = 30 * time.Second
	// demoReadTimeout bounds reading the output back.
	demoReadTimeout = 2 * time.Minute
	// demoStopTimeout bounds the wait for Run to return after it is
	// cancelled (the job bounds its own close as well).
	demoStopTimeout = 90 * time.Second
	// demoCheckpointTimeout is the job's checkpoint.timeout; the
	// exactly-once sink's transaction timeout is chosen to cover it.
	demoCheckpointTimeout = time.Minute
)

// demoConfig is the demo's flags.
type demoConfig struct {
	duration       time.Duration
	rate           int
	keys           int
	partitions     int
	parallelism    int
	window         time.Duration
	outOfOrderness time.Duration
	seed           int64
	logLevel       slog.Level
	logLevelName   string
	logFormat      string        // text or json
	checkpoint     time.Duration // checkpoint interval
	chaos          bool
	http           string // status page address; "" when off
	hold           bool   // keep the status page up after the verdict
	events         int64  // rate × duration
}

func demoCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("demo", demoAbout)
	var c demoConfig
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "how long the generator produces events")
	fs.IntVar(&c.rate, "rate", 20000, "events produced per second")
	fs.IntVar(&c.keys, "keys", 100, "distinct users (keys); low-numbered users are more frequent")
	fs.IntVar(&c.partitions, "partitions", 4, "partitions of the input and output topics")
	fs.IntVar(&c.parallelism, "parallelism", 2, "subtasks of every operator of the job")
	fs.DurationVar(&c.window, "window", time.Second, "tumbling window size, whole milliseconds")
	fs.DurationVar(&c.outOfOrderness, "out-of-orderness", 200*time.Millisecond, "how late events are generated and allowed by the job")
	fs.Int64Var(&c.seed, "seed", 0, "generator seed; a new one is picked and printed when not given")
	logs := addLogFlags(fs, "warn", "job log level on stderr: debug, info, warn or error")
	level := logs.level
	fs.DurationVar(&c.checkpoint, "checkpoint-interval", 500*time.Millisecond, "time between checkpoints; each one commits the job's Kafka transactions")
	fs.BoolVar(&c.chaos, "chaos", false, "run the job as child processes, kill them at random protocol steps and restart them")
	fs.StringVar(&c.http, "http", "127.0.0.1:0", `serve the job's status page, REST status and /metrics on this address (port 0: a free one; a bare port binds 127.0.0.1); "off" or "" disables`)
	fs.BoolVar(&c.hold, "hold", false, "after the verdict, keep serving the status page until SIGINT or SIGTERM")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	seeded := false
	fs.Visit(func(f *flag.Flag) { seeded = seeded || f.Name == "seed" })
	if !seeded {
		c.seed = time.Now().UnixNano()
	}
	var err error
	c.logLevelName = strings.ToLower(*level)
	c.logFormat = strings.ToLower(*logs.format)
	if c.logLevel, err = logLevel(*level); err == nil {
		if _, err = logHandler(io.Discard, c.logFormat, c.logLevel); err == nil {
			err = c.validate()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "engine demo: %v\n", err)
		return exitBadInput
	}
	ctx, stopped := signalContext()
	defer stopped.release()
	code, err := runDemo(ctx, c, stdout, stderr)
	if err != nil {
		if sig := stopped.signal(); sig != "" {
			err = fmt.Errorf("stopped by %s before the verdict", sig)
		}
		fmt.Fprintf(stderr, "engine demo: %s\n", oneLine(err.Error()))
	}
	return code
}

// validate checks the flags and sets c.events.
func (c *demoConfig) validate() error {
	switch {
	case c.duration <= 0:
		return fmt.Errorf("--duration %v: must be positive, e.g. 20s", c.duration)
	case c.rate < 1:
		return fmt.Errorf("--rate %d: must be at least 1 event per second", c.rate)
	case c.keys < 1 || c.keys > demoKeysMax:
		return fmt.Errorf("--keys %d: must be between 1 and %d", c.keys, demoKeysMax)
	case c.partitions < 1 || c.partitions > demoPartitionsMax:
		return fmt.Errorf("--partitions %d: must be between 1 and %d", c.partitions, demoPartitionsMax)
	case c.parallelism < 1 || c.parallelism > weir.MaxParallelism:
		return fmt.Errorf("--parallelism %d: must be between 1 and %d", c.parallelism, weir.MaxParallelism)
	case c.window < time.Millisecond || c.window%time.Millisecond != 0:
		return fmt.Errorf("--window %v: must be a positive whole number of milliseconds, e.g. 1s", c.window)
	case c.outOfOrderness < 0 || c.outOfOrderness%time.Millisecond != 0:
		return fmt.Errorf("--out-of-orderness %v: must be zero or a whole number of milliseconds, e.g. 200ms", c.outOfOrderness)
	case c.checkpoint < 10*time.Millisecond || c.checkpoint > demoCheckpointTimeout/2:
		return fmt.Errorf("--checkpoint-interval %v: must be between 10ms and %v, e.g. 500ms", c.checkpoint, demoCheckpointTimeout/2)
	}
	if strings.TrimSpace(c.http) == "" || strings.EqualFold(strings.TrimSpace(c.http), "off") {
		c.http = ""
	} else {
		a, err := obs.ListenAddr(c.http)
		if err != nil {
			return fmt.Errorf("--http %w", err)
		}
		c.http = a
	}
	if c.hold && (c.http == "" || c.chaos) {
		return errors.New("--hold keeps the status page up after the verdict: it needs --http and cannot be used with --chaos (no page is served then)")
	}
	n := float64(c.rate) * c.duration.Seconds()
	if n > demoEventsMax {
		return fmt.Errorf("--rate %d × --duration %v is %.0f events; the demo keeps every event in memory and allows at most %d: lower --rate or --duration",
			c.rate, c.duration, n, demoEventsMax)
	}
	c.events = int64(n)
	if c.events < 1 {
		return fmt.Errorf("--rate %d × --duration %v is less than one event: raise --rate or --duration", c.rate, c.duration)
	}
	return nil
}

// replay returns the flags that replay c.
func (c demoConfig) replay() string {
	s := fmt.Sprintf("engine demo --seed %d --duration %v --rate %d --keys %d --partitions %d --parallelism %d --window %v --out-of-orderness %v --checkpoint-interval %v",
		c.seed, c.duration, c.rate, c.keys, c.partitions, c.parallelism, c.window, c.outOfOrderness, c.checkpoint)
	if c.chaos {
		s += " --chaos"
	}
	return s
}

// runDemo runs the demo and returns the exit code; err, when not nil, is
// the one-line cause of a failure before the verdict.
func runDemo(ctx context.Context, c demoConfig, stdout, stderr io.Writer) (int, error) {
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(int32(c.partitions), demoSource, demoSink),
		kfake.Ports(0),
		kfake.ListenFn(loopbackListen),
	)
	if err != nil {
		return exitFailed, fmt.Errorf("start the in-process broker: %w", err)
	}
	defer cluster.Close()
	addrs := cluster.ListenAddrs()
	for _, a := range addrs {
		if err := checkLoopback(a); err != nil {
			return exitFailed, err
		}
	}
	brokers := strings.Join(addrs, ",")
	dir, err := os.MkdirTemp("", "weir-demo-")
	if err != nil {
		return exitFailed, fmt.Errorf("temporary directory for checkpoints: %w", err)
	}
	defer os.RemoveAll(dir)
	out := &syncWriter{w: stdout}

	fmt.Fprintf(out, "demo: broker %s (in process), %s -> %s, %d partitions\n", brokers, demoSource, demoSink, c.partitions)
	fmt.Fprintf(out, "demo: seed=%d (replay: %s)\n", c.seed, c.replay())
	fmt.Fprintf(out, "demo: %d events at %d/s for %v, %d keys; job parallelism %d, window %v, out-of-orderness %v\n",
		c.events, c.rate, c.duration, c.keys, c.parallelism, c.window, c.outOfOrderness)
	fmt.Fprintf(out, "demo: delivery exactly-once, checkpoints every %v in %s (removed at the end)\n", c.checkpoint, dir)

	start := time.Now()
	gen, err := verify.NewGenerator(verify.GenConfig{
		Seed: c.seed, Keys: c.keys, Partitions: c.partitions,
		Start:          start.UnixMilli(),
		Step:           time.Second / time.Duration(c.rate),
		OutOfOrderness: c.outOfOrderness,
	})
	if err != nil {
		return exitFailed, err
	}
	spec := demoSpec(c, brokers, filepath.Join(dir, "checkpoints"))
	var run demoRun
	if c.chaos {
		if c.http != "" {
			fmt.Fprintln(out, "status page: off with --chaos (the job runs in child processes that are killed)")
		}
		run, err = runChaos(ctx, c, spec, dir, gen, start, out, stderr)
	} else {
		run, err = runInProcess(ctx, c, spec, gen, start, out, stderr)
	}
	if run.page != nil {
		defer run.page.Close()
	}
	if err != nil {
		return exitFailed, err
	}

	readCtx, cancelRead := context.WithTimeout(ctx, demoReadTimeout)
	defer cancelRead()
	got, err := verify.ReadResults(readCtx, brokers, demoSink, verify.ReadCommitted)
	if err != nil {
		return exitFailed, err
	}
	if c.chaos {
		fmt.Fprintf(out, "throughput: %d events processed in %v = %d events/s end to end, through every kill and restart (the workers' last status lines add up to records in=%d, results out=%d)\n",
			len(run.events), run.elapsed.Round(time.Millisecond), perSecond(int64(len(run.events)), run.elapsed), run.recordsIn, run.resultsOut)
		all, err := verify.ReadAll(readCtx, brokers, demoSink, verify.ReadUncommitted)
		if err != nil {
			return exitFailed, err
		}
		fmt.Fprintf(out, "chaos: %d kills (%d at failpoints, %d plain SIGKILLs), %d restarts, %d aborted result records (read_uncommitted %d, read_committed %d)\n",
			run.kills, run.failpointKills, run.kills-run.failpointKills, run.restarts, len(all)-len(got), len(all), len(got))
	} else {
		fmt.Fprintf(out, "throughput: %d events processed in %v = %d events/s (results out=%d, late dropped=%d)\n",
			run.recordsIn, run.elapsed.Round(time.Millisecond), perSecond(run.recordsIn, run.elapsed), run.resultsOut, run.lateDropped)
	}
	code := verdict(out, run.events, c.window, got)
	if c.hold && run.page != nil {
		fmt.Fprintf(out, "demo: --hold: the status page stays up at http://%s/ until SIGINT or SIGTERM\n", run.page.Addr)
		<-ctx.Done()
	}
	return code, nil
}

// demoRun is what one run of the demo's job did.
type demoRun struct {
	events      []verify.Event // produced, each acknowledged by Kafka
	elapsed     time.Duration  // from the first event to the job's end
	recordsIn   int64          // summed over every worker with --chaos
	resultsOut  int64
	lateDropped int64

	kills          int // --chaos: workers killed
	failpointKills int // of which at a failpoint
	restarts       int // workers started after the first

	page *obs.Server // the status page, nil when off; the caller closes it, also on an error
}

// runInProcess runs the job in this process while the generator produces,
// then drains it.
func runInProcess(ctx context.Context, c demoConfig, spec weir.JobSpec, gen *verify.Generator, start time.Time, out, stderr io.Writer) (demoRun, error) {
	h, err := logHandler(stderr, c.logFormat, c.logLevel)
	if err != nil { // checked with the flags
		return demoRun{}, err
	}
	log := slog.New(h)
	routeClientLogs(log)
	job, err := weir.NewJob(spec, weir.WithLogger(log))
	if err != nil {
		return demoRun{}, err
	}
	var page *obs.Server
	if c.http != "" {
		page, err = serveStatus(c.http, job)
		if err != nil {
			return demoRun{}, fmt.Errorf("status page: %w", err)
		}
		fmt.Fprintf(out, "status page: http://%s/\n", page.Addr)
	}

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var runErr error
	jobEnded := make(chan struct{})
	goSafe(func() {
		defer close(jobEnded)
		runErr = job.Run(runCtx)
	})
	// stopJob cancels the run and waits for it, bounded; it reports
	// whether Run returned (only then may runErr be read).
	stopJob := func() bool {
		cancelRun()
		select {
		case <-jobEnded:
			return true
		case <-time.After(demoStopTimeout):
			return false
		}
	}

	stopProgress := make(chan struct{})
	progressDone := every(time.Second, stopProgress, progressLine(out, job, start))
	endProgress := func() {
		if stopProgress != nil {
			close(stopProgress)
			<-progressDone
			stopProgress = nil
		}
	}
	defer endProgress()

	events, err := produceLive(ctx, spec.Brokers, c, gen, jobEnded)
	if err != nil {
		if stopJob() && runErr != nil && !errors.Is(runErr, context.Canceled) {
			err = fmt.Errorf("%w (the job: %v)", err, runErr)
		}
		return demoRun{page: page}, err
	}

	job.Drain()
	drainTimeout := 2*c.duration + time.Minute
	select {
	case <-jobEnded:
	case <-ctx.Done():
		stopJob()
		return demoRun{page: page}, ctx.Err()
	case <-time.After(drainTimeout):
		stopJob()
		return demoRun{page: page}, fmt.Errorf("the job did not finish draining within %v", drainTimeout)
	}
	elapsed := time.Since(start)
	endProgress()
	if runErr != nil {
		return demoRun{page: page}, runErr
	}
	st := job.Stats()
	return demoRun{events: events, elapsed: elapsed, recordsIn: st.RecordsIn, resultsOut: st.ResultsOut, lateDropped: st.LateDropped, page: page}, nil
}

// demoSpec is the demo's window job, exactly-once with checkpoints in dir.
func demoSpec(c demoConfig, brokers, dir string) weir.JobSpec {
	return weir.JobSpec{
		Name:           "demo",
		Brokers:        brokers,
		Source:         weir.SourceSpec{Topic: demoSource, Start: weir.StartSpec{Mode: weir.StartEarliest}},
		KeyField:       "user",
		TimestampField: "ts",
		Window:         weir.WindowSpec{Size: c.window, OutOfOrderness: c.outOfOrderness},
		Aggregate:      weir.AggregateSpec{ValueField: "amount"},
		Sink:           weir.SinkSpec{Topic: demoSink},
		Delivery:       weir.ExactlyOnce,
		Checkpoint:     weir.CheckpointSpec{Interval: c.checkpoint, Dir: dir, Timeout: demoCheckpointTimeout},
		Parallelism:    c.parallelism,
	}
}

// verdict compares got, the job's output, with the windows expected for
// events, prints the verdict line (and on FAILED the examples, one per
// line) to w, and returns the exit code: 0 when OK, 1 otherwise.
func verdict(w io.Writer, events []verify.Event, window time.Duration, got []verify.Result) int {
	v := verify.Compare(len(events), verify.Expected(events, window), got)
	fmt.Fprintln(w, v.Report())
	if v.OK {
		return exitOK
	}
	return exitFailed
}

// progressLine returns the function that prints the demo's progress line.
func progressLine(w io.Writer, job *weir.Job, start time.Time) func(time.Time) {
	last, lastIn := start, int64(0)
	return func(now time.Time) {
		st := job.Stats()
		rate := perSecond(st.RecordsIn-lastIn, now.Sub(last))
		last, lastIn = now, st.RecordsIn
		fmt.Fprintf(w, "t=%v events in=%d results out=%d rate=%d/s\n",
			now.Sub(start).Round(time.Second), st.RecordsIn, st.ResultsOut, rate)
	}
}

// produceLive produces c.events events of gen to demoSource at c.rate per
// second, event i at about start + i/rate, and returns them once every one
// has a delivery report. It stops with an error when a delivery fails, the
// job ends, ctx ends, or no delivery report comes for demoStallTimeout.
func produceLive(ctx context.Context, brokers string, c demoConfig, gen *verify.Generator, jobEnded <-chan struct{}) ([]verify.Event, error) {
	// log_level 3 (kafkaconf's): errors only, no warning when a stopped
	// demo drops queued events.
	p, err := kafkaconf.NewProducer(brokers, nil, nil, kafka.ConfigMap{
		"client.id":              "weir-demo-generator",
		"enable.idempotence":     true, // no duplicates, no reordering: Expected counts each event once
		"acks":                   "all",
		"linger.ms":              5,
		"enable.metrics.push":    false,
		"go.delivery.reports":    true,
		"go.events.channel.size": demoInFlightMax,
	})
	if err != nil {
		return nil, fmt.Errorf("generator: new producer: %w", err)
	}

	// Every produced event holds a slot of inFlight until its delivery
	// report is read from Events, which is drained until Close closes it.
	inFlight := make(chan struct{}, demoInFlightMax)
	failed := make(chan error, 1)
	fail := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	eventsDone := make(chan struct{})
	goSafe(func() {
		defer close(eventsDone)
		for ev := range p.Events() {
			switch e := ev.(type) {
			case *kafka.Message:
				if tp := e.TopicPartition; tp.Error != nil {
					fail(fmt.Errorf("generator: deliver event key=%q to partition %d: %w", e.Key, tp.Partition, tp.Error))
				}
				<-inFlight
			case kafka.Error:
				if e.IsFatal() {
					fail(fmt.Errorf("generator: producer failed: %w", e))
				}
			}
		}
	})
	defer func() {
		_ = p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking)
		p.Close()
		<-eventsDone
	}()

	// acquire takes an in-flight slot, waiting at most demoStallTimeout.
	acquire := func() error {
		select {
		case inFlight <- struct{}{}:
			return nil
		default:
		}
		t := time.NewTimer(demoStallTimeout)
		defer t.Stop()
		select {
		case inFlight <- struct{}{}:
			return nil
		case err := <-failed:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-jobEnded:
			return errors.New("generator: the job ended while events were being produced")
		case <-t.C:
			return fmt.Errorf("generator: no delivery report for %v with %d events in flight", demoStallTimeout, len(inFlight))
		}
	}

	topic := demoSource
	events := make([]verify.Event, 0, c.events)
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for int64(len(events)) < c.events {
		due := min(c.events, int64(time.Since(start).Seconds()*float64(c.rate))+1)
		for int64(len(events)) < due {
			e := gen.Next()
			if err := acquire(); err != nil {
				return nil, err
			}
			err := p.Produce(&kafka.Message{
				TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: verify.Partition(e, c.partitions)},
				Key:            []byte(e.Key),
				Value:          e.JSON(),
				Timestamp:      time.UnixMilli(e.TS),
			}, nil)
			if err != nil {
				<-inFlight
				return nil, fmt.Errorf("generator: produce event seq %d: %w", e.Seq, err)
			}
			events = append(events, e)
		}
		if int64(len(events)) == c.events {
			break
		}
		select {
		case <-tick.C:
		case err := <-failed:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-jobEnded:
			return nil, errors.New("generator: the job ended while events were being produced")
		}
	}
	// Wait for every delivery report: all slots free.
	for range demoInFlightMax {
		if err := acquire(); err != nil {
			return nil, err
		}
	}
	select {
	case err := <-failed:
		return nil, err
	default:
	}
	return events, nil
}

// loopbackListen is kfake's listen function: it refuses any address that
// is not a loopback IP, so the demo broker is never reachable from outside.
func loopbackListen(network, addr string) (net.Listener, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	return net.Listen(network, addr)
}

// checkLoopback returns an error unless addr is host:port with a loopback IP.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("demo broker address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("demo broker address %q is not loopback; the demo binds to 127.0.0.1 only", addr)
	}
	return nil
}
