package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/integration/broker"
)

const metricsJob = `name: %s
brokers: %s
kind: passthrough
parallelism: 2
source:
  topic: %s
  start:
    mode: earliest
sink:
  topic: %s
delivery: exactly-once
checkpoint:
  interval: 200ms
  dir: %s
`

// scrape is one read of /metrics, parsed by the Prometheus text parser.
type scrape map[string]*dto.MetricFamily

// sum adds the values of metric name over its series whose labels hold
// match (a histogram counts its observations).
func (s scrape) sum(name string, match map[string]string) float64 {
	mf := s[name]
	if mf == nil {
		return 0
	}
	total := 0.0
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
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

// figures are the metrics the test follows.
type figures struct {
	in, out, lag, end, offset, completed, lastID, committed, durations float64
}

func (s scrape) figures() figures {
	return figures{
		in:        s.sum("weir_operator_records_in_total", map[string]string{"operator": "source"}),
		out:       s.sum("weir_operator_records_out_total", map[string]string{"operator": "sink"}),
		lag:       s.sum("weir_source_partition_lag", nil),
		end:       s.sum("weir_source_partition_end_offset", nil),
		offset:    s.sum("weir_source_partition_offset", nil),
		completed: s.sum("weir_checkpoints_completed_total", nil),
		lastID:    s.sum("weir_checkpoint_last_completed_id", nil),
		committed: s.sum("weir_sink_transactions_committed_total", nil),
		durations: s.sum("weir_checkpoint_duration_seconds", nil),
	}
}

var statusAddrRE = regexp.MustCompile(`status and metrics at http://([^/\s"]+)/`)

// TestMetricsMove runs the exactly-once passthrough job as `engine run
// --http 127.0.0.1:0` against the broker and follows /metrics, parsed with
// the Prometheus text parser: records in and out, checkpoints and commits
// grow as the job runs; a transaction left open on the input raises the
// lag by its records (read_committed cannot read past it) and its commit
// brings it back to 0. It also reads /api/job, /api/checkpoints and
// /api/operators/{id}.
func TestMetricsMove(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	const partitions, first, second = 2, 400, 300
	in, out := topic(t, partitions), topic(t, partitions)
	bootstrap := broker.Shared().Bootstrap()
	dir := t.TempDir()
	jobFile := filepath.Join(dir, "job.yaml")
	name := broker.TopicName(t)
	if err := os.WriteFile(jobFile, []byte(fmt.Sprintf(metricsJob, name, bootstrap, in, out, filepath.Join(dir, "ckpt"))), 0o644); err != nil {
		t.Fatal(err)
	}
	produce := func(cl *kgo.Client, n, from int) {
		t.Helper()
		for i := 0; i < n; i++ {
			r := &kgo.Record{Topic: in, Partition: int32(i % partitions), Key: []byte(fmt.Sprintf("k%d", i%7)), Value: []byte(fmt.Sprintf("record %d", from+i))}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce to %s: %v", in, err)
			}
		}
	}
	plain, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	produce(plain, first, 0)

	p := startEngine(t, engineBinary(t), dir, "metrics", "run", "--config", jobFile, "--status-interval", "0", "--http", "127.0.0.1:0")
	// A test that fails before the end leaves no engine behind (after a
	// normal exit the signal finds no process).
	defer func() { _ = p.cmd.Process.Signal(syscall.SIGKILL) }()
	base := "http://" + waitAddr(t, ctx, p) + "/"
	t.Logf("engine serves %s", base)

	get := func(path string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, p.stderrTail())
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode, body
	}
	scrapeOnce := func() scrape {
		t.Helper()
		code, body := get("metrics")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics: %d\n%s", code, body)
		}
		var parser expfmt.TextParser
		mfs, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
		if err != nil {
			t.Fatalf("/metrics is not the Prometheus text format: %v\n%s", err, body)
		}
		return mfs
	}
	// waitFor scrapes until ok holds, bounded by waitTimeout.
	waitFor := func(what string, ok func(f figures) bool) figures {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for {
			f := scrapeOnce().figures()
			if ok(f) {
				t.Logf("%s: %+v", what, f)
				return f
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				t.Fatalf("%s: not within %v; last scrape %+v\n%s", what, waitTimeout, f, p.stderrTail())
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case err := <-p.exited:
				t.Fatalf("%s: the engine exited (%v)\n%s", what, err, p.stderrTail())
			}
		}
	}

	a := waitFor("the first records read, written and checkpointed", func(f figures) bool {
		return f.in == first && f.out == first && f.offset == first && f.end == first && f.lag == 0 && f.completed >= 1 && f.committed >= 1
	})

	// An open transaction on the input: its records raise the end
	// offsets, but read_committed reads nothing of them.
	txn, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.TransactionalID(name+"-producer"), kgo.TransactionTimeout(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(txn, second, first)
	b := waitFor("the open transaction's records counted as lag", func(f figures) bool {
		return f.lag == second && f.end == first+second && f.in == first
	})
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	c := waitFor("the transaction's records read after its commit", func(f figures) bool {
		return f.in == first+second && f.out == first+second && f.lag == 0 && f.offset >= first+second && f.completed > a.completed+1
	})
	if b.in < a.in || c.completed < b.completed || c.lastID <= a.lastID || c.committed <= a.committed || c.durations < c.completed {
		t.Fatalf("figures went back or did not move: %+v, then %+v, then %+v", a, b, c)
	}

	var job struct {
		Name      string `json:"name"`
		State     string `json:"state"`
		Operators []struct {
			ID          string `json:"id"`
			Parallelism int    `json:"parallelism"`
			RecordsIn   int64  `json:"records_in"`
		} `json:"operators"`
		Edges []struct {
			From, To string
		} `json:"edges"`
		Partitions []struct {
			Lag int64 `json:"lag"`
		} `json:"partitions"`
		LastCheckpoint *struct {
			ID uint64 `json:"id"`
		} `json:"last_checkpoint"`
		Progress float64 `json:"progress"`
	}
	if code, body := get("api/job"); code != http.StatusOK || json.Unmarshal(body, &job) != nil {
		t.Fatalf("GET /api/job: %d\n%s", code, body)
	}
	if job.Name != name || job.State != "running" || len(job.Operators) != 2 || job.Operators[0].ID != "source" || job.Operators[1].ID != "sink" ||
		job.Operators[0].Parallelism != 2 || job.Operators[0].RecordsIn != first+second || len(job.Edges) != 1 || job.Edges[0].From != "source" ||
		len(job.Partitions) != partitions || job.LastCheckpoint == nil || job.Progress != -1 {
		t.Fatalf("/api/job: %+v", job)
	}
	var cps []struct {
		ID        uint64 `json:"id"`
		State     string `json:"state"`
		SizeBytes int64  `json:"size_bytes"`
	}
	if code, body := get("api/checkpoints"); code != http.StatusOK || json.Unmarshal(body, &cps) != nil {
		t.Fatalf("GET /api/checkpoints: %d\n%s", code, body)
	}
	completed := 0
	for _, cp := range cps {
		if cp.State == "completed" {
			completed++
		}
	}
	if completed == 0 || cps[len(cps)-1].ID < job.LastCheckpoint.ID {
		t.Fatalf("/api/checkpoints: %+v; want completed ones up to %d", cps, job.LastCheckpoint.ID)
	}
	var op struct {
		ID       string `json:"id"`
		Subtasks []struct {
			RecordsIn int64 `json:"records_in"`
			BytesIn   int64 `json:"bytes_in"`
		} `json:"subtasks"`
	}
	if code, body := get("api/operators/source"); code != http.StatusOK || json.Unmarshal(body, &op) != nil {
		t.Fatalf("GET /api/operators/source: %d\n%s", code, body)
	}
	if op.ID != "source" || len(op.Subtasks) != 2 || op.Subtasks[0].RecordsIn+op.Subtasks[1].RecordsIn != first+second || op.Subtasks[0].BytesIn == 0 {
		t.Fatalf("/api/operators/source: %+v", op)
	}
	if code, body := get("api/operators/nope"); code != http.StatusNotFound {
		t.Fatalf("GET /api/operators/nope: %d, want 404\n%s", code, body)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, ctx); code != 0 {
		t.Fatalf("engine exit %d after SIGTERM\n%s", code, p.stderrTail())
	}
}

// waitAddr waits (bounded) for the engine to log the address it serves.
func waitAddr(t *testing.T, ctx context.Context, p *engineProc) string {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		b, _ := os.ReadFile(p.stderrPath)
		if m := statusAddrRE.FindSubmatch(b); m != nil {
			return string(m[1])
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("the engine did not log its status address within %v\n%s", waitTimeout, p.stderrTail())
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("the engine exited (%v) before logging its status address\n%s", err, p.stderrTail())
		}
	}
}
