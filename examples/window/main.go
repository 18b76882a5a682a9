// Command window is weir's built-in window job (a job file of kind window:
// count and sum per key in event-time tumbling windows) written with the
// dataflow API, as a keyed process function with map state and timers.
//
//	go run ./examples/window -brokers 127.0.0.1:9092 -in clicks -out clicks-per-user -window 10s -out-of-orderness 2s
//
// It reads the same records as the built-in job, JSON objects such as
// {"user":"u17","ts":1764028800123,"amount":17} (fields -key-field,
// -timestamp-field and -value-field, extracted by weir.JSONExtract, the
// built-in job's own extraction), and writes the same results, one per key
// and window with the key as the record key:
//
//	{"key":"u17","window_start":1764028800000,"window_end":1764028810000,"count":3,"sum":51}
//
// The window operator is weir.Process on the stream keyed by the key: a
// MapState from window start to the window's count and sum, and an
// event-time timer per window at its end - 1 ms, which fires once the
// watermark (newest event time per partition minus -out-of-orderness,
// the minimum over partitions) reaches it and writes the result.
//
// A record whose window has fired already (window end - 1 <= the current
// watermark) is late. As in the built-in job and in Flink's window
// operator, it is not counted: it goes to a side output, written unchanged
// to -late when that is set, and counted in the "late" number printed at
// the end (a count of this process: records read again after a restart
// from a checkpoint count again). A record behind the watermark whose
// window is still open is counted in its window, as the built-in job does.
//
// Without -bounded the job runs until SIGINT or SIGTERM, which cancel it;
// with -bounded it reads up to the end the topic has at the start, fires
// every window, and exits. Either way it prints the job's counters last.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/operator/window"
)

// Event is one input record: its key, event time and value as the
// built-in job extracts them, and the record's value as read.
type Event struct {
	Key   string
	TS    int64 // ms since the epoch
	Value float64
	Raw   []byte
}

// eventFormat reads records with the built-in job's JSON extraction; it
// writes an Event (a late one) as it was read, keyed by its key.
type eventFormat struct {
	extract func(value []byte) (key []byte, tsMillis int64, v float64, err error)
}

func (f eventFormat) Decode(_, value []byte) (Event, error) {
	k, ts, v, err := f.extract(value)
	if err != nil {
		return Event{}, err
	}
	return Event{Key: string(k), TS: ts, Value: v, Raw: value}, nil
}

func (eventFormat) Encode(e Event) ([]byte, []byte, error) { return []byte(e.Key), e.Raw, nil }

// Result is the count and sum of one key's values in one window
// [WindowStart, WindowEnd).
type Result struct {
	Key         string  `json:"key"`
	WindowStart int64   `json:"window_start"`
	WindowEnd   int64   `json:"window_end"`
	Count       int64   `json:"count"`
	Sum         float64 `json:"sum"`
}

// resultFormat writes a Result as the built-in job does, with its encoder
// (operator/window): its key as the record key, the fields in the same
// order, the sum without an exponent or a whole number's fraction
// ("sum":51), and the key escaped as JSON where it needs it.
type resultFormat struct{}

func (resultFormat) Encode(r Result) ([]byte, []byte, error) {
	b := window.AppendResultJSON(make([]byte, 0, 96+len(r.Key)),
		window.Result{Key: r.Key, Start: r.WindowStart, Count: r.Count, Sum: r.Sum}, r.WindowEnd-r.WindowStart)
	return []byte(r.Key), b, nil
}

func (resultFormat) Decode(_, value []byte) (Result, error) {
	var r Result
	err := json.Unmarshal(value, &r)
	return r, err
}

// accumulator is the state of one key's window. Its fields are exported:
// the state's default codec for a struct is JSON.
type accumulator struct {
	Count int64   `json:"count"`
	Sum   float64 `json:"sum"`
}

// tumblingWindow is the window operator as a keyed process function.
type tumblingWindow struct {
	size    int64 // ms
	late    weir.OutputTag[Event]
	lateN   *atomic.Int64 // shared by the subtasks' copies
	windows *weir.MapState[int64, accumulator]
}

func (w *tumblingWindow) Open(ctx *weir.OpenContext) error {
	var err error
	w.windows, err = weir.MapStateOf[int64, accumulator](ctx, "windows")
	return err
}

// windowStart is the start of the window that holds ts (also for ts < 0).
func (w *tumblingWindow) windowStart(ts int64) int64 {
	m := ts % w.size
	if m < 0 {
		m += w.size
	}
	return ts - m
}

func (w *tumblingWindow) OnElement(ctx *weir.Context[Result], e Event) error {
	start := w.windowStart(e.TS)
	last := start + w.size - 1 // the window's timer
	if last <= ctx.CurrentWatermark() {
		w.lateN.Add(1)
		w.late.Emit(ctx, e)
		return nil
	}
	acc, _ := w.windows.Get(start)
	acc.Count++
	acc.Sum += e.Value
	w.windows.Put(start, acc)
	ctx.RegisterEventTimer(last) // once per key and window: the same time again is the same timer
	return nil
}

func (w *tumblingWindow) OnTimer(ctx *weir.Context[Result], ts int64) error {
	start := ts - w.size + 1
	acc, ok := w.windows.Get(start)
	if !ok {
		return fmt.Errorf("no state for the window at %d", start)
	}
	w.windows.Remove(start)
	ctx.Emit(Result{Key: ctx.Key(), WindowStart: start, WindowEnd: start + w.size, Count: acc.Count, Sum: acc.Sum})
	return nil
}

// config is what the flags set.
type config struct {
	Brokers            string
	In                 string // input topic
	Out                string // results
	Late               string // late records ("": not written)
	KeyField           string
	TimestampField     string
	ValueField         string // "": count only, the sum is 0
	Window             time.Duration
	OutOfOrderness     time.Duration
	IdleTimeout        time.Duration
	CheckpointDir      string // "" turns checkpoints off
	CheckpointInterval time.Duration
	Parallelism        int
	ExactlyOnce        bool
	Bounded            bool
	Logger             *slog.Logger  // nil: slog.Default()
	LateCount          *atomic.Int64 // counts late records; nil: not counted
}

// buildJob builds the job's graph: in -> keyBy(key) -> tumbling window ->
// out, and the window's late records -> late.
func buildJob(cfg config) *weir.Env {
	opts := []weir.EnvOption{weir.Brokers(cfg.Brokers), weir.Parallelism(cfg.Parallelism)}
	if cfg.CheckpointDir != "" {
		opts = append(opts, weir.Checkpoints(cfg.CheckpointInterval, cfg.CheckpointDir))
	}
	if cfg.ExactlyOnce {
		opts = append(opts, weir.Guarantee(weir.ExactlyOnce))
	}
	if cfg.Logger != nil {
		opts = append(opts, weir.JobOptions(weir.WithLogger(cfg.Logger)))
	}
	env := weir.NewEnv("window", opts...)

	src := []weir.SourceOption{
		weir.SourceUID("in"),
		weir.FromEarliest(),
		weir.EventTime(func(e Event) int64 { return e.TS }, cfg.OutOfOrderness),
	}
	if cfg.IdleTimeout > 0 {
		src = append(src, weir.IdleTimeout(cfg.IdleTimeout))
	}
	if cfg.Bounded {
		src = append(src, weir.BoundedAtLatest())
	}
	format := eventFormat{extract: weir.JSONExtract(cfg.KeyField, cfg.TimestampField, cfg.ValueField)}
	events := weir.FromKafka(env, cfg.In, weir.Format[Event](format), src...)

	late := weir.NewOutputTag[Event]("late")
	lateN := cfg.LateCount
	if lateN == nil {
		lateN = new(atomic.Int64)
	}
	results := weir.Process(weir.KeyBy(events, func(e Event) string { return e.Key }),
		&tumblingWindow{size: cfg.Window.Milliseconds(), late: late, lateN: lateN},
		weir.UID("window"))
	weir.ToKafka(results, cfg.Out, weir.Format[Result](resultFormat{}), weir.SinkUID("out"))
	if cfg.Late != "" {
		weir.ToKafka(weir.SideOutput(results, late), cfg.Late, weir.Format[Event](format), weir.SinkUID("late"))
	}
	return env
}

// parseFlags reads the command line.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("window", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap servers, host:port[,host:port...]")
	fs.StringVar(&cfg.In, "in", "clicks", "topic to read JSON events from")
	fs.StringVar(&cfg.Out, "out", "clicks-per-user", "topic to write window results to")
	fs.StringVar(&cfg.Late, "late", "", "topic to write late records to, unchanged (\"\": drop them)")
	fs.StringVar(&cfg.KeyField, "key-field", "user", "JSON field holding the key (a string or a number)")
	fs.StringVar(&cfg.TimestampField, "timestamp-field", "ts", "JSON field holding the event time, ms since the epoch")
	fs.StringVar(&cfg.ValueField, "value-field", "amount", "numeric JSON field to sum (\"\": count only)")
	fs.DurationVar(&cfg.Window, "window", 10*time.Second, "length of each tumbling window, whole milliseconds")
	fs.DurationVar(&cfg.OutOfOrderness, "out-of-orderness", 0, "how far behind the newest event time an event may arrive and still be counted")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 0, "a partition with no records for this long stops holding back the watermark (0: never)")
	fs.StringVar(&cfg.CheckpointDir, "checkpoint-dir", "checkpoints/window", "directory of the job's checkpoints (\"\": no checkpoints)")
	fs.DurationVar(&cfg.CheckpointInterval, "checkpoint-interval", time.Second, "time between checkpoints")
	fs.IntVar(&cfg.Parallelism, "parallelism", 1, "subtasks of every operator, 1 to 128")
	fs.BoolVar(&cfg.ExactlyOnce, "exactly-once", true, "write in Kafka transactions committed on checkpoints (needs -checkpoint-dir)")
	fs.BoolVar(&cfg.Bounded, "bounded", false, "read to the end the topic has at the start, fire every window, then stop")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.Window <= 0 || cfg.Window%time.Millisecond != 0:
		return cfg, fmt.Errorf("-window %v: want a positive whole number of milliseconds", cfg.Window)
	case cfg.OutOfOrderness < 0 || cfg.IdleTimeout < 0:
		return cfg, errors.New("-out-of-orderness and -idle-timeout must not be negative")
	case cfg.ExactlyOnce && cfg.CheckpointDir == "":
		return cfg, errors.New("-exactly-once needs -checkpoint-dir (or -exactly-once=false)")
	}
	return cfg, nil
}

// run builds and runs the job and prints its counters to stdout.
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	late := new(atomic.Int64)
	cfg.LateCount = late
	job, err := buildJob(cfg).Build()
	if err != nil {
		return err
	}
	err = job.Run(ctx)
	st := job.Stats()
	fmt.Fprintf(stdout, "records in %d, late %d, records out %d, checkpoints %d (last %d), restored from %d, restarts %d\n",
		st.RecordsIn, late.Load(), st.ResultsOut, st.Checkpoints, st.LastCheckpoint, st.RestoredFrom, st.Restarts)
	return err
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "window:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, os.Stdout)
	stopped := ctx.Err() != nil
	stop()
	switch {
	case err != nil && stopped:
		fmt.Fprintln(os.Stderr, "window: stopped by signal")
	case err != nil:
		fmt.Fprintln(os.Stderr, "window:", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}
