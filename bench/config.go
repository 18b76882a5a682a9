package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/weirstream/weir/integration/broker"
)

// Config says what Run measures and where it writes.
type Config struct {
	// Events is the number of input events pre-produced per input topic.
	Events int
	// Partitions of every input and output topic.
	Partitions int
	// EventBytes is the approximate size of one JSON event; events are
	// padded with a "pad" field the jobs ignore.
	EventBytes int
	// Keys lists the key counts of the Q1 workloads (one input topic each).
	Keys []int
	// Runs is the number of timed runs per workload and system; figures
	// are those of the median run by throughput.
	Runs int
	// Parallelism of both systems' jobs.
	Parallelism int
	// CheckpointInterval of both systems (1 s in the issue).
	CheckpointInterval time.Duration
	// WindowSize of the tumbling event-time window.
	WindowSize time.Duration
	// SlidingSize and SlidingSlide are the sliding-window workload's
	// windows: SlidingSize long, one starting every SlidingSlide.
	SlidingSize, SlidingSlide time.Duration
	// SessionGap closes a session of the session-window workload.
	SessionGap time.Duration
	// JoinLower and JoinUpper bound the interval join: a left event a
	// joins the right events b of its user with
	// a.ts+JoinLower <= b.ts <= a.ts+JoinUpper.
	JoinLower, JoinUpper time.Duration
	// OutOfOrderness is the jobs' watermark bound; the generator makes
	// events late by at most half of it, so nothing is dropped as late.
	OutOfOrderness time.Duration
	// Step is how far event time advances per generated event.
	Step time.Duration
	// CheckEvents is the size of the equal-work check's input.
	CheckEvents int
	// CompareEvents and CompareStep make the input of the sliding,
	// session, interval join and dataflow workloads' equal-work check:
	// longer in event time than the timed input's first CheckEvents, so
	// that it spans several sliding windows and cuts many sessions.
	CompareEvents int
	CompareStep   time.Duration
	// Seed of the event generator.
	Seed int64
	// Flink runs the Flink peer; Ceiling runs the bare consumer; Q0 runs
	// the passthrough workload (Flink only: weir has no passthrough job).
	Flink, Ceiling, Q0 bool
	// Sliding and Session run the sliding- and session-window workloads
	// (exactly-once, keys Keys[0]); IntervalJoin times the interval join
	// too (it is in the equal-work check whenever Sliding or Session or
	// IntervalJoin is on, or Only names it).
	Sliding, Session, IntervalJoin bool
	// Dataflow runs the dataflow workload (exactly-once, keys Keys[0]):
	// written on weir's typed dataflow API, filter (amount >
	// dataflowMinAmount) -> map (amount doubled) -> keyBy user -> a keyed
	// process function whose ValueState keeps each user's running count
	// and sum, one output record per record kept; Flink runs the same
	// DataStream pipeline with a KeyedProcessFunction.
	Dataflow bool
	// Postgres runs Q1 (keys Keys[0]) with the window results written to a
	// PostgreSQL table (sink.kind: postgres) instead of Kafka, at least
	// once and exactly once (prepared transactions), on weir only (Flink's
	// JDBC exactly-once sink needs an XA data source the peer does not
	// have): a throwaway server from internal/pgtest (scripts/postgres.sh
	// finds or installs PostgreSQL).
	Postgres bool
	// Only, when not empty, keeps just these workloads (families
	// WorkloadFamilies: ceiling, q0, q1, sliding, session, interval,
	// dataflow, postgres).
	Only []string
	// FlinkJVMOpts are the JVM options of the Flink child (heap size).
	FlinkJVMOpts []string
	// BrokerJVMFlags are the Kafka broker's JVM flags (default
	// broker.BenchJVMFlags: G1 and the full JIT, 1 GiB heap).
	BrokerJVMFlags []string
	// Live runs the latency and recovery measurements: for Q0 and for Q1
	// at the first key count, each system runs unbounded over input
	// produced at LiveRate events/s; latency is measured over LiveMeasure
	// after LiveWarmup, then (with Recovery) the job is SIGKILLed and
	// restarted and the time to its first new output is measured.
	Live        bool
	Recovery    bool
	LiveRate    int
	LiveWarmup  time.Duration
	LiveMeasure time.Duration
	// RunTimeout bounds each child run.
	RunTimeout time.Duration
	// CPUProfileDir, when set, makes every timed weir run write a CPU
	// profile there (<workload>-run<N>.prof).
	CPUProfileDir string
	// Quick marks the report as a quick run.
	Quick bool

	// Self is the executable started for child runs (it must call
	// ChildMain); RepoRoot is the repository root (bench/flink is found
	// under it); OutDir receives the report (default RepoRoot/bench/results);
	// WorkDir holds broker data, checkpoints and child logs (default: a
	// fresh temporary directory, removed after the run).
	Self, RepoRoot, OutDir, WorkDir string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// DefaultConfig is the full run of `make bench`: 10^7 events per input, keys
// 10^3, 10^5 and 10^6, three runs each.
func DefaultConfig() Config {
	return Config{
		Events:             10_000_000,
		Partitions:         4,
		EventBytes:         100,
		Keys:               []int{1_000, 100_000, 1_000_000},
		Runs:               3,
		Parallelism:        2,
		CheckpointInterval: time.Second,
		WindowSize:         10 * time.Second,
		OutOfOrderness:     500 * time.Millisecond,
		Step:               100 * time.Microsecond,
		CheckEvents:        20_000,
		Seed:               1,
		Flink:              true,
		Ceiling:            true,
		Q0:                 true,
		FlinkJVMOpts:       []string{"-Xms1g", "-Xmx2g"},
		BrokerJVMFlags:     broker.BenchJVMFlags,
		RunTimeout:         30 * time.Minute,
		Live:               true,
		Recovery:           true,
		LiveRate:           20_000,
		LiveWarmup:         10 * time.Second,
		LiveMeasure:        30 * time.Second,
		// The generator's event time runs at 1/Step = 10^4 events a
		// second: a 10 s window every 5 s puts each event in two windows
		// of about 10^5 events; at keys 10^3 a key sees from about 20
		// events a second (u0) to one every few seconds (the last keys),
		// so a 1 s gap gives one long session for the frequent keys and
		// many short ones for the rare.
		Sliding:      true,
		SlidingSize:  10 * time.Second,
		SlidingSlide: 5 * time.Second,
		Session:      true,
		SessionGap:   time.Second,
		// A 400 ms band, asymmetric so that a swapped bound shows: about
		// 1.3 pairs per input event at keys 10^3 (each side half the
		// events). Checked, but timed only in the quick run: at 10^7
		// events it writes 1.3*10^7 pairs and drains at a tenth of Q1's
		// rate, an hour more for its three runs.
		IntervalJoin: false,
		JoinLower:    -100 * time.Millisecond,
		JoinUpper:    300 * time.Millisecond,
		// Half the events pass the filter: 5*10^6 output records at
		// 10^7 events, half Q0's.
		Dataflow: true,
		Postgres: true,
		// 10^5 events over 40 s of event time: eight slides, a quarter
		// of the timed input's rate per key (more sessions, about 3*10^4
		// join pairs).
		CompareEvents: 100_000,
		CompareStep:   400 * time.Microsecond,
	}
}

// QuickConfig is `make bench-quick`: 2*10^5 events, keys 10^3, one run.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Events = 200_000
	c.Keys = []int{1_000}
	c.Runs = 1
	c.CheckEvents = 20_000
	c.RunTimeout = 5 * time.Minute
	c.LiveMeasure = 20 * time.Second
	c.IntervalJoin = true
	c.Quick = true
	return c
}

func (c Config) validate() error {
	switch {
	case c.Events < 1:
		return fmt.Errorf("bench: config: events %d, want >= 1", c.Events)
	case c.Partitions < 1:
		return fmt.Errorf("bench: config: partitions %d, want >= 1", c.Partitions)
	case len(c.Keys) == 0:
		return fmt.Errorf("bench: config: no key counts")
	case c.Runs < 1:
		return fmt.Errorf("bench: config: runs %d, want >= 1", c.Runs)
	case c.Parallelism < 1:
		return fmt.Errorf("bench: config: parallelism %d, want >= 1", c.Parallelism)
	case c.CheckpointInterval < 10*time.Millisecond:
		return fmt.Errorf("bench: config: checkpoint interval %v, want >= 10ms", c.CheckpointInterval)
	case c.WindowSize < time.Millisecond:
		return fmt.Errorf("bench: config: window size %v, want >= 1ms", c.WindowSize)
	case c.Sliding && (c.SlidingSlide < time.Millisecond || c.SlidingSize < c.SlidingSlide):
		return fmt.Errorf("bench: config: sliding windows of %v every %v, want a slide >= 1ms and a size >= the slide", c.SlidingSize, c.SlidingSlide)
	case c.Session && c.SessionGap < time.Millisecond:
		return fmt.Errorf("bench: config: session gap %v, want >= 1ms", c.SessionGap)
	case c.JoinLower > c.JoinUpper:
		return fmt.Errorf("bench: config: interval join bounds [%v, %v], want lower <= upper", c.JoinLower, c.JoinUpper)
	case c.CompareEvents < 1 || c.CompareStep < 0:
		return fmt.Errorf("bench: config: compare events %d every %v, want >= 1 event and a step >= 0", c.CompareEvents, c.CompareStep)
	case c.CheckEvents < 1:
		return fmt.Errorf("bench: config: check events %d, want >= 1", c.CheckEvents)
	case c.Self == "":
		return fmt.Errorf("bench: config: Self (the executable for child runs) not set")
	case c.RepoRoot == "":
		return fmt.Errorf("bench: config: RepoRoot not set")
	case c.Live && c.LiveRate < 1:
		return fmt.Errorf("bench: config: live rate %d events/s, want >= 1", c.LiveRate)
	case c.Live && (c.LiveWarmup < 0 || c.LiveMeasure < time.Second):
		return fmt.Errorf("bench: config: live warm-up %v and measure %v, want >= 0 and >= 1s", c.LiveWarmup, c.LiveMeasure)
	case c.Live && c.LiveMeasure < c.WindowSize:
		return fmt.Errorf("bench: config: live measure %v is shorter than the window size %v: Q1's measured interval could hold no window; make it at least one window", c.LiveMeasure, c.WindowSize)
	case c.RunTimeout <= 0:
		return fmt.Errorf("bench: config: run timeout %v, want > 0", c.RunTimeout)
	}
	for _, k := range c.Keys {
		if k < 1 {
			return fmt.Errorf("bench: config: key count %d, want >= 1", k)
		}
	}
	for _, o := range c.Only {
		if !slices.Contains(WorkloadFamilies, o) {
			return fmt.Errorf("bench: config: only %q is not a workload; use %s", o, strings.Join(WorkloadFamilies, ", "))
		}
	}
	return nil
}

// WorkloadFamilies are the names Config.Only (weirbench -only) takes:
// the ceiling, Q0 passthrough, Q1 tumbling window, sliding window,
// session window, interval join and dataflow (filter, map, keyBy, keyed
// process with ValueState) workloads.
var WorkloadFamilies = []string{"ceiling", "q0", "q1", "sliding", "session", "interval", "dataflow", "postgres"}

// wants says whether the family of workloads runs: Only names it, or
// Only is empty.
func (c Config) wants(family string) bool {
	return len(c.Only) == 0 || slices.Contains(c.Only, family)
}
