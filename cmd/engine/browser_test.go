package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/obs"
)

// browserTimeout bounds one run of headless Chromium.
const browserTimeout = 2 * time.Minute

// TestStatusPageInBrowser starts engine demo with its status page, waits
// for the job's first completed checkpoint and a few throughput samples,
// opens the page in real headless Chromium (installed by
// scripts/chromium.sh, as make test does) and checks the drawn DOM: one
// box per operator of /api/job, an arrow per edge, the checkpoint table's
// rows and the chart's polylines. It saves a screenshot of the page under
// $WEIR_TEST_OUT (default <repo>/.cache/test-output/) and logs its path.
// When Chromium cannot be found, installed or started the test fails with
// the reason; it never skips.
func TestStatusPageInBrowser(t *testing.T) {
	chromium := findChromium(t)
	outDir := testOutputDir(t)

	// --hold keeps the page up after the verdict, so the test can read the
	// verdict too; --duration is long enough for the browser to see the
	// job running on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, engineBin, "demo", "--http", "127.0.0.1:0", "--hold",
		"--duration", "20s", "--rate", "2000", "--checkpoint-interval", "500ms")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdoutPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The reader goroutine owns stdout until exited is closed.
	exited := make(chan struct{})
	var waitErr error
	lineCh := make(chan string, 4096)
	var stdout strings.Builder
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdoutPipe)
		for sc.Scan() {
			stdout.WriteString(sc.Text() + "\n")
			select {
			case lineCh <- sc.Text():
			default: // nobody reads any more: keep draining the pipe
			}
		}
		close(lineCh)
		waitErr = cmd.Wait()
	}()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	// waitLine returns the first line of the demo's stdout matching re.
	waitLine := func(re *regexp.Regexp, timeout time.Duration) []string {
		t.Helper()
		deadline := time.After(timeout)
		for {
			select {
			case l, ok := <-lineCh:
				if !ok {
					t.Fatalf("engine demo ended before printing a line matching %s; stderr:\n%s", re, stderr.String())
				}
				if m := re.FindStringSubmatch(l); m != nil {
					return m
				}
			case <-deadline:
				t.Fatalf("engine demo printed no line matching %s within %v; stderr:\n%s", re, timeout, stderr.String())
			}
		}
	}
	addr := waitLine(regexp.MustCompile(`^status page: http://(127\.0\.0\.1:\d+)/$`), time.Minute)[1]
	url := "http://" + addr + "/"
	t.Logf("status page of the demo: %s", url)

	// Wait for the first completed checkpoint and three throughput samples,
	// polling the API (bounded).
	var job obs.JobStatus
	checkFor(t, time.Minute, "a completed checkpoint, 5 throughput samples and a running job at "+url, func() bool {
		var cps []obs.CheckpointStatus
		var tp []obs.Sample
		if getAPI(addr, "/api/checkpoints", &cps) != nil || getAPI(addr, "/api/throughput", &tp) != nil || getAPI(addr, "/api/job", &job) != nil {
			return false
		}
		done := false
		for _, c := range cps {
			done = done || c.State == "completed"
		}
		return done && len(tp) >= 5 && job.State == "running"
	})
	if len(job.Operators) < 3 || len(job.Edges) < 2 {
		t.Fatalf("/api/job of the demo: %d operators and %d edges, want source, window and sink: %+v", len(job.Operators), len(job.Edges), job)
	}

	dom := runChromium(t, chromium, "--virtual-time-budget=5000", "--dump-dom", url)
	checkPageDOM(t, dom, job)

	shot := filepath.Join(outDir, "status-page.png")
	_ = os.Remove(shot)
	runChromium(t, chromium, "--virtual-time-budget=5000", "--window-size=1280,900", "--hide-scrollbars", "--screenshot="+shot, url)
	st, err := os.Stat(shot)
	if err != nil || st.Size() == 0 {
		t.Fatalf("chromium --screenshot wrote no image at %s: %v", shot, err)
	}
	t.Logf("screenshot of the status page: %s (%d bytes)", shot, st.Size())

	// The demo ends with its verdict and, held, keeps serving until SIGINT.
	waitLine(regexp.MustCompile(`^verdict: `), 3*time.Minute)
	waitLine(regexp.MustCompile(`^demo: --hold: the status page stays up at `+regexp.QuoteMeta(url)), time.Minute)
	var after obs.JobStatus
	if err := getAPI(addr, "/api/job", &after); err != nil {
		t.Errorf("the held status page does not answer after the verdict: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("engine demo after SIGINT: %v; want exit 0 (the verdict's)\nstdout:\n%s\nstderr:\n%s", waitErr, stdout.String(), stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("engine demo did not exit within a minute of SIGINT")
	}
	if !strings.Contains(stdout.String(), "verdict: exactly-once OK") {
		t.Errorf("verdict not OK:\n%s", stdout.String())
	}
}

// checkPageDOM checks the DOM Chromium serialized after the page's scripts
// ran against the job's status.
func checkPageDOM(t *testing.T, dom string, job obs.JobStatus) {
	t.Helper()
	section := func(id string) string {
		i := strings.Index(dom, `<section id="`+id+`"`)
		if i < 0 {
			t.Fatalf("no section #%s in the page's DOM:\n%s", id, dom)
		}
		j := strings.Index(dom[i:], "</section>")
		if j < 0 {
			t.Fatalf("section #%s is not closed in the DOM", id)
		}
		return dom[i : i+j]
	}
	if m := regexp.MustCompile(`<p id="error"[^>]*>([^<]*)`).FindStringSubmatch(dom); m == nil || !strings.Contains(m[0], "hidden") {
		t.Errorf("the page shows its error message: %q", m)
	}

	graph := section("graph")
	boxes := regexp.MustCompile(`<g class="operator bp-(?:low|mid|high)" data-id="([^"]+)"`).FindAllStringSubmatch(graph, -1)
	ids := map[string]bool{}
	for _, b := range boxes {
		ids[b[1]] = true
	}
	if len(boxes) != len(job.Operators) {
		t.Errorf("graph: %d operator boxes, /api/job has %d operators:\n%s", len(boxes), len(job.Operators), graph)
	}
	for _, o := range job.Operators {
		if !ids[o.ID] {
			t.Errorf("graph: no box for operator %q", o.ID)
		}
		if !strings.Contains(graph, `<text class="name" x="10" y="18">`+o.Name+`</text>`) {
			t.Errorf("graph: operator name %q not drawn", o.Name)
		}
		if !strings.Contains(graph, fmt.Sprintf("parallelism %d</text>", o.Parallelism)) {
			t.Errorf("graph: parallelism %d of %q not drawn", o.Parallelism, o.ID)
		}
	}
	for _, e := range job.Edges {
		if !strings.Contains(graph, fmt.Sprintf(`<g class="edge" data-from="%s" data-to="%s" data-ship="%s">`, e.From, e.To, e.Ship)) {
			t.Errorf("graph: no arrow %s -> %s (%s):\n%s", e.From, e.To, e.Ship, graph)
		}
	}
	if !regexp.MustCompile(`<text class="rates"[^>]*>in [0-9.]+[kMG]?/s · out [0-9.]+[kMG]?/s</text>`).MatchString(graph) {
		t.Errorf("graph: no rates drawn:\n%s", graph)
	}

	cps := section("checkpoints")
	rows := regexp.MustCompile(`<tr class="state-completed" data-id="\d+">`).FindAllString(cps, -1)
	if len(rows) == 0 {
		t.Errorf("checkpoint table: no completed checkpoint rows:\n%s", cps)
	}

	chart := section("chart")
	for _, cls := range []string{"in", "out"} {
		m := regexp.MustCompile(`<polyline class="` + cls + `" points="([^"]*)"`).FindStringSubmatch(chart)
		if m == nil {
			t.Errorf("chart: no polyline.%s:\n%s", cls, chart)
			continue
		}
		if n := len(regexp.MustCompile(`-?[0-9.]+,-?[0-9.]+`).FindAllString(m[1], -1)); n < 3 {
			t.Errorf("chart: polyline.%s has %d points, want at least 3: %q", cls, n, m[1])
		}
	}
	if !strings.Contains(chart, `<g class="axis y">`) || !strings.Contains(chart, `<g class="axis x">`) {
		t.Errorf("chart: axes missing:\n%s", chart)
	}

	lag := section("lag")
	if n := len(regexp.MustCompile(`<tr class="[^"]*" data-partition="demo-events/\d+">`).FindAllString(lag, -1)); n != len(job.Partitions) || n == 0 {
		t.Errorf("lag table: %d partition rows, /api/job has %d:\n%s", n, len(job.Partitions), lag)
	}
}

// findChromium runs scripts/chromium.sh (which installs Debian's chromium
// when missing) and returns the browser's path; it fails the test with the
// script's message when there is none.
func findChromium(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "chromium.sh"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("headless Chromium is needed for the status page test and scripts/chromium.sh could not provide it: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	out := lines(stdout.String())
	if len(out) < 2 {
		t.Fatalf("scripts/chromium.sh printed %q, want the path and the version", stdout.String())
	}
	t.Logf("chromium: %s (%s)", out[0], out[1])
	return out[0]
}

// testOutputDir is where the test leaves files for people to look at:
// $WEIR_TEST_OUT, or <repo>/.cache/test-output (git-ignored).
func testOutputDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("WEIR_TEST_OUT")
	if dir == "" {
		dir = filepath.Join("..", "..", ".cache", "test-output")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("test output directory: %v", err)
	}
	return dir
}

// runChromium runs headless Chromium with args after the common flags and
// returns its stdout; it fails the test with Chromium's own output when it
// cannot start or fails.
func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	common := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, chromium, append(common, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (killed after %v)", err, browserTimeout)
		}
		t.Fatalf("chromium cannot start or failed: %s %q: %v\nstderr:\n%s", chromium, args, err, stderr.String())
	}
	return stdout.String()
}

// getAPI GETs path from the status API at addr into v.
func getAPI(addr, path string, v any) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return json.Unmarshal(b, v)
}

// checkFor polls cond every 100 ms until it holds, failing the test after
// timeout with what was awaited.
func checkFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
