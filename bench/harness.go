package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
	"github.com/weirstream/weir/internal/pgtest"
)

// Systems measured.
const (
	SystemWeir    = "weir"
	SystemFlink   = "flink"
	SystemCeiling = "ceiling"
)

// eventEpoch is the event time of the first generated event
// (2025-11-25T00:00:00Z), a multiple of every window size used.
const eventEpoch = 1764028800000

// Measurement is one timed run of one system on one workload.
type Measurement struct {
	Workload string `json:"workload"`
	System   string `json:"system"`
	Run      int    `json:"run"`
	// RecordsIn is the number of input records the run read (always
	// Config.Events); ResultsOut the results it wrote.
	RecordsIn  int64 `json:"records_in"`
	ResultsOut int64 `json:"results_out"`
	// DrainSeconds runs from the first record read to the end of the job
	// (every result committed); WallSeconds is the whole process,
	// start-up included.
	DrainSeconds float64 `json:"drain_seconds"`
	WallSeconds  float64 `json:"wall_seconds"`
	// Throughput is RecordsIn / DrainSeconds, in events per second.
	Throughput float64 `json:"throughput"`
	// ReadThroughput is RecordsIn over the time from the first to the
	// last record read: without the job's end (last windows, the final
	// checkpoint and commit), which a small input cannot amortize.
	ReadThroughput float64 `json:"read_throughput"`
	// CPUSeconds is the child's user+system time, start-up included;
	// CPUSecondsPerMillion counts only the CPU time from the first record
	// to the end (the drain), per million input events.
	CPUSeconds           float64 `json:"cpu_seconds"`
	CPUSecondsPerMillion float64 `json:"cpu_seconds_per_million"`
	PeakRSSMiB           float64 `json:"peak_rss_mib"`
	Checkpoints          int     `json:"checkpoints"`
	CheckpointP50Ms      float64 `json:"checkpoint_p50_ms"`
	CheckpointP99Ms      float64 `json:"checkpoint_p99_ms"`
	// CheckpointMs is every completed checkpoint's duration, in the order
	// they completed (with few checkpoints, p99 is the slowest: this says
	// which one it was).
	CheckpointMs []float64 `json:"checkpoint_ms,omitempty"`
}

// CheckResult is one system's outcome of the equal-work check.
type CheckResult struct {
	Workload string `json:"workload"`
	System   string `json:"system"`
	OK       bool   `json:"ok"`
	Verdict  string `json:"verdict"`
}

// modePostgres is Q1 with its results written to a PostgreSQL table.
const modePostgres = "window-postgres"

type workload struct {
	name     string
	mode     string // window, sliding, session, interval-join, dataflow, passthrough, ceiling
	keys     int
	delivery string
	// checkOnly: the workload is in the equal-work check but not timed.
	checkOnly bool
}

// comparedModes are the workloads whose equal-work check compares the
// outputs of weir and Flink record by record.
var comparedModes = []string{"sliding", "session", "interval-join", "dataflow"}

// workloads lists what cfg runs, in report order.
func workloads(cfg Config) []workload {
	var wls []workload
	if cfg.Ceiling && cfg.wants("ceiling") {
		wls = append(wls, workload{name: "ceiling (client consume)", mode: "ceiling", keys: cfg.Keys[0]})
	}
	if cfg.wants("q1") {
		for _, k := range cfg.Keys {
			for _, d := range []string{"exactly-once", "at-least-once"} {
				wls = append(wls, workload{name: fmt.Sprintf("Q1 keys=%d %s", k, d), mode: "window", keys: k, delivery: d})
			}
		}
	}
	if cfg.Q0 && cfg.wants("q0") {
		for _, d := range []string{"exactly-once", "at-least-once"} {
			wls = append(wls, workload{name: "Q0 passthrough " + d, mode: "passthrough", keys: cfg.Keys[0], delivery: d})
		}
	}
	k, eo := cfg.Keys[0], "exactly-once"
	if cfg.Sliding && cfg.wants("sliding") {
		wls = append(wls, workload{name: fmt.Sprintf("sliding %v/%v keys=%d %s", cfg.SlidingSize, cfg.SlidingSlide, k, eo), mode: "sliding", keys: k, delivery: eo})
	}
	if cfg.Session && cfg.wants("session") {
		wls = append(wls, workload{name: fmt.Sprintf("session gap=%v keys=%d %s", cfg.SessionGap, k, eo), mode: "session", keys: k, delivery: eo})
	}
	// The interval join is always checked; timed when cfg.IntervalJoin.
	if cfg.wants("interval") {
		wls = append(wls, workload{name: fmt.Sprintf("interval join %v..%v keys=%d %s", cfg.JoinLower, cfg.JoinUpper, k, eo),
			mode: "interval-join", keys: k, delivery: eo, checkOnly: !cfg.IntervalJoin})
	}
	if cfg.Dataflow && cfg.wants("dataflow") {
		wls = append(wls, workload{name: fmt.Sprintf("dataflow keys=%d %s", k, eo), mode: "dataflow", keys: k, delivery: eo})
	}
	if cfg.Postgres && cfg.wants("postgres") {
		for _, d := range []string{"exactly-once", "at-least-once"} {
			wls = append(wls, workload{name: fmt.Sprintf("Q1 into PostgreSQL keys=%d %s", k, d), mode: modePostgres, keys: k, delivery: d})
		}
	}
	return wls
}

// Run measures what cfg says and writes the report to cfg.OutDir.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(logw, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	if cfg.OutDir == "" {
		cfg.OutDir = filepath.Join(cfg.RepoRoot, "bench", "results")
	}
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "weirbench-")
		if err != nil {
			return nil, fmt.Errorf("bench: work dir: %w", err)
		}
		defer os.RemoveAll(d)
		cfg.WorkDir = d
	}
	rep := &Report{
		Date:       time.Now().UTC().Format("2006-01-02T15:04:05Z"),
		Quick:      cfg.Quick,
		Config:     reportConfig(cfg),
		Machine:    describeMachine(ctx),
		LoadBefore: loadAverage(),
	}

	var flink *flinkPeer
	if cfg.Flink {
		logf("building the Flink peer (mvn; first time downloads Flink into ~/.m2)")
		f, err := buildFlink(ctx, cfg.RepoRoot, filepath.Join(cfg.WorkDir, "logs", "mvn.log"))
		if err != nil {
			return nil, err
		}
		flink = f
		rep.Machine.Flink = f.version
	}

	logf("starting the Kafka broker")
	cl, err := broker.Start(ctx, broker.Options{Brokers: 1, Dir: filepath.Join(cfg.WorkDir, "broker"), Log: logw, JVMFlags: cfg.BrokerJVMFlags})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer cl.Stop()
	rep.Machine.Kafka = cl.Version()
	r := &runner{cfg: cfg, cl: cl, flink: flink, logf: logf}

	wls := workloads(cfg)
	if slices.ContainsFunc(wls, func(w workload) bool { return w.mode == modePostgres }) {
		logf("starting PostgreSQL")
		pg, err := pgtest.Launch()
		if err != nil {
			return nil, fmt.Errorf("bench: PostgreSQL did not start: %w", err)
		}
		defer pg.Close()
		conn, err := pgx.Connect(ctx, pg.DSN())
		if err != nil {
			return nil, fmt.Errorf("bench: PostgreSQL: %w", err)
		}
		defer conn.Close(context.Background())
		r.pg, r.pgConn = pg, conn
		logf("PostgreSQL: %s", pg.Version)
	}
	// The equal-work check: every workload on both systems over the same
	// small input, each one's read_committed output compared with the
	// independently computed expectation.
	checks, err := r.equalWork(ctx, wls)
	rep.Check = checks
	if err != nil {
		return nil, err
	}

	// The backlog: one input topic per key count of a timed workload.
	inputs := map[int]string{}
	for _, k := range cfg.Keys {
		if !slices.ContainsFunc(wls, func(w workload) bool { return w.keys == k && !w.checkOnly }) {
			continue
		}
		topic := fmt.Sprintf("in-k%d", k)
		if err := cl.CreateTopic(ctx, topic, cfg.Partitions, nil); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		g, err := verify.NewGenerator(verify.GenConfig{
			Seed: cfg.Seed, Keys: k, Partitions: cfg.Partitions, Start: eventEpoch,
			Step: cfg.Step, OutOfOrderness: cfg.OutOfOrderness / 2,
		})
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		t0 := time.Now()
		if err := produceEvents(ctx, cl.Bootstrap(), topic, cfg.Partitions, cfg.EventBytes, cfg.Events, g.Next); err != nil {
			return nil, err
		}
		d := time.Since(t0)
		logf("produced %d events (%d keys) to %s in %v (%.0f/s)", cfg.Events, k, topic, d.Round(time.Millisecond), float64(cfg.Events)/d.Seconds())
		inputs[k] = topic
	}

	for _, w := range wls {
		if w.checkOnly {
			continue
		}
		for run := 1; run <= cfg.Runs; run++ {
			for _, sys := range r.systemsFor(w) {
				m, err := r.timed(ctx, w, sys, run, inputs[w.keys])
				if err != nil {
					return nil, fmt.Errorf("bench: %s on %s, run %d: %w", w.name, sys, run, err)
				}
				logf("%-34s %-7s run %d: %10.0f events/s (read %10.0f/s)  drain %6.2fs  cpu %6.2fs  rss %6.0f MiB  ckpt p50 %.1f ms",
					w.name, sys, run, m.Throughput, m.ReadThroughput, m.DrainSeconds, m.CPUSeconds, m.PeakRSSMiB, m.CheckpointP50Ms)
				rep.Measurements = append(rep.Measurements, m)
			}
		}
		// A partial report after every workload: a run cut short
		// still leaves its figures.
		rep.Partial = true
		rep.summarize(wls, cfg)
		if err := rep.write(cfg.OutDir); err != nil {
			return nil, err
		}
	}
	if cfg.Live {
		for _, w := range wls {
			// Q0 and Q1 at the first key count only.
			if (w.mode != "window" && w.mode != "passthrough") || (w.mode == "window" && w.keys != cfg.Keys[0]) {
				continue
			}
			for _, sys := range r.systemsFor(w) {
				lm, err := r.live(ctx, w, sys)
				if err != nil {
					return nil, fmt.Errorf("bench: %s on %s, live run: %w", w.name, sys, err)
				}
				logf("%-34s %-7s live at %d/s: latency p50 %.0f ms p99 %.0f ms (%d outputs), rss %.0f MiB, recovery %.2fs",
					w.name, sys, lm.Rate, lm.LatencyP50Ms, lm.LatencyP99Ms, lm.Samples, lm.PeakRSSMiB, lm.RecoverySeconds)
				rep.Live = append(rep.Live, lm)
			}
			rep.summarize(wls, cfg)
			if err := rep.write(cfg.OutDir); err != nil {
				return nil, err
			}
		}
	}
	rep.Partial = false
	rep.LoadAfter = loadAverage()
	rep.summarize(wls, cfg)
	if err := rep.write(cfg.OutDir); err != nil {
		return nil, err
	}
	logf("report written to %s", filepath.Join(cfg.OutDir, rep.fileBase()+".md"))
	return rep, nil
}

type runner struct {
	cfg   Config
	cl    *broker.Cluster
	flink *flinkPeer
	logf  func(string, ...any)
	seq   int
	// pg is the PostgreSQL server of the modePostgres workloads.
	pg     *pgtest.Server
	pgConn *pgx.Conn
}

func (r *runner) systemsFor(w workload) []string {
	switch w.mode {
	case "ceiling":
		return []string{SystemCeiling}
	case modePostgres:
		return []string{SystemWeir}
	}
	if r.flink != nil {
		return []string{SystemWeir, SystemFlink}
	}
	return []string{SystemWeir}
}

// command returns the command line of one job of system sys reading topic
// and writing to out, and the prefix of its result line. live makes the job
// unbounded (it runs until killed); restore is the retained Flink
// checkpoint to start from (weir restores from its checkpoint dir by
// itself).
func (r *runner) command(ctx context.Context, sys, mode, delivery, topic, out, id, profile string, live bool, restore string) (*exec.Cmd, string, error) {
	ckDir := filepath.Join(r.cfg.WorkDir, "checkpoints", id)
	switch sys {
	case SystemWeir:
		a, err := json.Marshal(weirJobArgs{
			Name: "bench-" + id, Brokers: r.cl.Bootstrap(), Topic: topic, Out: out,
			Mode: mode, Delivery: delivery, Parallelism: r.cfg.Parallelism,
			CheckpointMs:  r.cfg.CheckpointInterval.Milliseconds(),
			CheckpointDir: ckDir,
			WindowMs:      r.windowMs(mode), OOOMs: r.cfg.OutOfOrderness.Milliseconds(),
			SlideMs: r.cfg.SlidingSlide.Milliseconds(), GapMs: r.cfg.SessionGap.Milliseconds(),
			LowerMs: r.cfg.JoinLower.Milliseconds(), UpperMs: r.cfg.JoinUpper.Milliseconds(),
			CPUProfile: profile, Unbounded: live,
			DSN: r.pgDSN(mode), Table: pgTable(mode, out),
		})
		if err != nil {
			return nil, "", fmt.Errorf("bench: %w", err)
		}
		return exec.CommandContext(ctx, r.cfg.Self, cmdWeirJob, string(a)), weirPrefix, nil
	case SystemCeiling:
		a, err := json.Marshal(ceilingArgs{Brokers: r.cl.Bootstrap(), Topic: topic, Parallelism: r.cfg.Parallelism})
		if err != nil {
			return nil, "", fmt.Errorf("bench: %w", err)
		}
		return exec.CommandContext(ctx, r.cfg.Self, cmdCeiling, string(a)), weirPrefix, nil
	case SystemFlink:
		return r.flink.command(ctx, r.cfg.FlinkJVMOpts, flinkArgs{
			Brokers: r.cl.Bootstrap(), Topic: topic, Out: out, Group: "flinkbench-" + id,
			Mode: mode, Delivery: delivery, TxnPrefix: "flinkbench-" + id,
			CheckpointDir: ckDir,
			Parallelism:   r.cfg.Parallelism,
			CheckpointMs:  r.cfg.CheckpointInterval.Milliseconds(),
			WindowMs:      r.windowMs(mode), OOOMs: r.cfg.OutOfOrderness.Milliseconds(),
			SlideMs: r.cfg.SlidingSlide.Milliseconds(), GapMs: r.cfg.SessionGap.Milliseconds(),
			LowerMs: r.cfg.JoinLower.Milliseconds(), UpperMs: r.cfg.JoinUpper.Milliseconds(),
			Unbounded: live, Restore: restore,
		}), flinkPrefix, nil
	}
	return nil, "", fmt.Errorf("bench: unknown system %q", sys)
}

// windowMs is the window size of mode: the sliding windows' for sliding,
// the tumbling windows' otherwise.
func (r *runner) windowMs(mode string) int64 {
	if mode == "sliding" {
		return r.cfg.SlidingSize.Milliseconds()
	}
	return r.cfg.WindowSize.Milliseconds()
}

// execJob runs one job of system sys reading topic and writing to a fresh
// output topic, and returns its output topic, result line and usage.
func (r *runner) execJob(ctx context.Context, sys, mode, delivery, topic, profile string) (string, childResult, procUsage, error) {
	r.seq++
	id := fmt.Sprintf("%s-%s-%d", sys, mode, r.seq)
	out := "out-" + id
	switch {
	case mode == modePostgres:
		if _, err := r.pgConn.Exec(ctx, "CREATE TABLE "+pgTable(mode, out)+" (key text, window_start timestamptz, window_end timestamptz, count bigint, sum double precision)"); err != nil {
			return "", childResult{}, procUsage{}, fmt.Errorf("bench: PostgreSQL: %w", err)
		}
	case sys != SystemCeiling:
		if err := r.cl.CreateTopic(ctx, out, r.cfg.Partitions, nil); err != nil {
			return "", childResult{}, procUsage{}, fmt.Errorf("bench: %w", err)
		}
	}
	logPath := filepath.Join(r.cfg.WorkDir, "logs", id+".log")
	cmd, prefix, err := r.command(ctx, sys, mode, delivery, topic, out, id, profile, false, "")
	if err != nil {
		return "", childResult{}, procUsage{}, err
	}
	stdout, u, err := runChild(ctx, cmd, logPath, r.cfg.RunTimeout)
	if err != nil {
		return "", childResult{}, procUsage{}, err
	}
	res, err := parseChildResult(stdout, prefix)
	if err != nil {
		return "", childResult{}, procUsage{}, fmt.Errorf("%w; log %s:\n%s", err, logPath, tail(logPath, 15))
	}
	return out, res, u, nil
}

// timed runs one measured run.
func (r *runner) timed(ctx context.Context, w workload, sys string, run int, topic string) (Measurement, error) {
	mode := w.mode
	if sys == SystemCeiling {
		mode = "ceiling"
	}
	profile := ""
	if sys == SystemWeir && r.cfg.CPUProfileDir != "" {
		if err := os.MkdirAll(r.cfg.CPUProfileDir, 0o755); err != nil {
			return Measurement{}, fmt.Errorf("bench: %w", err)
		}
		name := strings.NewReplacer(" ", "-", "=", "", "(", "", ")", "", "/", "-").Replace(w.name)
		profile = filepath.Join(r.cfg.CPUProfileDir, fmt.Sprintf("weir-%s-run%d.prof", name, run))
	}
	_, res, u, err := r.execJob(ctx, sys, mode, w.delivery, topic, profile)
	if err != nil {
		return Measurement{}, err
	}
	if res.RecordsIn != int64(r.cfg.Events) {
		return Measurement{}, fmt.Errorf("bench: read %d records, the backlog has %d", res.RecordsIn, r.cfg.Events)
	}
	return measurement(w.name, sys, run, res, u), nil
}

func measurement(wl, sys string, run int, res childResult, u procUsage) Measurement {
	m := Measurement{
		Workload: wl, System: sys, Run: run,
		RecordsIn: res.RecordsIn, ResultsOut: res.ResultsOut,
		DrainSeconds: float64(res.EndMs-res.FirstRecordMs) / 1000,
		WallSeconds:  u.Wall.Seconds(),
		CPUSeconds:   u.CPU.Seconds(),
		PeakRSSMiB:   float64(res.PeakRSSKiB) / 1024,
		Checkpoints:  len(res.CheckpointUs),
	}
	if m.DrainSeconds <= 0 {
		m.DrainSeconds = 0.001 // below the clock's resolution
	}
	m.Throughput = float64(res.RecordsIn) / m.DrainSeconds
	if res.LastRecordMs >= res.FirstRecordMs && res.LastRecordMs > 0 {
		m.ReadThroughput = float64(res.RecordsIn) / max(0.001, float64(res.LastRecordMs-res.FirstRecordMs)/1000)
	}
	if res.PeakRSSKiB == 0 { // not reported: the kernel's figure (may include the parent's)
		m.PeakRSSMiB = float64(u.MaxRSSKiB) / 1024
	}
	if res.RecordsIn > 0 && res.CPUMsAtEnd > 0 {
		m.CPUSecondsPerMillion = float64(res.CPUMsAtEnd-res.CPUMsAtFirst) / 1000 / (float64(res.RecordsIn) / 1e6)
	}
	ck := make([]float64, len(res.CheckpointUs))
	for i, us := range res.CheckpointUs {
		ck[i] = float64(us) / 1000
	}
	m.CheckpointP50Ms = percentile(ck, 50)
	m.CheckpointP99Ms = percentile(ck, 99)
	m.CheckpointMs = ck
	return m
}

// equalWork runs every workload of wls on every system over the same small
// input (CheckEvents events, the workload's key count) and compares each
// one's read_committed output with what the input implies: the windows of
// verify.Expected for Q1 (exactly-once: every window once; at-least-once:
// the newest value of every window), every input record once for Q0. The
// sliding, session, interval join and dataflow workloads are compared
// record by record (compareRecords): each system's output with the
// expected records, and weir's with Flink's.
func (r *runner) equalWork(ctx context.Context, wls []workload) ([]CheckResult, error) {
	type input struct {
		topic  string
		events []verify.Event
	}
	// One input per key count; the compared workloads have their own,
	// longer in event time (CompareEvents events CompareStep apart).
	type inputID struct {
		keys     int
		compared bool
	}
	inputs := map[inputID]input{}
	var out []CheckResult
	for _, w := range wls {
		if w.mode == "ceiling" {
			continue
		}
		id := inputID{w.keys, slices.Contains(comparedModes, w.mode)}
		n, step := r.cfg.CheckEvents, r.cfg.Step
		if id.compared {
			n, step = r.cfg.CompareEvents, r.cfg.CompareStep
		}
		in, ok := inputs[id]
		if !ok {
			in.topic = fmt.Sprintf("check-k%d", w.keys)
			if id.compared {
				in.topic = fmt.Sprintf("compare-k%d", w.keys)
			}
			if err := r.cl.CreateTopic(ctx, in.topic, r.cfg.Partitions, nil); err != nil {
				return nil, fmt.Errorf("bench: %w", err)
			}
			events, err := verify.Generate(verify.GenConfig{
				Seed: r.cfg.Seed, Keys: w.keys, Partitions: r.cfg.Partitions, Events: n,
				Start: eventEpoch, Step: step, OutOfOrderness: r.cfg.OutOfOrderness / 2,
			})
			if err != nil {
				return nil, fmt.Errorf("bench: %w", err)
			}
			i := 0
			next := func() verify.Event { e := events[i]; i++; return e }
			if err := produceEvents(ctx, r.cl.Bootstrap(), in.topic, r.cfg.Partitions, r.cfg.EventBytes, len(events), next); err != nil {
				return nil, err
			}
			in.events = events
			inputs[id] = in
		}
		if slices.Contains(comparedModes, w.mode) {
			res, err := r.compareRecords(ctx, w, in.topic, in.events)
			out = append(out, res...)
			if err != nil {
				return out, err
			}
			continue
		}
		for _, sys := range r.systemsFor(w) {
			outTopic, _, _, err := r.execJob(ctx, sys, w.mode, w.delivery, in.topic, "")
			if err != nil {
				return out, fmt.Errorf("bench: equal-work check of %s on %s: %w", w.name, sys, err)
			}
			var ok bool
			var verdict string
			if w.mode == "passthrough" {
				got, err := verify.ReadAll(ctx, r.cl.Bootstrap(), outTopic, verify.ReadCommitted)
				if err != nil {
					return out, fmt.Errorf("bench: equal-work check of %s on %s: %w", w.name, sys, err)
				}
				want := make([][]byte, len(in.events))
				for i, e := range in.events {
					want[i] = appendEvent(nil, e, r.cfg.EventBytes)
				}
				ok, verdict = comparePassthrough(want, got)
			} else {
				var got []verify.Result
				var err error
				if w.mode == modePostgres {
					got, err = r.pgResults(ctx, pgTable(w.mode, outTopic))
				} else {
					got, err = verify.ReadResults(ctx, r.cl.Bootstrap(), outTopic, verify.ReadCommitted)
				}
				if err != nil {
					return out, fmt.Errorf("bench: equal-work check of %s on %s: %w", w.name, sys, err)
				}
				expected := verify.Expected(in.events, r.cfg.WindowSize)
				v := verify.Compare(len(in.events), expected, got)
				if w.delivery == "at-least-once" {
					v = verify.CompareLatest(len(in.events), expected, got)
				}
				ok, verdict = v.OK, v.Report()
			}
			r.logf("equal-work check, %s on %s: %s", w.name, sys, firstLine(verdict))
			out = append(out, CheckResult{Workload: w.name, System: sys, OK: ok, Verdict: verdict})
			if !ok {
				return out, fmt.Errorf("bench: equal-work check of %s failed on %s: %s", w.name, sys, verdict)
			}
		}
	}
	return out, nil
}

// SystemsCompared is the System of the CheckResult that compares weir's
// output with Flink's record by record.
const SystemsCompared = "weir vs flink"

// compareRecords runs w (sliding, session, interval-join or dataflow) on every
// system over topic, whose records are events, and compares the outputs
// record by record: each with the records events imply, then weir's with
// Flink's. It returns one CheckResult per comparison, and an error for a
// failed run or, after every comparison, for the first failed one.
func (r *runner) compareRecords(ctx context.Context, w workload, topic string, events []verify.Event) ([]CheckResult, error) {
	var out []CheckResult
	var failed error
	check := func(sys string, ok bool, verdict string) {
		r.logf("equal-work check, %s on %s: %s", w.name, sys, firstLine(verdict))
		out = append(out, CheckResult{Workload: w.name, System: sys, OK: ok, Verdict: verdict})
		if !ok && failed == nil {
			failed = fmt.Errorf("bench: equal-work check of %s failed on %s: %s", w.name, sys, verdict)
		}
	}
	var wantPairs []joinPair
	var wantTotals []runningTotal
	var want []verify.Result
	switch w.mode {
	case "sliding":
		want = expectedSliding(events, r.cfg.SlidingSize.Milliseconds(), r.cfg.SlidingSlide.Milliseconds())
	case "session":
		want = expectedSessions(events, r.cfg.SessionGap.Milliseconds())
	case "interval-join":
		wantPairs = expectedPairs(events, r.cfg.JoinLower.Milliseconds(), r.cfg.JoinUpper.Milliseconds())
	case "dataflow":
		wantTotals = expectedTotals(events)
	}
	gotPairs := map[string][]joinPair{}
	gotTotals := map[string][]runningTotal{}
	got := map[string][]verify.Result{}
	systems := r.systemsFor(w)
	for _, sys := range systems {
		outTopic, _, _, err := r.execJob(ctx, sys, w.mode, w.delivery, topic, "")
		if err != nil {
			return out, fmt.Errorf("bench: equal-work check of %s on %s: %w", w.name, sys, err)
		}
		var ok bool
		var verdict string
		switch w.mode {
		case "interval-join":
			vals, err := verify.ReadAll(ctx, r.cl.Bootstrap(), outTopic, verify.ReadCommitted)
			if err != nil {
				return out, fmt.Errorf("bench: equal-work check of %s on %s: %w", w.name, sys, err)
			}
			ps, err := parsePairs(vals)
			if err != nil {
				return out, fmt.Errorf("bench: equal-work check of %s on %s: %w", w.name, sys, err)
			}
			gotPairs[sys] = ps
			ok, verdict = comparePairs(sys, ps, "expected", wantPairs)
		case "dataflow":
			recs, err := verify.ReadRecords(ctx, r.cl.Bootstrap(), outTopic, verify.ReadCommitted)
			if err != nil {
				return out, fmt.Errorf("bench: equal-work check of %s on %s: %w", w.name, sys, err)
			}
			ts, err := parseTotals(recs)
			if err != nil {
				return out, fmt.Errorf("bench: equal-work check of %s on %s: %w", w.name, sys, err)
			}
			gotTotals[sys] = ts
			ok, verdict = compareTotals(sys, ts, "expected", wantTotals)
		default:
			rs, err := verify.ReadResults(ctx, r.cl.Bootstrap(), outTopic, verify.ReadCommitted)
			if err != nil {
				return out, fmt.Errorf("bench: equal-work check of %s on %s: %w", w.name, sys, err)
			}
			got[sys] = rs
			ok, verdict = compareResults(sys, rs, "expected", want)
		}
		check(sys, ok, verdict)
	}
	if len(systems) < 2 {
		return out, failed
	}
	var ok bool
	var verdict string
	switch w.mode {
	case "interval-join":
		ok, verdict = comparePairs(SystemWeir, gotPairs[SystemWeir], SystemFlink, gotPairs[SystemFlink])
	case "dataflow":
		ok, verdict = compareTotals(SystemWeir, gotTotals[SystemWeir], SystemFlink, gotTotals[SystemFlink])
	default:
		ok, verdict = compareResults(SystemWeir, got[SystemWeir], SystemFlink, got[SystemFlink])
	}
	check(SystemsCompared, ok, verdict)
	return out, failed
}

// comparePassthrough compares a passthrough job's output values with its
// input values as multisets.
func comparePassthrough(want, got [][]byte) (bool, string) {
	count := make(map[string]int, len(want))
	for _, v := range want {
		count[string(v)]++
	}
	var dup, unexpected int
	for _, v := range got {
		n, ok := count[string(v)]
		switch {
		case !ok:
			unexpected++
		case n <= 0:
			dup++
		}
		if ok {
			count[string(v)] = n - 1
		}
	}
	missing := 0
	for _, n := range count {
		if n > 0 {
			missing += n
		}
	}
	ok := dup == 0 && missing == 0 && unexpected == 0
	word := "OK"
	if !ok {
		word = "FAILED"
	}
	return ok, fmt.Sprintf("verdict: passthrough %s input=%d output=%d duplicates=%d missing=%d unexpected=%d",
		word, len(want), len(got), dup, missing, unexpected)
}

// pgDSN is the PostgreSQL server's DSN for mode, "" for other modes.
func (r *runner) pgDSN(mode string) string {
	if mode != modePostgres || r.pg == nil {
		return ""
	}
	return r.pg.DSN()
}

// pgTable is the table of a modePostgres job writing "out" (its output
// topic name as a table name), "" for other modes.
func pgTable(mode, out string) string {
	if mode != modePostgres {
		return ""
	}
	return strings.ReplaceAll(out, "-", "_")
}

// pgResults reads the window results of table.
func (r *runner) pgResults(ctx context.Context, table string) ([]verify.Result, error) {
	rows, err := r.pgConn.Query(ctx, "SELECT key, window_start, window_end, count, sum FROM "+table)
	if err != nil {
		return nil, fmt.Errorf("bench: PostgreSQL: %w", err)
	}
	defer rows.Close()
	var out []verify.Result
	for rows.Next() {
		var res verify.Result
		var ws, we time.Time
		if err := rows.Scan(&res.Key, &ws, &we, &res.Count, &res.Sum); err != nil {
			return nil, fmt.Errorf("bench: PostgreSQL: %w", err)
		}
		res.WindowStart, res.WindowEnd = ws.UnixMilli(), we.UnixMilli()
		out = append(out, res)
	}
	return out, rows.Err()
}
