package obs

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

type fakeProvider struct{}

func (fakeProvider) Job() JobStatus {
	return JobStatus{Name: "j", State: "running", Operators: []Operator{{ID: "src", Name: "source", Kind: "source", Parallelism: 2}}}
}
func (fakeProvider) Checkpoints() []CheckpointStatus { return nil }
func (fakeProvider) Operator(id string) (OperatorStatus, bool) {
	if id != "src" {
		return OperatorStatus{}, false
	}
	return OperatorStatus{Operator: Operator{ID: "src"}, Subtasks: []SubtaskStatus{{Index: 0}, {Index: 1}}}, true
}
func (fakeProvider) Throughput() []Sample { return []Sample{{Time: time.Unix(1, 0), RecordsIn: 3}} }

func TestHandlerServesTheAPI(t *testing.T) {
	s, err := Serve("127.0.0.1:0", NewHandler(fakeProvider{}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string) {
		r, err := c.Get("http://" + s.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	code, body := get("/api/job")
	var js JobStatus
	if code != 200 || json.Unmarshal([]byte(body), &js) != nil || js.Name != "j" || len(js.Operators) != 1 {
		t.Fatalf("/api/job: %d %s", code, body)
	}
	if code, body = get("/api/checkpoints"); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("/api/checkpoints: %d %s", code, body)
	}
	var op OperatorStatus
	if code, body = get("/api/operators/src"); code != 200 || json.Unmarshal([]byte(body), &op) != nil || len(op.Subtasks) != 2 {
		t.Fatalf("/api/operators/src: %d %s", code, body)
	}
	if code, body = get("/api/operators/nope"); code != 404 || !strings.Contains(body, `no operator \"nope\"`) {
		t.Fatalf("/api/operators/nope: %d %s", code, body)
	}
	if code, body = get("/api/bogus"); code != 404 || !strings.Contains(body, "error") {
		t.Fatalf("/api/bogus: %d %s", code, body)
	}
	if code, _ = get("/metrics"); code != 404 {
		t.Fatalf("/metrics without a gatherer: %d, want 404", code)
	}
}

func TestListenAddrDefaultsToLoopback(t *testing.T) {
	for in, want := range map[string]string{"8081": "127.0.0.1:8081", ":8081": "127.0.0.1:8081", "0.0.0.0:1": "0.0.0.0:1", "[::1]:9": "[::1]:9"} {
		if got, err := ListenAddr(in); err != nil || got != want {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "host:", "a:b:c", "localhost:http", "abc", "127.0.0.1:70000", "127.0.0.1:-1"} {
		if _, err := ListenAddr(bad); err == nil {
			t.Errorf("ListenAddr(%q): no error", bad)
		}
	}
}
