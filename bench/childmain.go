package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/rdk"
)

// The hidden subcommands a child run is started with: <self> <name> <json>.
const (
	cmdWeirJob = "weir-job"
	cmdCeiling = "ceiling"
)

// weirJobArgs is the JSON argument of the weir-job child.
type weirJobArgs struct {
	Name          string `json:"name"`
	Brokers       string `json:"brokers"`
	Topic         string `json:"topic"`
	Out           string `json:"out"`
	Mode          string `json:"mode"`     // window, sliding, session, interval-join, dataflow or passthrough
	Delivery      string `json:"delivery"` // exactly-once or at-least-once
	Parallelism   int    `json:"parallelism"`
	CheckpointMs  int64  `json:"checkpoint_ms"`
	CheckpointDir string `json:"checkpoint_dir"`
	WindowMs      int64  `json:"window_ms"`
	OOOMs         int64  `json:"ooo_ms"`
	// SlideMs is the slide of the sliding windows (of WindowMs), GapMs the
	// gap of the session windows, LowerMs and UpperMs the bounds of the
	// interval join.
	SlideMs int64 `json:"slide_ms,omitempty"`
	GapMs   int64 `json:"gap_ms,omitempty"`
	LowerMs int64 `json:"lower_ms,omitempty"`
	UpperMs int64 `json:"upper_ms,omitempty"`
	// CPUProfile, when set, is where the run writes its CPU profile
	// (runtime/pprof), from the job's start to its end.
	CPUProfile string `json:"cpu_profile,omitempty"`
	// Unbounded makes the job read on until it is killed (live runs).
	Unbounded bool `json:"unbounded,omitempty"`
	// DSN and Table are the PostgreSQL sink of mode window-postgres.
	DSN   string `json:"dsn,omitempty"`
	Table string `json:"table,omitempty"`
}

// ceilingArgs is the JSON argument of the ceiling child.
type ceilingArgs struct {
	Brokers     string `json:"brokers"`
	Topic       string `json:"topic"`
	Parallelism int    `json:"parallelism"`
}

// ChildMain runs a child run when args (os.Args[1:]) name one of the hidden
// subcommands, printing its result line on stdout, and returns handled =
// true with the run's error; the caller must then exit (non-zero on error).
// For any other args it returns false and does nothing.
func ChildMain(args []string) (handled bool, err error) {
	if len(args) == 0 || (args[0] != cmdWeirJob && args[0] != cmdCeiling) {
		return false, nil
	}
	if len(args) != 2 {
		return true, fmt.Errorf("%w: %s <json>", errUsage, args[0])
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var r childResult
	switch args[0] {
	case cmdWeirJob:
		var a weirJobArgs
		if err := json.Unmarshal([]byte(args[1]), &a); err != nil {
			return true, fmt.Errorf("bench: weir-job arguments: %w", err)
		}
		r, err = runWeirJob(ctx, a)
	case cmdCeiling:
		var a ceilingArgs
		if err := json.Unmarshal([]byte(args[1]), &a); err != nil {
			return true, fmt.Errorf("bench: ceiling arguments: %w", err)
		}
		r, err = runCeiling(ctx, a)
	}
	if err != nil {
		return true, err
	}
	line, err := json.Marshal(r)
	if err != nil {
		return true, fmt.Errorf("bench: encode child result: %w", err)
	}
	fmt.Printf("%s%s\n", weirPrefix, line)
	return true, nil
}

// checkpointTimes is a slog handler that keeps the "took" of every
// "checkpoint complete" record of the job supervisor and passes warnings
// and errors on to stderr.
type checkpointTimes struct {
	next slog.Handler
	mu   *sync.Mutex
	took *[]time.Duration
}

func newCheckpointTimes() checkpointTimes {
	// WEIRBENCH_LOG=debug|info makes the child's log (in the work dir's
	// logs/) verbose, for looking into a run; the default is warnings.
	level := slog.LevelWarn
	switch os.Getenv("WEIRBENCH_LOG") {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	}
	return checkpointTimes{
		next: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}),
		mu:   new(sync.Mutex),
		took: new([]time.Duration),
	}
}

func (h checkpointTimes) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h checkpointTimes) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "checkpoint complete" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "took" && a.Value.Kind() == slog.KindDuration {
				h.mu.Lock()
				*h.took = append(*h.took, a.Value.Duration())
				h.mu.Unlock()
				return false
			}
			return true
		})
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h checkpointTimes) WithAttrs(as []slog.Attr) slog.Handler {
	h.next = h.next.WithAttrs(as)
	return h
}

func (h checkpointTimes) WithGroup(name string) slog.Handler {
	h.next = h.next.WithGroup(name)
	return h
}

func (h checkpointTimes) durations() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]int64, len(*h.took))
	for i, d := range *h.took {
		out[i] = d.Microseconds()
	}
	return out
}

// benchEvent is an input event as the dataflow job reads it (the "pad"
// field is ignored).
type benchEvent struct {
	User   string `json:"user"`
	TS     int64  `json:"ts"`
	Amount int64  `json:"amount"`
	Seq    int64  `json:"seq"`
}

// joinPair is one result of the interval join workload, on both systems:
// {"user":"u1","l":2,"r":5,"lt":...,"rt":...} (left and right seq and
// event time), the user as record key.
type joinPair struct {
	User string `json:"user"`
	L    int64  `json:"l"`
	R    int64  `json:"r"`
	LT   int64  `json:"lt"`
	RT   int64  `json:"rt"`
}

// weirIntervalJoin builds the interval join workload with the dataflow
// API: a.Topic read once with event time from ts (watermark bound
// a.OOOMs), split by seq parity (left even, right odd), both sides keyed
// by user and joined with a.ts+LowerMs <= b.ts <= a.ts+UpperMs.
func weirIntervalJoin(a weirJobArgs, opts ...weir.Option) (*weir.Job, error) {
	envOpts := []weir.EnvOption{
		weir.Brokers(a.Brokers), weir.Parallelism(a.Parallelism), weir.Guarantee(weir.Delivery(a.Delivery)),
	}
	if a.CheckpointMs > 0 {
		envOpts = append(envOpts, weir.Checkpoints(time.Duration(a.CheckpointMs)*time.Millisecond, a.CheckpointDir))
	}
	env := weir.NewEnv(a.Name, envOpts...)
	srcOpts := []weir.SourceOption{
		weir.FromEarliest(),
		weir.EventTime(func(e benchEvent) int64 { return e.TS }, time.Duration(a.OOOMs)*time.Millisecond),
		weir.SourceUID("events"),
	}
	if !a.Unbounded {
		srcOpts = append(srcOpts, weir.BoundedAtLatest())
	}
	events := weir.FromKafka(env, a.Topic, weir.JSON[benchEvent](), srcOpts...)
	user := func(e benchEvent) string { return e.User }
	left := weir.KeyBy(weir.Filter(events, func(e benchEvent) bool { return e.Seq%2 == 0 }, weir.UID("left")), user)
	right := weir.KeyBy(weir.Filter(events, func(e benchEvent) bool { return e.Seq%2 != 0 }, weir.UID("right")), user)
	pairs := weir.IntervalJoin(left, right,
		time.Duration(a.LowerMs)*time.Millisecond, time.Duration(a.UpperMs)*time.Millisecond,
		func(l, r benchEvent) joinPair {
			return joinPair{User: l.User, L: l.Seq, R: r.Seq, LT: l.TS, RT: r.TS}
		}, weir.UID("join"))
	weir.ToKafka(pairs, a.Out, weir.KeyedJSON(func(p joinPair) string { return p.User }), weir.SinkUID("out"))
	return env.Build(opts...)
}

// doubled is what the dataflow workload's Map makes of an event it kept.
type doubled struct {
	User  string
	Seq   int64
	Value int64 // the amount doubled
}

// runningTotal is one result of the dataflow workload, on both systems:
// {"user":"u1","seq":42,"count":3,"sum":120}, the user's count and sum of
// doubled amounts up to and including the event seq, the user as record
// key.
type runningTotal struct {
	User  string `json:"user"`
	Seq   int64  `json:"seq"`
	Count int64  `json:"count"`
	Sum   int64  `json:"sum"`
}

// totals is the dataflow workload's keyed process function: a ValueState
// per user holds the running count and sum, and every value emits them.
type totals struct {
	acc *weir.ValueState[countSum]
}

// countSum is the state of totals (exported fields: it is checkpointed as
// JSON).
type countSum struct {
	Count, Sum int64
}

func (t *totals) Open(ctx *weir.OpenContext) error {
	var err error
	t.acc, err = weir.ValueStateOf[countSum](ctx, "count-sum")
	return err
}

func (t *totals) OnElement(ctx *weir.Context[runningTotal], d doubled) error {
	cs, _ := t.acc.Value()
	cs.Count++
	cs.Sum += d.Value
	t.acc.Update(cs)
	ctx.Emit(runningTotal{User: d.User, Seq: d.Seq, Count: cs.Count, Sum: cs.Sum})
	return nil
}

func (t *totals) OnTimer(*weir.Context[runningTotal], int64) error { return nil }

// weirDataflow builds the dataflow workload with the dataflow API:
// a.Topic read (processing time: no event time, no watermarks), Filter
// amount > dataflowMinAmount, Map to doubled, KeyBy user, Process with
// totals, ToKafka.
func weirDataflow(a weirJobArgs, opts ...weir.Option) (*weir.Job, error) {
	envOpts := []weir.EnvOption{
		weir.Brokers(a.Brokers), weir.Parallelism(a.Parallelism), weir.Guarantee(weir.Delivery(a.Delivery)),
	}
	if a.CheckpointMs > 0 {
		envOpts = append(envOpts, weir.Checkpoints(time.Duration(a.CheckpointMs)*time.Millisecond, a.CheckpointDir))
	}
	env := weir.NewEnv(a.Name, envOpts...)
	srcOpts := []weir.SourceOption{weir.FromEarliest(), weir.SourceUID("events")}
	if !a.Unbounded {
		srcOpts = append(srcOpts, weir.BoundedAtLatest())
	}
	events := weir.FromKafka(env, a.Topic, weir.JSON[benchEvent](), srcOpts...)
	kept := weir.Filter(events, func(e benchEvent) bool { return e.Amount > dataflowMinAmount }, weir.UID("filter"))
	ds := weir.Map(kept, func(e benchEvent) doubled { return doubled{User: e.User, Seq: e.Seq, Value: 2 * e.Amount} }, weir.UID("map"))
	out := weir.Process(weir.KeyBy(ds, func(d doubled) string { return d.User }), &totals{}, weir.UID("totals"))
	weir.ToKafka(out, a.Out, weir.KeyedJSON(func(t runningTotal) string { return t.User }), weir.SinkUID("out"))
	return env.Build(opts...)
}

// weirJobSpec is the job file's form of the window workloads (window,
// sliding, session) and of the passthrough.
func weirJobSpec(a weirJobArgs) (weir.JobSpec, error) {
	spec := weir.JobSpec{
		Name:    a.Name,
		Brokers: a.Brokers,
		Source: weir.SourceSpec{
			Topic:   a.Topic,
			Start:   weir.StartSpec{Mode: weir.StartEarliest},
			Bounded: weir.BoundLatest,
		},
		KeyField:       "user",
		TimestampField: "ts",
		Window: weir.WindowSpec{
			Size:           time.Duration(a.WindowMs) * time.Millisecond,
			OutOfOrderness: time.Duration(a.OOOMs) * time.Millisecond,
		},
		Aggregate:   weir.AggregateSpec{ValueField: "amount"},
		Sink:        weir.SinkSpec{Topic: a.Out, TransactionalIDPrefix: "weirbench"},
		Delivery:    weir.Delivery(a.Delivery),
		Parallelism: a.Parallelism,
	}
	if a.Unbounded {
		spec.Source.Bounded = weir.Unbounded
	}
	switch a.Mode {
	case "window", "":
	case modePostgres:
		spec.Sink = weir.SinkSpec{Kind: weir.SinkPostgres, DSN: a.DSN, Table: a.Table}
	case "sliding":
		spec.Window.Kind = weir.WindowSliding
		spec.Window.Slide = time.Duration(a.SlideMs) * time.Millisecond
	case "session":
		spec.Window.Kind = weir.WindowSession
		spec.Window.Size = 0
		spec.Window.Gap = time.Duration(a.GapMs) * time.Millisecond
	case "passthrough":
		spec.Kind = weir.KindPassthrough
		spec.KeyField, spec.TimestampField = "", ""
		spec.Window, spec.Aggregate = weir.WindowSpec{}, weir.AggregateSpec{}
	default:
		return spec, fmt.Errorf("bench: weir job: mode %q: want window, sliding, session, interval-join, dataflow or passthrough", a.Mode)
	}
	if a.CheckpointMs > 0 {
		spec.Checkpoint = weir.CheckpointSpec{Interval: time.Duration(a.CheckpointMs) * time.Millisecond, Dir: a.CheckpointDir}
	}
	return spec, nil
}

// runWeirJob runs weir's job of a.Mode (the window workloads and the
// passthrough from a JobSpec, the interval join and the dataflow workload
// from the dataflow API)
// over the backlog of a.Topic (from the earliest offsets to the end
// offsets at start) and reports when the first record was read and when
// the job ended.
func runWeirJob(ctx context.Context, a weirJobArgs) (childResult, error) {
	start := time.Now()
	h := newCheckpointTimes()
	var job *weir.Job
	switch a.Mode {
	case "interval-join":
		j, err := weirIntervalJoin(a, weir.WithLogger(slog.New(h)))
		if err != nil {
			return childResult{}, fmt.Errorf("bench: weir interval join: %w", err)
		}
		job = j
	case "dataflow":
		j, err := weirDataflow(a, weir.WithLogger(slog.New(h)))
		if err != nil {
			return childResult{}, fmt.Errorf("bench: weir dataflow job: %w", err)
		}
		job = j
	default:
		spec, err := weirJobSpec(a)
		if err != nil {
			return childResult{}, err
		}
		j, err := weir.NewJob(spec, weir.WithLogger(slog.New(h)))
		if err != nil {
			return childResult{}, fmt.Errorf("bench: weir job: %w", err)
		}
		job = j
	}
	if a.CPUProfile != "" {
		f, err := os.Create(a.CPUProfile)
		if err != nil {
			return childResult{}, fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return childResult{}, fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	// Note when the first record is read and when the count of records
	// read last grew: poll the job's counter.
	var first, last, cpuFirst atomic.Int64
	pollDone := make(chan struct{})
	stopPoll := make(chan struct{})
	go func() {
		defer close(pollDone)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		var seen int64
		for {
			select {
			case <-stopPoll:
				return
			case <-t.C:
				n := job.Stats().RecordsIn
				if n > seen {
					now := time.Now().UnixMilli()
					if seen == 0 {
						first.Store(now)
						cpuFirst.Store(selfCPUMs())
					}
					if hp := os.Getenv("WEIRBENCH_HEAPPROFILE"); hp != "" && seen < 100_000 && n >= 100_000 {
						// Looking into memory: the heap after 10^5 records.
						writeHeapProfile(hp)
					}
					seen = n
					last.Store(now)
				}
			}
		}
	}()
	err := job.Run(ctx)
	end := time.Now()
	close(stopPoll)
	<-pollDone
	if err != nil {
		return childResult{}, fmt.Errorf("bench: weir job: %w", err)
	}
	st := job.Stats()
	return childResult{
		StartMs:       start.UnixMilli(),
		FirstRecordMs: first.Load(),
		LastRecordMs:  last.Load(),
		EndMs:         end.UnixMilli(),
		RecordsIn:     st.RecordsIn,
		ResultsOut:    st.ResultsOut,
		CheckpointUs:  h.durations(),
		CPUMsAtFirst:  cpuFirst.Load(),
		CPUMsAtEnd:    selfCPUMs(),
		PeakRSSKiB:    selfPeakRSSKiB(),
	}, nil
}

// writeHeapProfile writes the heap profile to path (best effort: the run
// goes on without it).
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: heap profile: %v\n", err)
		return
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		fmt.Fprintf(os.Stderr, "bench: heap profile: %v\n", err)
	}
}

// runCeiling reads a.Topic from the earliest offsets to the end offsets at
// start with bare confluent-kafka-go consumers (a.Parallelism of them, the
// partitions dealt out as the jobs' sources do, read_committed, read in
// batches through internal/rdk as weir's source reads, no processing) and
// reports when the first and last records arrived.
func runCeiling(ctx context.Context, a ceilingArgs) (childResult, error) {
	start := time.Now()
	conf := func(i int) *kafka.ConfigMap {
		return &kafka.ConfigMap{
			"bootstrap.servers":   a.Brokers,
			"group.id":            fmt.Sprintf("weirbench-ceiling-%d-%d", start.UnixNano(), i),
			"enable.auto.commit":  false,
			"isolation.level":     "read_committed",
			"enable.metrics.push": false,
			// The client's best setting for draining a backlog (the
			// default, 1000, pauses a partition whose fetch queue is full
			// for up to a second): the ceiling is the client at its best.
			"fetch.queue.backoff.ms": 5,
		}
	}
	meta, err := kafka.NewConsumer(conf(-1))
	if err != nil {
		return childResult{}, fmt.Errorf("bench: ceiling: consumer: %w", err)
	}
	md, err := meta.GetMetadata(&a.Topic, false, 10_000)
	if err != nil {
		meta.Close()
		return childResult{}, fmt.Errorf("bench: ceiling: metadata: %w", err)
	}
	tm, ok := md.Topics[a.Topic]
	if !ok || len(tm.Partitions) == 0 {
		meta.Close()
		return childResult{}, fmt.Errorf("bench: ceiling: topic %q has no partitions", a.Topic)
	}
	par := max(1, a.Parallelism)
	ends := make([]map[int32]int64, par)
	for i := range ends {
		ends[i] = map[int32]int64{}
	}
	for _, p := range tm.Partitions {
		_, high, err := meta.QueryWatermarkOffsets(a.Topic, p.ID, 10_000)
		if err != nil {
			meta.Close()
			return childResult{}, fmt.Errorf("bench: ceiling: end offset of partition %d: %w", p.ID, err)
		}
		if high > 0 {
			ends[int(p.ID)%par][p.ID] = high
		}
	}
	meta.Close()

	var (
		records  atomic.Int64
		first    atomic.Int64
		cpuFirst atomic.Int64
		wg       sync.WaitGroup
		errs     = make(chan error, par)
	)
	for i := 0; i < par; i++ {
		if len(ends[i]) == 0 {
			continue
		}
		wg.Add(1)
		go func(i int, end map[int32]int64) {
			defer wg.Done()
			if err := consumeToEnd(ctx, conf(i), a.Topic, end, func() {
				if records.Add(1) == 1 {
					first.Store(time.Now().UnixMilli())
					cpuFirst.Store(selfCPUMs())
				}
			}); err != nil {
				errs <- err
			}
		}(i, ends[i])
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return childResult{}, err
	}
	now := time.Now().UnixMilli()
	return childResult{
		StartMs: start.UnixMilli(), FirstRecordMs: first.Load(), LastRecordMs: now, EndMs: now,
		RecordsIn: records.Load(), CPUMsAtFirst: cpuFirst.Load(), CPUMsAtEnd: selfCPUMs(), PeakRSSKiB: selfPeakRSSKiB(),
	}, nil
}

// consumeToEnd reads the partitions of end from their beginning up to
// their end offsets with one consumer, calling onRecord for each record.
func consumeToEnd(ctx context.Context, conf *kafka.ConfigMap, topic string, end map[int32]int64, onRecord func()) error {
	c, err := kafka.NewConsumer(conf)
	if err != nil {
		return fmt.Errorf("bench: ceiling: consumer: %w", err)
	}
	defer c.Close()
	var (
		assign []kafka.TopicPartition
		parts  []int32
	)
	for p := range end {
		assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.OffsetBeginning})
		parts = append(parts, p)
	}
	// The client at its best: through the batch reader weir's source uses
	// (internal/rdk, its partitions routed as the source routes them), or
	// the client's Poll where it cannot attach.
	rd, err := rdk.AttachConsumer(c)
	if err == nil {
		defer rd.Close()
		if err := rd.Route(topic, parts); err != nil {
			return fmt.Errorf("bench: ceiling: %w", err)
		}
	}
	if err := c.Assign(assign); err != nil {
		return fmt.Errorf("bench: ceiling: assign: %w", err)
	}
	if rd != nil {
		var batch []rdk.Entry
		for len(end) > 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("bench: ceiling: %d partitions not read to the end: %w", len(end), err)
			}
			if batch, err = rd.Poll(100*time.Millisecond, 4096, batch[:0]); err != nil {
				return fmt.Errorf("bench: ceiling: %w", err)
			}
			for _, e := range batch {
				switch e.Kind {
				case rdk.Record:
					onRecord()
					if x, ok := end[e.Partition]; ok && e.Offset+1 >= x {
						delete(end, e.Partition)
					}
				case rdk.Error:
					var ke kafka.Error
					if errors.As(e.Err, &ke) && ke.IsFatal() {
						return fmt.Errorf("bench: ceiling: %w", e.Err)
					}
				}
			}
		}
		return nil
	}
	for len(end) > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bench: ceiling: %d partitions not read to the end: %w", len(end), err)
		}
		switch ev := c.Poll(100).(type) {
		case *kafka.Message:
			if ev.TopicPartition.Error != nil {
				return fmt.Errorf("bench: ceiling: %w", ev.TopicPartition.Error)
			}
			onRecord()
			p := ev.TopicPartition.Partition
			if e, ok := end[p]; ok && int64(ev.TopicPartition.Offset)+1 >= e {
				delete(end, p)
			}
		case kafka.Error:
			if ev.IsFatal() {
				return fmt.Errorf("bench: ceiling: %w", ev)
			}
		}
	}
	return nil
}
