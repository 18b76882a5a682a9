package weir

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/internal/obs"
	"github.com/weirstream/weir/supervisor"
)

// WithMetricsRegistry registers the job's Prometheus metrics (see
// docs/metrics.md) on reg, for a program that serves its own /metrics.
// Without it the job has a registry of its own, with the Go runtime and
// process collectors on it too; Job.Gatherer returns either. Jobs sharing
// a registry need distinct names (the metrics carry a job label).
func WithMetricsRegistry(reg *prometheus.Registry) Option {
	return func(o *options) { o.registry = reg }
}

// Status returns what the job shows about itself: the job graph with
// per-operator figures, source partitions, checkpoint history and
// throughput (the REST API's model, see docs/rest.md). Safe for
// concurrent use, before, while and after the job runs.
func (j *Job) Status() obs.Provider { return j.obs }

// Gatherer returns the registry holding the job's metrics: the one given
// with WithMetricsRegistry, or the job's own.
func (j *Job) Gatherer() prometheus.Gatherer { return j.obs.reg }

// opStats is one operator of the status: a stage of the job's plan (a
// source with the operators chained behind it, a task with its chain, or
// a sink), with the figures of each subtask.
type opStats struct {
	obs.Operator
	topic    string // sources and sinks
	source   bool
	sink     bool
	subtasks []*actors.TaskStats
	// commit observes an exactly-once sink's commit latency.
	commit prometheus.Observer
}

// opWindow is what the sampler remembers of an operator for its rates.
type opWindow struct {
	at      time.Time
	in, out int64
	blocked []time.Duration
}

// jobObs implements obs.Provider for a Job and collects its metrics.
type jobObs struct {
	j   *Job
	reg *prometheus.Registry
	ops []*opStats
	// byID indexes ops by operator id.
	byID  map[string]*opStats
	edges []obs.Edge

	ckDuration prometheus.Histogram
	ckSize     prometheus.Histogram
	commitLat  *prometheus.HistogramVec

	mu          sync.Mutex
	state       string
	startedAt   time.Time
	lastFailure string
	failedAt    time.Time
	history     []obs.CheckpointStatus // oldest first, at most obs.HistoryLimit
	last        *obs.CheckpointStatus  // newest completed
	completed   int64
	failed      int64
	aborted     int64
	samples     []obs.Sample // oldest first, at most obs.ThroughputWindow
	// lastIn and lastOut are the totals read from Kafka and written at
	// the newest sample.
	lastIn, lastOut int64
	windows         map[string][]opWindow
	// rates per operator id: in, out, backpressure.
	rates map[string][3]float64
}

// rateWindow is how many samples (seconds) an operator's rates average.
const rateWindow = 5

// initObs builds the job's status from its graph and registers its
// metrics; NewJob and Env.Build call it once the graph is known.
func (j *Job) initObs() error {
	o := &jobObs{j: j, state: "created", byID: map[string]*opStats{}, windows: map[string][]opWindow{}, rates: map[string][3]float64{}}
	reg := j.opts.registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	o.reg = reg
	labels := prometheus.Labels{"job": j.spec.Name}
	o.ckDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "weir_checkpoint_duration_seconds", Help: "Time from a checkpoint's trigger to its completion.",
		ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	})
	o.ckSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "weir_checkpoint_size_bytes", Help: "Bytes the tasks wrote for a completed checkpoint (new files only; files shared with earlier checkpoints are not counted).",
		ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(1024, 4, 12),
	})
	o.commitLat = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "weir_sink_commit_duration_seconds", Help: "Time an exactly-once sink subtask takes to commit its transactions when a checkpoint completes.",
		ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	}, []string{"operator"})
	o.build(j.graph, j.spec.Parallelism)
	if err := reg.Register(&collector{o: o, descs: newJobDescs(labels)}); err != nil {
		return fmt.Errorf("weir: register the metrics of job %s: %w (jobs sharing a registry, WithMetricsRegistry, need distinct names)", j.spec.Name, err)
	}
	j.obs = o
	return nil
}

// build lays out the operators and edges of g: one operator per stage.
func (o *jobObs) build(g *graphPlan, p int) {
	add := func(id, kind string, members []*node) *opStats {
		names := make([]string, 0, len(members))
		for _, m := range members {
			if !m.relay {
				names = append(names, m.name)
			}
		}
		op := &opStats{Operator: obs.Operator{ID: id, Name: strings.Join(names, " -> "), Kind: kind, Parallelism: p}}
		op.subtasks = make([]*actors.TaskStats, p)
		for i := range op.subtasks {
			op.subtasks[i] = actors.NewTaskStats()
		}
		o.ops = append(o.ops, op)
		o.byID[id] = op
		return op
	}
	edge := func(from string, out []*edge) {
		for _, e := range out {
			ship := "forward"
			if e.hash() {
				ship = "hash"
			}
			ed := obs.Edge{From: from, To: g.stageOf(e), Ship: ship}
			if !slices.Contains(o.edges, ed) {
				o.edges = append(o.edges, ed)
			}
		}
	}
	for _, name := range g.order {
		for _, n := range g.sources {
			if n.uid == name {
				relay := g.taskOf[n.ports[0].consumers[0].to]
				op := add(name, "source", append([]*node{n}, relay.members...))
				op.source, op.topic = true, n.source.spec.Topic
				edge(name, relay.out)
			}
		}
		for _, t := range g.tasks {
			if !t.head.relay && t.name() == name {
				add(name, t.head.kind, t.members)
				edge(name, t.out)
			}
		}
		for _, n := range g.sinks {
			if n.uid == name {
				op := add(name, "sink", []*node{n})
				op.sink, op.topic = true, n.sink.spec.Topic
				op.commit = o.commitLat.WithLabelValues(name)
				for _, st := range op.subtasks {
					c := op.commit
					st.OnCommit = func(d time.Duration) { c.Observe(d.Seconds()) }
				}
			}
		}
	}
}

// stats is subtask i of stage name's figures (fresh ones nobody reads for
// a stage the status does not know, which does not happen).
func (o *jobObs) stats(name string, i int) *actors.TaskStats {
	if op := o.byID[name]; op != nil && i < len(op.subtasks) {
		return op.subtasks[i]
	}
	return actors.NewTaskStats()
}

// running marks the start of Run.
func (o *jobObs) running(now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.state, o.startedAt = "running", now
}

// setState records the job's state ("running", "restarting", "finished",
// "failed").
func (o *jobObs) setState(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.state = s
}

// ended records the end of Run: state "finished" or "failed"; the
// checkpoints still in progress ended with it (why, when not a failure).
func (o *jobObs) ended(state, why string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.state = state
	if why == "" {
		why = "the job ended"
	}
	o.endInProgress(why)
}

// failure records a failure of a run; checkpoints still in progress ended
// with it.
func (o *jobObs) failure(err error, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	// Errors may echo the Kafka client's configuration: secret values
	// never reach the status API.
	msg := RedactSecrets(err.Error())
	o.lastFailure, o.failedAt = msg, now
	o.endInProgress("the job failed: " + msg)
}

// endInProgress marks the checkpoints in progress aborted (their run
// ended); o.mu is held.
func (o *jobObs) endInProgress(reason string) {
	for i := range o.history {
		if c := &o.history[i]; c.State == "in_progress" {
			c.State, c.Error = "aborted", reason
			o.aborted++
		}
	}
}

// checkpoint records a checkpoint event from the supervisor.
func (o *jobObs) checkpoint(e supervisor.CheckpointEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := obs.CheckpointStatus{ID: e.ID, Time: e.Triggered, DurationMs: e.Duration.Milliseconds(),
		SizeBytes: e.SizeBytes, State: e.State, Savepoint: e.Savepoint, Error: RedactSecrets(e.Reason)}
	at := -1
	for i := len(o.history) - 1; i >= 0; i-- {
		if o.history[i].ID == e.ID {
			at = i
			break
		}
	}
	if at >= 0 && o.history[at].State != "in_progress" {
		return // ended already (a run that ended marks its checkpoints aborted)
	}
	switch e.State {
	case "completed":
		o.completed++
		o.ckDuration.Observe(e.Duration.Seconds())
		o.ckSize.Observe(float64(e.SizeBytes))
		last := c
		o.last = &last
	case "failed":
		o.failed++
	case "aborted":
		o.aborted++
	}
	if at >= 0 {
		o.history[at] = c
		return
	}
	o.history = append(o.history, c)
	if n := len(o.history) - obs.HistoryLimit; n > 0 {
		o.history = slices.Delete(o.history, 0, n)
	}
}

// sample takes one throughput sample and updates the operators' rates.
func (o *jobObs) sample(now time.Time) {
	var in, out int64
	type taken struct {
		op *opStats
		w  opWindow
	}
	ts := make([]taken, len(o.ops))
	for k, op := range o.ops {
		w := opWindow{at: now, blocked: make([]time.Duration, len(op.subtasks))}
		for i, st := range op.subtasks {
			w.in += st.RecordsIn.Load()
			w.out += st.RecordsOut.Load()
			w.blocked[i] = st.Blocked(now)
		}
		if op.source {
			in += w.in
		}
		if op.sink {
			out += w.out
		}
		ts[k] = taken{op, w}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, t := range ts {
		ws := append(o.windows[t.op.ID], t.w)
		if len(ws) > rateWindow+1 {
			ws = ws[len(ws)-rateWindow-1:]
		}
		o.windows[t.op.ID] = ws
		first := ws[0]
		dt := now.Sub(first.at).Seconds()
		if dt <= 0 {
			continue
		}
		bp := 0.0
		for i := range t.w.blocked {
			bp = max(bp, (t.w.blocked[i]-first.blocked[i]).Seconds()/dt)
		}
		o.rates[t.op.ID] = [3]float64{float64(t.w.in-first.in) / dt, float64(t.w.out-first.out) / dt, min(bp, 1)}
	}
	s := obs.Sample{Time: now}
	if n := len(o.samples); n > 0 {
		prev := o.samples[n-1]
		if dt := now.Sub(prev.Time).Seconds(); dt > 0 {
			s.RecordsIn = float64(in-o.lastIn) / dt
			s.RecordsOut = float64(out-o.lastOut) / dt
		}
	}
	o.lastIn, o.lastOut = in, out
	o.samples = append(o.samples, s)
	if n := len(o.samples) - obs.ThroughputWindow; n > 0 {
		o.samples = slices.Delete(o.samples, 0, n)
	}
}

// sampler samples once per second until stop is closed.
func (o *jobObs) sampler(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	o.sample(time.Now())
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			o.sample(now)
		}
	}
}

// operator is op's figures at this moment; o.mu is held.
func (o *jobObs) operator(op *opStats) obs.Operator {
	v := op.Operator
	wm := int64(math.MaxInt64)
	for _, st := range op.subtasks {
		v.RecordsIn += st.RecordsIn.Load()
		v.RecordsOut += st.RecordsOut.Load()
		wm = min(wm, st.Watermark())
	}
	if wm != math.MinInt64 && wm != math.MaxInt64 && !op.sink {
		v.Watermark = wm
	}
	r := o.rates[op.ID]
	v.RateIn, v.RateOut, v.Backpressure = r[0], r[1], r[2]
	return v
}

// Job implements obs.Provider.
func (o *jobObs) Job() obs.JobStatus {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	s := obs.JobStatus{
		Name: o.j.spec.Name, State: o.state, StartedAt: o.startedAt,
		Restarts: o.j.metrics.Restarts.Load(), LastFailure: o.lastFailure,
		Operators: make([]obs.Operator, 0, len(o.ops)), Edges: slices.Clone(o.edges),
		Partitions: o.partitions(), Progress: o.progress(),
	}
	if s.Edges == nil {
		s.Edges = []obs.Edge{}
	}
	if !o.startedAt.IsZero() {
		s.UptimeSeconds = now.Sub(o.startedAt).Seconds()
	}
	for _, op := range o.ops {
		s.Operators = append(s.Operators, o.operator(op))
	}
	if o.last != nil {
		last := *o.last
		s.LastCheckpoint = &last
	}
	return s
}

// partitions lists the source partitions, by operator then partition.
func (o *jobObs) partitions() []obs.PartitionStatus {
	out := []obs.PartitionStatus{}
	for _, op := range o.ops {
		if !op.source {
			continue
		}
		var ps []obs.PartitionStatus
		for _, st := range op.subtasks {
			for _, p := range st.Partitions() {
				lag := int64(-1)
				if p.Offset >= 0 && p.End >= 0 {
					lag = max(p.End-p.Offset, 0)
				}
				ps = append(ps, obs.PartitionStatus{Source: op.ID, Topic: op.topic, Partition: p.Partition, Offset: p.Offset, End: p.End, Lag: lag})
			}
		}
		slices.SortFunc(ps, func(a, b obs.PartitionStatus) int { return int(a.Partition) - int(b.Partition) })
		out = append(out, ps...)
	}
	return out
}

// progress is the share of a bounded job's input read, in [0,1]: over
// every source partition, the records from its first offset to its stop
// that are read. -1 when a source is unbounded or no partition is known.
func (o *jobObs) progress() float64 {
	var done, total int64
	seen := false
	for _, op := range o.ops {
		if !op.source {
			continue
		}
		for _, st := range op.subtasks {
			for _, p := range st.Partitions() {
				if p.Stop < 0 || p.Start < 0 || p.Offset < 0 {
					return -1
				}
				seen = true
				span := max(p.Stop-p.Start, 0)
				total += span
				done += min(max(p.Offset-p.Start, 0), span)
			}
		}
	}
	switch {
	case !seen:
		return -1
	case total == 0:
		return 1
	}
	return float64(done) / float64(total)
}

// Checkpoints implements obs.Provider.
func (o *jobObs) Checkpoints() []obs.CheckpointStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.history)
}

// Operator implements obs.Provider.
func (o *jobObs) Operator(id string) (obs.OperatorStatus, bool) {
	op := o.byID[id]
	if op == nil {
		return obs.OperatorStatus{}, false
	}
	now := time.Now()
	o.mu.Lock()
	s := obs.OperatorStatus{Operator: o.operator(op)}
	o.mu.Unlock()
	for i, st := range op.subtasks {
		sub := obs.SubtaskStatus{
			Index: i, RecordsIn: st.RecordsIn.Load(), RecordsOut: st.RecordsOut.Load(),
			BytesIn: st.BytesIn.Load(), BytesOut: st.BytesOut.Load(), Batches: st.BatchesIn.Load(),
			QueueLen: int(st.InFlight.Load()), QueueCap: int(st.QueueCap.Load()),
			BlockedSeconds: st.Blocked(now).Seconds(),
		}
		if wm := st.Watermark(); wm != math.MinInt64 && wm != math.MaxInt64 && !op.sink {
			sub.Watermark = wm
		}
		s.Subtasks = append(s.Subtasks, sub)
	}
	return s, true
}

// Throughput implements obs.Provider.
func (o *jobObs) Throughput() []obs.Sample {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.samples)
}
