// Command fraud is Flink's "Fraud Detection with the DataStream API"
// walkthrough written with weir's dataflow API: it reads card transactions
// from Kafka, keys them by account, and raises an alert when a small
// transaction (below 1.00) is followed, within one minute, by a large one
// (above 500.00) on the same account.
//
//	go run ./examples/fraud -brokers 127.0.0.1:9092 -transactions transactions -alerts alerts
//
// A transaction is the JSON object {"account_id":42,"amount":0.5,"ts":1714564800000}
// (ts: milliseconds since the epoch); an alert is
// {"account_id":42,"ts":1714564830000,"amount":725.3}, with the account id
// as the record key and the time and amount of the large transaction.
//
// The detector is the tutorial's final FraudDetector: a KeyedProcessFunction
// with a ValueState[bool] flag that a small transaction sets, a timer that
// clears the flag one minute later, and a ValueState[int64] holding the
// timer's time so that the timer is deleted when the flag is cleared early.
//
// One difference: Flink's tutorial sets the timer in processing time
// (wall clock + 1 minute), so whether an alert is raised depends on when
// the records happen to be processed. Here the source takes each
// transaction's event time from its ts field (weir.EventTime) and the timer
// is an event-time timer at ts + 60000 ms, so the alerts depend only on the
// input: reading the same topic again gives the same alerts. As a timer
// fires only once the watermark passes it, and the watermark trails the
// newest transaction by the out-of-orderness, a transaction whose ts is a
// minute or more after the small one may be processed before the timer has
// fired: the detector compares the times itself and raises no alert then.
//
// Without -bounded the job runs until SIGINT or SIGTERM, which cancel it
// (with -exactly-once, a restart resumes from the latest checkpoint in
// -checkpoint-dir and the uncommitted tail is written again, once). With
// -bounded it reads the transactions up to the end the topic has at the
// start, writes every alert and exits. Either way it prints the job's
// counters last.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weirstream/weir"
)

// Transaction is one card transaction, as read from the input topic.
type Transaction struct {
	AccountID int64   `json:"account_id"`
	Amount    float64 `json:"amount"`
	TS        int64   `json:"ts"` // event time, ms since the epoch
}

// Alert says that a large transaction followed a small one within a minute.
type Alert struct {
	AccountID int64   `json:"account_id"`
	TS        int64   `json:"ts"`     // time of the large transaction
	Amount    float64 `json:"amount"` // amount of the large transaction
}

// The tutorial's thresholds.
const (
	smallAmount = 1.00
	largeAmount = 500.00
	oneMinute   = 60 * 1000 // ms
)

// fraudDetector is the tutorial's FraudDetector. weir gives every subtask
// its own copy of the struct, whose Open fills in the state handles;
// the states are scoped to the account of the transaction being handled.
type fraudDetector struct {
	flag  *weir.ValueState[bool]  // set after a small transaction
	timer *weir.ValueState[int64] // the time of the timer that clears flag
}

func (d *fraudDetector) Open(ctx *weir.OpenContext) error {
	var err error
	if d.flag, err = weir.ValueStateOf[bool](ctx, "flag"); err != nil {
		return err
	}
	d.timer, err = weir.ValueStateOf[int64](ctx, "timer-state")
	return err
}

func (d *fraudDetector) OnElement(ctx *weir.Context[Alert], t Transaction) error {
	if _, set := d.flag.Value(); set {
		// The previous transaction of this account was small. The timer
		// clears the flag once the watermark passes it; until then the
		// times are compared here, so the result never depends on how far
		// the watermark has got.
		if at, _ := d.timer.Value(); t.Amount > largeAmount && t.TS < at {
			ctx.Emit(Alert{AccountID: t.AccountID, TS: t.TS, Amount: t.Amount})
		}
		d.cleanUp(ctx)
	}
	if t.Amount < smallAmount {
		at := t.TS + oneMinute
		d.flag.Update(true)
		ctx.RegisterEventTimer(at)
		d.timer.Update(at)
	}
	return nil
}

// OnTimer clears the flag one minute (of event time) after the small
// transaction that set it.
func (d *fraudDetector) OnTimer(ctx *weir.Context[Alert], ts int64) error {
	d.timer.Clear()
	d.flag.Clear()
	return nil
}

// cleanUp deletes the pending timer and clears the state.
func (d *fraudDetector) cleanUp(ctx *weir.Context[Alert]) {
	if at, ok := d.timer.Value(); ok {
		ctx.DeleteEventTimer(at)
	}
	d.timer.Clear()
	d.flag.Clear()
}

// config is what the flags set.
type config struct {
	Brokers            string
	Transactions       string // input topic
	Alerts             string // output topic
	CheckpointDir      string // "" turns checkpoints off
	CheckpointInterval time.Duration
	Parallelism        int
	ExactlyOnce        bool
	Bounded            bool
	OutOfOrderness     time.Duration
	Logger             *slog.Logger // nil: slog.Default()
}

func accountKey(t Transaction) string { return strconv.FormatInt(t.AccountID, 10) }

// buildJob builds the job's graph: transactions -> keyBy(account) ->
// fraud detector -> alerts. Every stateful operator, the source and the
// sink have a UID, which names their state in checkpoints.
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
	env := weir.NewEnv("fraud-detection", opts...)

	src := []weir.SourceOption{
		weir.SourceUID("transactions"),
		weir.FromEarliest(), // when there is no checkpoint to resume from
		weir.EventTime(func(t Transaction) int64 { return t.TS }, cfg.OutOfOrderness),
	}
	if cfg.Bounded {
		src = append(src, weir.BoundedAtLatest())
	}
	transactions := weir.FromKafka(env, cfg.Transactions, weir.JSON[Transaction](), src...)
	alerts := weir.Process(weir.KeyBy(transactions, accountKey), &fraudDetector{},
		weir.UID("fraud-detector"), weir.Name("fraud detector"))
	weir.ToKafka(alerts, cfg.Alerts,
		weir.KeyedJSON(func(a Alert) string { return strconv.FormatInt(a.AccountID, 10) }),
		weir.SinkUID("alerts"))
	return env
}

// parseFlags reads the command line.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("fraud", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap servers, host:port[,host:port...]")
	fs.StringVar(&cfg.Transactions, "transactions", "transactions", "topic to read transactions from")
	fs.StringVar(&cfg.Alerts, "alerts", "alerts", "topic to write alerts to")
	fs.StringVar(&cfg.CheckpointDir, "checkpoint-dir", "checkpoints/fraud", "directory of the job's checkpoints (\"\": no checkpoints)")
	fs.DurationVar(&cfg.CheckpointInterval, "checkpoint-interval", time.Second, "time between checkpoints")
	fs.IntVar(&cfg.Parallelism, "parallelism", 1, "subtasks of every operator, 1 to 128")
	fs.BoolVar(&cfg.ExactlyOnce, "exactly-once", true, "write alerts in Kafka transactions committed on checkpoints (needs -checkpoint-dir)")
	fs.BoolVar(&cfg.Bounded, "bounded", false, "read to the end the topic has at the start, then stop")
	fs.DurationVar(&cfg.OutOfOrderness, "out-of-orderness", time.Second, "how far behind the newest transaction the watermark trails")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.ExactlyOnce && cfg.CheckpointDir == "" {
		return cfg, errors.New("-exactly-once needs -checkpoint-dir (or -exactly-once=false)")
	}
	return cfg, nil
}

// run builds and runs the job and prints its counters to stdout.
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	job, err := buildJob(cfg).Build()
	if err != nil {
		return err
	}
	err = job.Run(ctx)
	st := job.Stats()
	fmt.Fprintf(stdout, "transactions in %d, alerts out %d, checkpoints %d (last %d), restored from %d, restarts %d\n",
		st.RecordsIn, st.ResultsOut, st.Checkpoints, st.LastCheckpoint, st.RestoredFrom, st.Restarts)
	return err
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "fraud:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, os.Stdout)
	stopped := ctx.Err() != nil
	stop()
	switch {
	case err != nil && stopped:
		fmt.Fprintln(os.Stderr, "fraud: stopped by signal")
	case err != nil:
		fmt.Fprintln(os.Stderr, "fraud:", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}
