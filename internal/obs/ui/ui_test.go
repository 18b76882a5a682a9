package ui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/obs"
	"github.com/weirstream/weir/internal/obs/ui"
)

// fakeProvider is a fixed job of two operators.
type fakeProvider struct{}

func (fakeProvider) Job() obs.JobStatus {
	return obs.JobStatus{
		Name: "fake", State: "running", StartedAt: time.Unix(1700000000, 0), Progress: -1,
		Operators: []obs.Operator{{ID: "src", Name: "source", Kind: "source", Parallelism: 2}, {ID: "sink", Name: "sink", Kind: "sink", Parallelism: 2}},
		Edges:     []obs.Edge{{From: "src", To: "sink", Ship: "forward"}},
	}
}
func (fakeProvider) Checkpoints() []obs.CheckpointStatus {
	return []obs.CheckpointStatus{{ID: 1, Time: time.Unix(1700000001, 0), DurationMs: 12, SizeBytes: 4096, State: "completed"}}
}
func (fakeProvider) Operator(id string) (obs.OperatorStatus, bool) {
	return obs.OperatorStatus{}, false
}
func (fakeProvider) Throughput() []obs.Sample { return nil }

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp, string(b)
}

// TestHandlerServesPage mounts the page the way the engine does, behind
// obs.NewHandler, and checks the index, the assets, the 404s and that the
// API still answers beside it.
func TestHandlerServesPage(t *testing.T) {
	srv := httptest.NewServer(obs.NewHandler(fakeProvider{}, nil, ui.Handler()))
	defer srv.Close()

	for _, tc := range []struct {
		path, contentType string
		want              []string // substrings of the body
	}{
		{"/", "text/html; charset=utf-8", []string{`id="graph"`, `id="chart"`, `id="lag"`, `id="checkpoints"`, `id="error"`, `src="app.js"`, `href="style.css"`}},
		{"/index.html", "text/html; charset=utf-8", []string{`id="graph"`}},
		{"/app.js", "text/javascript; charset=utf-8", []string{`"api/job"`, `"api/checkpoints"`, `"api/throughput"`, `"polyline"`, `"g"`, "operator "}},
		{"/style.css", "text/css; charset=utf-8", []string{"#graph g.operator"}},
	} {
		resp, body := get(t, srv, tc.path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200: %s", tc.path, resp.StatusCode, body)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != tc.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, ct, tc.contentType)
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: body lacks %q", tc.path, w)
			}
		}
	}

	for _, path := range []string{"/nope.js", "/assets/app.js", "/app.js/", "/favicon.ico"} {
		resp, body := get(t, srv, path)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404: %s", path, resp.StatusCode, body)
		}
	}

	resp, body := get(t, srv, "/api/job")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"name": "fake"`) {
		t.Errorf("GET /api/job beside the page: status %d, body %s", resp.StatusCode, body)
	}

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", nil)
	pr, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pr.Body.Close()
	if pr.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: status %d, want 405", pr.StatusCode)
	}
}

// TestAssetsSelfContained: the page loads nothing from elsewhere (no CDN,
// no external fonts): no absolute URLs in the assets but the SVG namespace.
func TestAssetsSelfContained(t *testing.T) {
	srv := httptest.NewServer(ui.Handler())
	defer srv.Close()
	for _, path := range []string{"/", "/app.js", "/style.css"} {
		_, body := get(t, srv, path)
		for _, bad := range []string{"https://", "//cdn", "@import", "fonts.googleapis"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q: the page must load nothing from outside the engine", path, bad)
			}
		}
		if strings.Count(body, "http://") != strings.Count(body, "http://www.w3.org/2000/svg") {
			t.Errorf("%s contains an http:// URL other than the SVG namespace", path)
		}
	}
}
