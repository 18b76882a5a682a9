package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is everything one Run measured; it is written as JSON and
// Markdown.
type Report struct {
	Date  string `json:"date"`
	Quick bool   `json:"quick"`
	// Partial marks a report written while the run was still going.
	Partial      bool          `json:"partial,omitempty"`
	Config       ReportConfig  `json:"config"`
	Machine      Machine       `json:"machine"`
	LoadBefore   string        `json:"load_before"`
	LoadAfter    string        `json:"load_after"`
	Check        []CheckResult `json:"equal_work_check"`
	Measurements []Measurement `json:"measurements"`
	// Live holds the latency and recovery runs.
	Live      []LiveMeasurement `json:"live,omitempty"`
	Summaries []Summary         `json:"summaries"`
	Skipped   []string          `json:"skipped"`
	// Notes are caveats of the setup that the figures depend on.
	Notes []string `json:"notes"`
	// MarkdownPath is where write put the Markdown report.
	MarkdownPath string `json:"-"`
}

// ReportConfig is the part of Config the figures depend on.
type ReportConfig struct {
	Events             int    `json:"events"`
	Partitions         int    `json:"partitions"`
	EventBytes         int    `json:"event_bytes"`
	Keys               []int  `json:"keys"`
	Runs               int    `json:"runs"`
	Parallelism        int    `json:"parallelism"`
	CheckpointInterval string `json:"checkpoint_interval"`
	WindowSize         string `json:"window_size"`
	OutOfOrderness     string `json:"out_of_orderness"`
	FlinkJVMOpts       string `json:"flink_jvm_opts"`
	// The sliding windows (size every slide), the session gap and the
	// interval join's bounds.
	SlidingSize  string `json:"sliding_size,omitempty"`
	SlidingSlide string `json:"sliding_slide,omitempty"`
	SessionGap   string `json:"session_gap,omitempty"`
	JoinLower    string `json:"join_lower,omitempty"`
	JoinUpper    string `json:"join_upper,omitempty"`
	// The input of the record-by-record comparison: events, and its
	// span of event time.
	CompareEvents int    `json:"compare_events,omitempty"`
	CompareSpan   string `json:"compare_span,omitempty"`
}

func reportConfig(c Config) ReportConfig {
	return ReportConfig{
		Events: c.Events, Partitions: c.Partitions, EventBytes: c.EventBytes, Keys: c.Keys,
		Runs: c.Runs, Parallelism: c.Parallelism,
		CheckpointInterval: c.CheckpointInterval.String(), WindowSize: c.WindowSize.String(),
		OutOfOrderness: c.OutOfOrderness.String(), FlinkJVMOpts: strings.Join(c.FlinkJVMOpts, " "),
		SlidingSize: c.SlidingSize.String(), SlidingSlide: c.SlidingSlide.String(), SessionGap: c.SessionGap.String(),
		JoinLower: c.JoinLower.String(), JoinUpper: c.JoinUpper.String(),
		CompareEvents: c.CompareEvents, CompareSpan: (time.Duration(c.CompareEvents) * c.CompareStep).String(),
	}
}

// Machine describes where the figures were measured.
type Machine struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	MemoryGB string `json:"memory_gb"`
	OS       string `json:"os"`
	Go       string `json:"go"`
	Java     string `json:"java"`
	Kafka    string `json:"kafka"`
	Flink    string `json:"flink"`
}

func describeMachine(ctx context.Context) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryGB = fmt.Sprintf("%.1f", float64(kb)/(1<<20))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "java", "-version").CombinedOutput(); err == nil {
		m.Java = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	return m
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Summary is one workload on one system: the median run's figures.
type Summary struct {
	Workload string `json:"workload"`
	System   string `json:"system"`
	Runs     int    `json:"runs"`
	// Throughput is the median over the runs; the other figures are the
	// median run's.
	Throughput           float64 `json:"throughput"`
	ReadThroughput       float64 `json:"read_throughput"`
	CPUSecondsPerMillion float64 `json:"cpu_seconds_per_million"`
	PeakRSSMiB           float64 `json:"peak_rss_mib"`
	CheckpointP50Ms      float64 `json:"checkpoint_p50_ms"`
	CheckpointP99Ms      float64 `json:"checkpoint_p99_ms"`
	// From the live run, when there was one (0: not measured).
	LatencyP50Ms    float64 `json:"latency_p50_ms,omitempty"`
	LatencyP99Ms    float64 `json:"latency_p99_ms,omitempty"`
	RecoverySeconds float64 `json:"recovery_seconds,omitempty"`
	LiveRSSMiB      float64 `json:"live_rss_mib,omitempty"`
	// VsFlink and VsCeiling are weir's throughput over Flink's and over
	// the ceiling's (weir rows only; 0 when not measured). RSSVsFlink is
	// weir's peak RSS over Flink's.
	VsFlink    float64 `json:"vs_flink,omitempty"`
	VsCeiling  float64 `json:"vs_ceiling,omitempty"`
	RSSVsFlink float64 `json:"rss_vs_flink,omitempty"`
	Note       string  `json:"note,omitempty"`
}

func (r *Report) summarize(wls []workload, cfg Config) {
	r.Summaries = nil
	byKey := map[[2]string][]Measurement{}
	for _, m := range r.Measurements {
		k := [2]string{m.Workload, m.System}
		byKey[k] = append(byKey[k], m)
	}
	var ceiling float64
	for _, w := range wls {
		for _, sys := range []string{SystemCeiling, SystemWeir, SystemFlink} {
			ms := byKey[[2]string{w.name, sys}]
			if len(ms) == 0 {
				continue
			}
			tp := make([]float64, len(ms))
			for i, m := range ms {
				tp[i] = m.Throughput
			}
			mid := ms[medianIndex(tp)]
			s := Summary{
				Workload: w.name, System: sys, Runs: len(ms), Throughput: median(tp), ReadThroughput: mid.ReadThroughput,
				CPUSecondsPerMillion: mid.CPUSecondsPerMillion, PeakRSSMiB: mid.PeakRSSMiB,
				CheckpointP50Ms: mid.CheckpointP50Ms, CheckpointP99Ms: mid.CheckpointP99Ms,
			}
			if sys == SystemCeiling {
				ceiling = s.Throughput
			}
			r.Summaries = append(r.Summaries, s)
		}
	}
	// Ratios.
	flink := map[string]Summary{}
	for _, s := range r.Summaries {
		if s.System == SystemFlink {
			flink[s.Workload] = s
		}
	}
	for i := range r.Summaries {
		s := &r.Summaries[i]
		if s.System != SystemWeir || s.Throughput == 0 {
			continue
		}
		if f, ok := flink[s.Workload]; ok && f.Throughput > 0 {
			s.VsFlink = s.Throughput / f.Throughput
			if f.PeakRSSMiB > 0 {
				s.RSSVsFlink = s.PeakRSSMiB / f.PeakRSSMiB
			}
		}
		if ceiling > 0 {
			s.VsCeiling = s.Throughput / ceiling
		}
	}
	live := map[[2]string]LiveMeasurement{}
	for _, l := range r.Live {
		live[[2]string{l.Workload, l.System}] = l
	}
	for i := range r.Summaries {
		s := &r.Summaries[i]
		if l, ok := live[[2]string{s.Workload, s.System}]; ok {
			s.LatencyP50Ms, s.LatencyP99Ms, s.RecoverySeconds = l.LatencyP50Ms, l.LatencyP99Ms, l.RecoverySeconds
			s.LiveRSSMiB = l.PeakRSSMiB
		}
	}
	r.Skipped = nil
	switch {
	case !cfg.Live:
		r.Skipped = append(r.Skipped, "end-to-end latency and recovery after SIGKILL: not run (live runs off)")
	case len(cfg.Keys) > 1:
		r.Skipped = append(r.Skipped, fmt.Sprintf("latency and recovery of Q1 at keys %v: measured at keys=%d only (the live runs take a minute each)", cfg.Keys[1:], cfg.Keys[0]))
	}
	if cfg.Live && !cfg.Recovery {
		r.Skipped = append(r.Skipped, "recovery after SIGKILL: not run")
	}
	if cfg.Runs < 3 {
		r.Skipped = append(r.Skipped, fmt.Sprintf("%d run(s) per figure, not the median of 3 (quick mode)", cfg.Runs))
	}
	if !cfg.Q0 {
		r.Skipped = append(r.Skipped, "Q0 passthrough: not run")
	}
	if len(cfg.Only) > 0 {
		r.Skipped = append(r.Skipped, "workloads not in -only "+strings.Join(cfg.Only, ",")+": not run")
	}
	var cmpd, checkOnly []string
	for _, w := range wls {
		if slices.Contains(comparedModes, w.mode) && !w.checkOnly {
			cmpd = append(cmpd, w.name)
		}
		if w.checkOnly {
			checkOnly = append(checkOnly, w.name)
		}
	}
	if len(checkOnly) > 0 {
		r.Skipped = append(r.Skipped, strings.Join(checkOnly, "; ")+": in the equal-work check only, not timed")
	}
	if cfg.Live && len(cmpd) > 0 {
		r.Skipped = append(r.Skipped, "latency and recovery of "+strings.Join(cmpd, "; ")+": not measured (the live runs cover Q0 and Q1)")
	}
	r.Notes = []string{
		"The broker (one Kafka JVM: " + strings.Join(cfg.BrokerJVMFlags, " ") + ") shares the machine's cores with the system measured: on a small machine it, not the jobs, can bound throughput; compare the ceiling row.",
		"Flink keeps window state on the heap (hashmap backend) with file checkpoint storage; weir keeps it in Pebble on disk (Flink's closer analogue would be RocksDB).",
		"Flink runs in a local MiniCluster in one JVM with the heap options shown; the figures include its JobManager.",
		fmt.Sprintf("Latency and recovery come from live runs: the job runs unbounded while the harness produces %d events/s (event time = production time) for %v of warm-up and %v of measurement; latency is seen by a read_committed consumer (Q0: from a record's production to its copy being visible; Q1: from the moment its window can first fire, window end + watermark bound, to its result being visible). Then the job's process is SIGKILLed and started again at once (weir from the newest checkpoint in its directory, Flink from its newest retained checkpoint); recovery runs from the SIGKILL to the first output that needs input from after the kill (Q0: a record produced after the kill; Q1: the first window firing 1 s after the kill).", cfg.LiveRate, cfg.LiveWarmup, cfg.LiveMeasure),
	}
}

// LoadReport reads a report written by Run (its .json file).
func LoadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: load report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bench: load report %s: %w", path, err)
	}
	return &r, nil
}

// Write writes the report's .json, .md and .png files to dir, named after
// its date (a quick run's with "-quick").
func (r *Report) Write(dir string) error { return r.write(dir) }

func (r *Report) fileBase() string {
	t, err := time.Parse("2006-01-02T15:04:05Z", r.Date)
	if err != nil {
		t = time.Now().UTC()
	}
	base := t.Format("2006-01-02T150405Z")
	if r.Quick {
		base += "-quick"
	}
	return base
}

// write writes <base>.json, <base>.md and <base>.png to dir.
func (r *Report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	base := filepath.Join(dir, r.fileBase())
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	png, err := r.chart()
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{base + ".json", append(js, '\n')},
		{base + ".png", png},
		{base + ".md", []byte(r.Markdown(filepath.Base(base) + ".png"))},
	} {
		if err := writeFileAtomic(f.path, f.data); err != nil {
			return err
		}
	}
	r.MarkdownPath = base + ".md"
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	return nil
}

// Markdown renders the report; chart is the file name of the PNG chart.
func (r *Report) Markdown(chart string) string {
	var b strings.Builder
	title := "weir vs Apache Flink"
	if r.Quick {
		title += " (quick run)"
	}
	fmt.Fprintf(&b, "# %s — %s\n\n", title, r.Date)
	if r.Partial {
		b.WriteString("**Partial report**: written while the run was still going (or the run stopped early); workloads not listed were not measured.\n\n")
	}
	c := r.Config
	fmt.Fprintf(&b, "Input: %d JSON events of about %d bytes over %d partitions per input topic (keys %v); "+
		"the throughput is how fast a backlog drains (first record read to every result committed). "+
		"The read rate leaves out the job's end (last windows fired, final checkpoint and commit), a fixed cost that a small input does not amortize. "+
		"Both systems (and the ceiling's consumers): parallelism %d, checkpoints every %s, %s event-time tumbling windows, watermark bound %s, read_committed. "+
		"Runs per figure: %d (figures of the median run by throughput).\n\n",
		c.Events, c.EventBytes, c.Partitions, c.Keys, c.Parallelism, c.CheckpointInterval, c.WindowSize, c.OutOfOrderness, c.Runs)
	if r.hasMode("sliding", "session", "interval") && len(c.Keys) > 0 {
		fmt.Fprintf(&b, "The sliding workload counts and sums in %s event-time windows starting every %s (Flink: SlidingEventTimeWindows), the session workload in sessions closed by a %s gap (Flink: EventTimeSessionWindows), with the same output records as Q1; "+
			"the interval join reads the input once, splits it by seq parity (left even, right odd), keys both sides by user and joins every left a with every right b where a.ts%s <= b.ts <= a.ts%s (weir: the dataflow API's IntervalJoin; Flink: intervalJoin().between()), "+
			"one output record per pair. These run exactly-once at keys %d; weir runs the windows from a job spec, as the job file does.\n\n",
			c.SlidingSize, c.SlidingSlide, c.SessionGap, signed(c.JoinLower), signed(c.JoinUpper), c.Keys[0])
	}
	if r.hasMode("dataflow") && len(c.Keys) > 0 {
		fmt.Fprintf(&b, "The dataflow workload is a typed pipeline: filter (amount > %d, about half the events) → map (user, seq and the amount doubled) → keyBy user → a keyed process function whose ValueState holds the user's running count and sum, "+
			"one output record {user, seq, count, sum} per event kept (weir: the dataflow API's Filter, Map, KeyBy, Process with a ValueState and ToKafka with encoding/json; Flink: filter, map, keyBy, a KeyedProcessFunction with a ValueState, heap backend). "+
			"Processing time, no watermarks; exactly-once at keys %d.\n\n", dataflowMinAmount, c.Keys[0])
	}
	m := r.Machine
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s GB memory, %s; Go %s; Java: %s; Apache Kafka %s (one broker); Apache Flink %s (local MiniCluster, one JVM, %s). "+
		"Load average before %s, after %s.\n\n",
		m.CPU, m.Cores, m.MemoryGB, m.OS, strings.TrimPrefix(m.Go, "go"), m.Java, m.Kafka, m.Flink, c.FlinkJVMOpts, r.LoadBefore, r.LoadAfter)
	b.WriteString("Equal-work check (every workload on both systems over the same small input; read_committed output compared with what the input implies — Q1: the expected windows, each once for exactly-once, the newest value of each for at-least-once; Q0: every input record once; " +
		"sliding, session, interval join and dataflow: each system's output compared record by record with the records computed from the input, and weir's with Flink's (both sorted by key, window_start, window_end, or by left and right seq, or by seq; the input's disorder is below the watermark bound, so no record is late, and each user's events are on one partition, so its running totals are those of its events in input order: the outputs must be equal)")
	if c.CompareEvents > 0 {
		fmt.Fprintf(&b, "; the sliding, session, interval join and dataflow workloads' input is %d events over %s of event time", c.CompareEvents, c.CompareSpan)
	}
	b.WriteString("):\n\n")
	for _, ch := range r.Check {
		wl := ch.Workload
		if wl == "" {
			wl = "Q1 exactly-once"
		}
		fmt.Fprintf(&b, "- %s, %s: `%s`\n", wl, ch.System, firstLine(ch.Verdict))
	}
	b.WriteString("\n| workload | system | throughput (events/s) | read rate (events/s) | weir/Flink | weir/ceiling | CPU s per 10⁶ events | peak RSS (MiB) | weir/Flink RSS | checkpoint p50 / p99 (ms) | latency p50 / p99 (ms) | peak RSS at that rate (MiB) | recovery (s) | runs |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Summaries {
		if s.Note != "" {
			fmt.Fprintf(&b, "| %s | %s | %s | | | | | | | | | | | |\n", s.Workload, s.System, s.Note)
			continue
		}
		ck := "—"
		if s.System != SystemCeiling && (s.CheckpointP50Ms > 0 || s.CheckpointP99Ms > 0) {
			ck = fmt.Sprintf("%.0f / %.0f", s.CheckpointP50Ms, s.CheckpointP99Ms)
		}
		lat, rec, lrss := "", "", ""
		if s.LiveRSSMiB > 0 {
			lrss = fmt.Sprintf("%.0f", s.LiveRSSMiB)
		}
		if s.LatencyP50Ms > 0 || s.LatencyP99Ms > 0 {
			lat = fmt.Sprintf("%.0f / %.0f", s.LatencyP50Ms, s.LatencyP99Ms)
		}
		if s.RecoverySeconds > 0 {
			rec = fmt.Sprintf("%.2f", s.RecoverySeconds)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %.2f | %.0f | %s | %s | %s | %s | %s | %d |\n",
			s.Workload, s.System, thousands(s.Throughput), thousands(s.ReadThroughput), ratio(s.VsFlink), ratio(s.VsCeiling),
			s.CPUSecondsPerMillion, s.PeakRSSMiB, ratio(s.RSSVsFlink), ck, lat, lrss, rec, s.Runs)
	}
	b.WriteString("\nEach run is a child process of its own. CPU s per 10⁶ events is the process's CPU time (user+system) from the first record read to the end, per million input events (start-up excluded); peak RSS is the process's VmHWM at the end of the backlog drain (start-up included); peak RSS at that rate is the VmHWM of the live run's process after its measured interval, at the fixed input rate. " +
		"Checkpoint durations: weir's from its coordinator (trigger to complete); Flink's from a probe chained to the source (barrier at the source to notifyCheckpointComplete).\n\n")
	if eo := r.eoCost(); eo != "" {
		b.WriteString(eo + "\n\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("Notes:\n\n")
		for _, s := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", s)
		}
		b.WriteString("\n")
	}
	if len(r.Skipped) > 0 {
		b.WriteString("Not measured in this run:\n\n")
		for _, s := range r.Skipped {
			fmt.Fprintf(&b, "- %s\n", s)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "![throughput, events/s](%s)\n\nChart: drain throughput (events/s), one group of bars per workload in table order (EO exactly-once, ALO at-least-once, CEIL the ceiling); below it, when measured, the end-to-end latency p99 (ms) of the live runs; blue weir, orange Flink, grey the ceiling.\n", chart)
	return b.String()
}

// hasMode says whether a check or a summary names a workload that starts
// with one of the words.
func (r *Report) hasMode(words ...string) bool {
	for _, w := range words {
		for _, c := range r.Check {
			if strings.HasPrefix(c.Workload, w+" ") {
				return true
			}
		}
		for _, s := range r.Summaries {
			if strings.HasPrefix(s.Workload, w+" ") {
				return true
			}
		}
	}
	return false
}

// eoCost describes what exactly-once costs each system, per Q1 key count.
func (r *Report) eoCost() string {
	tp := map[[2]string]float64{}
	for _, s := range r.Summaries {
		tp[[2]string{s.Workload, s.System}] = s.Throughput
	}
	var parts []string
	for _, s := range r.Summaries {
		name, ok := strings.CutSuffix(s.Workload, " exactly-once")
		if !ok || s.Throughput == 0 {
			continue
		}
		alo := tp[[2]string{name + " at-least-once", s.System}]
		if alo == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s on %s %+.1f%%", name, s.System, (s.Throughput/alo-1)*100))
	}
	if len(parts) == 0 {
		return ""
	}
	return "Throughput of exactly-once relative to at-least-once (negative: exactly-once is slower): " + strings.Join(parts, "; ") + "."
}

// signed puts a + before a duration that has no sign.
func signed(d string) string {
	if strings.HasPrefix(d, "-") {
		return d
	}
	return "+" + d
}

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

func ratio(x float64) string {
	if x == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f×", x)
}

// thousands formats x rounded to a whole number with thin groups: 1 234 567.
func thousands(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
