package weir

import (
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/weirstream/weir/integration/verify"
	"github.com/weirstream/weir/internal/obs"
)

// metricSum gathers g and sums the values of the metric named name (a
// counter or a gauge) over its series whose labels include match; the
// second result says whether any series matched.
func metricSum(t *testing.T, g prometheus.Gatherer, name string, match map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	sum, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if have[k] != v {
					continue series
				}
			}
			found = true
			sum += metricValue(m)
		}
	}
	return sum, found
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// TestStatusPassthroughOnKfake: after a bounded exactly-once passthrough
// job, its status shows the graph (source -> sink), the records each
// operator and subtask counted, every partition read to its end, the
// completed checkpoints, and the metrics agree.
func TestStatusPassthroughOnKfake(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 5, Keys: 50, Partitions: 4, Events: 5000})
	spec := f.passthroughSpec("status-copy")
	spec.Parallelism = 2
	spec.Delivery = ExactlyOnce
	spec.Source.Bounded = BoundLatest
	spec.Checkpoint = CheckpointSpec{Interval: 30 * time.Millisecond, Dir: t.TempDir(), Timeout: time.Minute}
	job, err := NewJob(spec, WithFlowControl(2, 256))
	if err != nil {
		t.Fatal(err)
	}
	st := job.Status()
	if js := st.Job(); js.State != "created" || len(js.Operators) != 2 || js.Progress != -1 {
		t.Fatalf("before Run: %+v, want state created, 2 operators, progress unknown (-1)", js)
	}
	// Readers while the job runs (the page polls; go test -race checks
	// them against the tasks).
	stop, readers := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(readers)
		for {
			select {
			case <-stop:
				return
			default:
			}
			st.Job()
			st.Operator("sink")
			st.Checkpoints()
			st.Throughput()
			if _, err := job.Gatherer().Gather(); err != nil {
				t.Errorf("gather while running: %v", err)
				return
			}
		}
	}()
	err = job.Run(f.ctx)
	close(stop)
	<-readers
	if err != nil {
		t.Fatal(err)
	}
	n := int64(len(f.events))
	js := st.Job()
	if js.Name != "status-copy" || js.State != "finished" || js.StartedAt.IsZero() || js.Restarts != 0 || js.LastFailure != "" {
		t.Fatalf("job %+v: want status-copy, finished, started, no restart or failure", js)
	}
	ids := []string{}
	for _, op := range js.Operators {
		ids = append(ids, op.ID+":"+op.Kind)
		if op.Parallelism != 2 {
			t.Errorf("operator %s parallelism %d, want 2", op.ID, op.Parallelism)
		}
	}
	if !slices.Equal(ids, []string{"source:source", "sink:sink"}) {
		t.Fatalf("operators %v, want source:source, sink:sink", ids)
	}
	if want := []obs.Edge{{From: "source", To: "sink", Ship: "forward"}}; !slices.Equal(js.Edges, want) {
		t.Fatalf("edges %+v, want %+v", js.Edges, want)
	}
	if src, sink := js.Operators[0], js.Operators[1]; src.RecordsIn != n || src.RecordsOut != n || sink.RecordsIn != n || sink.RecordsOut != n {
		t.Fatalf("source %+v, sink %+v: want %d records in and out of each", src, sink, n)
	}
	if len(js.Partitions) != 4 {
		t.Fatalf("partitions %+v, want 4", js.Partitions)
	}
	var read int64
	for _, p := range js.Partitions {
		if p.Source != "source" || p.Topic != "in" || p.Offset < 0 || p.End != p.Offset || p.Lag != 0 {
			t.Fatalf("partition %+v: want source, topic in, read to its end (lag 0)", p)
		}
		read += p.Offset
	}
	if read != n {
		t.Fatalf("partition offsets sum to %d, want the %d records produced", read, n)
	}
	if js.Progress != 1 {
		t.Fatalf("progress %v after the bounded input was read, want 1", js.Progress)
	}
	if js.LastCheckpoint == nil || js.LastCheckpoint.State != "completed" {
		t.Fatalf("last checkpoint %+v, want a completed one", js.LastCheckpoint)
	}

	cps := st.Checkpoints()
	completed := 0
	for i, c := range cps {
		if i > 0 && c.ID <= cps[i-1].ID {
			t.Fatalf("checkpoints %+v not in id order", cps)
		}
		if c.State == "in_progress" {
			t.Fatalf("checkpoint %+v still in progress after Run", c)
		}
		if c.State == "completed" {
			completed++
			if c.Time.IsZero() || c.DurationMs < 0 || c.Savepoint {
				t.Fatalf("completed checkpoint %+v: want a trigger time, a duration, not a savepoint", c)
			}
		}
	}
	if completed == 0 || int64(completed) != job.Stats().Checkpoints || cps[len(cps)-1].ID < js.LastCheckpoint.ID {
		t.Fatalf("checkpoints %+v: want the %d completed ones, up to %d", cps, job.Stats().Checkpoints, js.LastCheckpoint.ID)
	}

	src, ok := st.Operator("source")
	if !ok || len(src.Subtasks) != 2 {
		t.Fatalf("operator source: %+v %v, want 2 subtasks", src, ok)
	}
	var in, bytes int64
	for _, s := range src.Subtasks {
		in += s.RecordsIn
		bytes += s.BytesIn
		if s.Batches == 0 || s.QueueCap != 2 || s.QueueLen != 0 {
			t.Fatalf("source subtask %+v: want batches, queue capacity 2 (credits x 1 target), nothing in flight at the end", s)
		}
	}
	if in != n || bytes <= n {
		t.Fatalf("source subtasks read %d records, %d bytes; want %d records of more than a byte each", in, bytes, n)
	}
	sink, ok := st.Operator("sink")
	if !ok || sink.Subtasks[0].BytesOut+sink.Subtasks[1].BytesOut != bytes {
		t.Fatalf("sink %+v: want the %d bytes the source read written", sink, bytes)
	}
	if _, ok := st.Operator("nope"); ok {
		t.Fatal("operator nope: found, want unknown")
	}
	if len(st.Throughput()) == 0 {
		t.Fatal("no throughput sample after Run")
	}

	g := job.Gatherer()
	for _, c := range []struct {
		name  string
		match map[string]string
		want  func(float64) bool
	}{
		{"weir_operator_records_in_total", map[string]string{"job": "status-copy", "operator": "source"}, func(v float64) bool { return v == float64(n) }},
		{"weir_operator_records_out_total", map[string]string{"operator": "sink"}, func(v float64) bool { return v == float64(n) }},
		{"weir_source_partition_lag", map[string]string{"operator": "source", "topic": "in"}, func(v float64) bool { return v == 0 }},
		{"weir_source_partition_offset", map[string]string{"operator": "source"}, func(v float64) bool { return v == float64(n) }},
		{"weir_checkpoints_completed_total", nil, func(v float64) bool { return v == float64(completed) }},
		{"weir_checkpoint_duration_seconds", nil, func(v float64) bool { return v == float64(completed) }},
		{"weir_checkpoint_last_completed_id", nil, func(v float64) bool { return v == float64(js.LastCheckpoint.ID) }},
		{"weir_sink_transactions_committed_total", map[string]string{"operator": "sink"}, func(v float64) bool { return v > 0 }},
		{"weir_sink_commit_duration_seconds", map[string]string{"operator": "sink"}, func(v float64) bool { return v > 0 }},
		{"weir_job_restarts_total", nil, func(v float64) bool { return v == 0 }},
		{"go_goroutines", nil, func(v float64) bool { return v > 0 }},
	} {
		v, found := metricSum(t, g, c.name, c.match)
		if !found || !c.want(v) {
			t.Errorf("%s%v = %v (found %v)", c.name, c.match, v, found)
		}
	}
}

// TestStatusDataflowGraphOnKfake: a dataflow program's status shows its
// stages with the keyBy edge as hash, the side output's sink, watermarks,
// and a registry given with WithMetricsRegistry holds its metrics.
func TestStatusDataflowGraphOnKfake(t *testing.T) {
	f := dataflowFixture(t, verify.GenConfig{Seed: 7, Keys: 20, Partitions: 2, Events: 3000}, "sums", "late")
	reg := prometheus.NewRegistry()
	job, err := sumsEnv(f, t.TempDir(), true, "sum-per-second", nil).Build(WithMetricsRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	if job.Gatherer() != prometheus.Gatherer(reg) {
		t.Fatal("Gatherer is not the registry given with WithMetricsRegistry")
	}
	if err := job.Run(f.ctx); err != nil {
		t.Fatal(err)
	}
	js := job.Status().Job()
	var ids []string
	for _, op := range js.Operators {
		ids = append(ids, op.ID+":"+op.Kind)
	}
	if !slices.Equal(ids, []string{"in:source", "sum-per-second:process", "sums:sink", "late:sink"}) {
		t.Fatalf("operators %v", ids)
	}
	want := []obs.Edge{
		{From: "in", To: "sum-per-second", Ship: "hash"},
		{From: "sum-per-second", To: "sums", Ship: "forward"},
		{From: "sum-per-second", To: "late", Ship: "forward"},
	}
	if !slices.Equal(js.Edges, want) {
		t.Fatalf("edges %+v, want %+v", js.Edges, want)
	}
	p, ok := job.Status().Operator("sum-per-second")
	if !ok || p.RecordsIn != int64(len(f.events)) || p.Watermark == 0 || len(p.Subtasks) != 2 {
		t.Fatalf("process %+v: want %d records in, a watermark, 2 subtasks", p, len(f.events))
	}
	if v, found := metricSum(t, reg, "weir_operator_records_in_total", map[string]string{"job": "sums", "operator": "sum-per-second"}); !found || v != float64(len(f.events)) {
		t.Fatalf("records in of sum-per-second on the given registry: %v (found %v)", v, found)
	}
	if _, found := metricSum(t, reg, "weir_operator_watermark_seconds", map[string]string{"operator": "in"}); !found {
		t.Fatal("no watermark of the source")
	}
	if _, found := metricSum(t, reg, "go_goroutines", nil); found {
		t.Fatal("the job registered the Go collector on a registry it was given")
	}
	// A second job of the same name cannot register on the same registry.
	if _, err := sumsEnv(f, t.TempDir(), true, "sum-per-second", nil).Build(WithMetricsRegistry(reg)); err == nil {
		t.Fatal("a second job named sums registered on the same registry")
	}
}

// TestStatusRestartOnKfake: a job that fails once and restarts shows the
// restart and the failure's message in its status and metrics.
func TestStatusRestartOnKfake(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 9, Keys: 20, Partitions: 2, Events: 2000})
	spec := f.spec("status-restart")
	spec.Source.Bounded = BoundLatest
	spec.Restart = RestartSpec{Strategy: "fixed-delay", Attempts: 2, Delay: 10 * time.Millisecond}
	spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: t.TempDir()}
	extract := JSONExtract("user", "ts", "amount")
	var failed atomic.Bool
	spec.Extract = func(v []byte) ([]byte, int64, float64, error) {
		if !failed.Swap(true) {
			return nil, 0, 0, errors.New("injected failure")
		}
		return extract(v)
	}
	job, err := NewJob(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Run(f.ctx); err != nil {
		t.Fatal(err)
	}
	js := job.Status().Job()
	if js.State != "finished" || js.Restarts != 1 || !strings.Contains(js.LastFailure, "injected failure") {
		t.Fatalf("status %+v: want finished after 1 restart, the last failure naming the injected one", js)
	}
	for _, c := range job.Status().Checkpoints() {
		if c.State == "in_progress" {
			t.Fatalf("checkpoint %+v in progress after Run", c)
		}
	}
	if v, found := metricSum(t, job.Gatherer(), "weir_job_restarts_total", nil); !found || v != 1 {
		t.Fatalf("weir_job_restarts_total = %v (found %v), want 1", v, found)
	}
	if v, found := metricSum(t, job.Gatherer(), "weir_job_last_failure_timestamp_seconds", nil); !found || v < float64(js.StartedAt.Unix()) {
		t.Fatalf("weir_job_last_failure_timestamp_seconds = %v (found %v), want a time after the start %v", v, found, js.StartedAt)
	}
}
