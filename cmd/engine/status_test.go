package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/obs"
)

// statusFake is a running job of three operators with two partitions and
// three checkpoints.
type statusFake struct{}

func (statusFake) Job() obs.JobStatus {
	return obs.JobStatus{
		Name: "orders", State: "running", StartedAt: time.Now().Add(-65 * time.Second), UptimeSeconds: 65, Restarts: 1,
		LastFailure: "sink: producer fenced", Progress: -1,
		Operators: []obs.Operator{
			{ID: "src", Name: "kafka source", Kind: "source", Parallelism: 2, RecordsIn: 5000, RecordsOut: 5000, RateIn: 1000, RateOut: 1000},
			{ID: "win", Name: "window", Kind: "window", Parallelism: 2, RecordsIn: 5000, RecordsOut: 40, RateIn: 1000, RateOut: 8, Backpressure: 0.25},
			{ID: "snk", Name: "kafka sink", Kind: "sink", Parallelism: 1, RecordsIn: 40, RecordsOut: 40, RateIn: 8, RateOut: 8},
		},
		Edges: []obs.Edge{{From: "src", To: "win", Ship: "hash"}, {From: "win", To: "snk", Ship: "forward"}},
		Partitions: []obs.PartitionStatus{
			{Source: "src", Topic: "orders", Partition: 0, Offset: 2500, End: 2600, Lag: 100},
			{Source: "src", Topic: "orders", Partition: 1, Offset: 2500, End: 2507, Lag: 7},
		},
	}
}

func (statusFake) Checkpoints() []obs.CheckpointStatus {
	t := time.Now().Add(-10 * time.Second)
	return []obs.CheckpointStatus{
		{ID: 7, Time: t, DurationMs: 40, SizeBytes: 2048, State: "completed"},
		{ID: 8, Time: t.Add(time.Second), DurationMs: 60000, State: "failed", Error: "timed out"},
		{ID: 9, Time: t.Add(2 * time.Second), DurationMs: 35, SizeBytes: 3 << 20, State: "completed", Savepoint: true},
	}
}
func (statusFake) Operator(string) (obs.OperatorStatus, bool) { return obs.OperatorStatus{}, false }
func (statusFake) Throughput() []obs.Sample                   { return nil }

func serveFake(t *testing.T) string {
	t.Helper()
	srv, err := obs.Serve("127.0.0.1:0", obs.NewHandler(statusFake{}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.Addr
}

func TestStatusSummary(t *testing.T) {
	addr := serveFake(t)
	for _, a := range []string{addr, "http://" + addr + "/"} {
		var stdout, stderr bytes.Buffer
		if code := statusCmd([]string{"--http", a}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
			t.Fatalf("engine status --http %s: exit %d, stderr %q", a, code, stderr.String())
		}
		out := stdout.String()
		for _, re := range []string{
			`(?m)^job orders: running, up 1m5s, 1 restarts$`,
			`(?m)^last failure: sink: producer fenced$`,
			`(?m)^  src +kafka source +source +2 +1000 +1000 +0% +5000 +5000`,
			`(?m)^  win +window +window +2 +1000 +8 +25% +5000 +40`,
			`(?m)^  snk +kafka sink +sink +1 +8 +8 +0% +40 +40`,
			`(?m)^  src -> win \(hash\)$`,
			`(?m)^  win -> snk \(forward\)$`,
			`(?m)^  src +orders +0 +2500 +2600 +100`,
			`(?m)^  src +orders +1 +2500 +2507 +7`,
			`(?m)^  total lag: 107$`,
			`(?m)^checkpoints \(last 3 of 3\):$`,
			`(?m)^  9 +\d\d:\d\d:\d\d +35ms +3\.0 MiB +completed +savepoint`,
			`(?m)^  8 +\d\d:\d\d:\d\d +1m0s +- +failed \(timed out\)`,
			`(?m)^  7 +\d\d:\d\d:\d\d +40ms +2\.0 KiB +completed`,
		} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("engine status --http %s: output does not match %s:\n%s", a, re, out)
			}
		}
		if regexp.MustCompile(`(?m) $`).MatchString(out) {
			t.Errorf("trailing blanks in:\n%q", out)
		}
		if i, j := strings.Index(out, "\n  9 "), strings.Index(out, "\n  7 "); i < 0 || j < i {
			t.Errorf("checkpoints not newest first:\n%s", out)
		}
	}
}

func TestStatusJSON(t *testing.T) {
	addr := serveFake(t)
	var stdout, stderr bytes.Buffer
	if code := statusCmd([]string{"--http", addr, "--json"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	var got struct {
		Job         obs.JobStatus          `json:"job"`
		Checkpoints []obs.CheckpointStatus `json:"checkpoints"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, stdout.String())
	}
	if got.Job.Name != "orders" || len(got.Job.Operators) != 3 || len(got.Job.Partitions) != 2 || len(got.Checkpoints) != 3 || got.Checkpoints[2].ID != 9 {
		t.Errorf("--json: %+v", got)
	}
}

// TestStatusUnreachable: nothing listens at the address: one line naming
// it and saying how to start an engine there, exit 1.
func TestStatusUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var stdout, stderr bytes.Buffer
	code := statusCmd([]string{"--http", addr}, &stdout, &stderr)
	msg := stderr.String()
	if code != 1 || stdout.Len() != 0 || len(lines(msg)) != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and one line", code, stdout.String(), msg)
	}
	for _, w := range []string{"engine status: nothing answers at " + addr, "connection refused", "start the engine with --http " + addr} {
		if !strings.Contains(msg, w) {
			t.Errorf("stderr %q lacks %q", msg, w)
		}
	}
}

// TestStatusNotWeir: something answers at the address, but not weir's
// JSON status: one line naming the address, exit 1; a bad --http is exit 2.
func TestStatusNotWeir(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintln(w, "<html>some other server</html>")
	}))
	defer other.Close()
	addr := strings.TrimPrefix(other.URL, "http://")
	var stdout, stderr bytes.Buffer
	code := statusCmd([]string{"--http", addr}, &stdout, &stderr)
	msg := stderr.String()
	if code != 1 || stdout.Len() != 0 || len(lines(msg)) != 1 || !strings.Contains(msg, "http://"+addr+"/api/job: HTTP 200 text/html, not weir's JSON status") {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and one line naming the address", code, stdout.String(), msg)
	}

	stdout.Reset()
	stderr.Reset()
	if code := statusCmd([]string{"--http", "nohost:port:x"}, &stdout, &stderr); code != 2 || len(lines(stderr.String())) != 1 || !strings.HasPrefix(stderr.String(), "engine status: --http ") {
		t.Errorf("bad --http: exit %d, stderr %q; want 2 and one line", code, stderr.String())
	}
}
