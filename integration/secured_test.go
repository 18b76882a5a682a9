package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	weir "github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

// securedEvents is the input of the exactly-once crash run: large enough
// that the first run is still reading when its first checkpoint completes.
const securedEvents = 100_000

// securedJob is the exactly-once window job file on the SASL_SSL listener;
// the last verb is the kafka section's lines.
const securedJob = `name: %s
brokers: %s
parallelism: 2
delivery: exactly-once
source:
  topic: %s
  start:
    mode: earliest
  bounded: latest
key_field: user
timestamp_field: ts
window:
  size: 1s
  out_of_orderness: 300ms
aggregate:
  value_field: amount
sink:
  topic: %s
checkpoint:
  interval: 100ms
  dir: %s
kafka:
%s`

// securedRun is what one test on the secured broker wrote: files and
// directories to search for the password, and text (errors, in-process
// logs) kept in memory.
type securedRun struct {
	root  string // of the directories below; lives as long as TestSecuredKafka
	paths []string
	texts map[string]string
}

// dir returns a new directory under r.root, searched for the password.
func (r *securedRun) dir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp(r.root, broker.TopicName(t)+"-")
	if err != nil {
		t.Fatal(err)
	}
	r.addPath(d)
	return d
}

func (r *securedRun) addPath(p string)       { r.paths = append(r.paths, p) }
func (r *securedRun) addText(what, s string) { r.texts[what] += s + "\n" }

// TestSecuredKafka starts one broker with a SASL_SSL (SCRAM-SHA-512)
// listener and runs the engine against that listener only: the
// exactly-once window job killed with SIGKILL after a checkpoint and
// restarted (recovery reads the progress markers over SASL_SSL), engine
// checkpoints, the group and timestamp start positions, the offset commit
// on checkpoint, and the broker check refusing a wrong password and an
// untrusted CA. Last, everything the runs wrote is searched for the SCRAM
// password.
func TestSecuredKafka(t *testing.T) {
	c := broker.SecuredForTest(t, 1)
	password := c.Password(broker.SecuredUser)
	if password == "" {
		t.Fatal("the secured cluster has no password for " + broker.SecuredUser)
	}
	bin := engineBinary(t)
	written := &securedRun{root: t.TempDir(), texts: map[string]string{}}

	var jobFile, ckptDir string
	t.Run("ExactlyOnceCrash", func(t *testing.T) {
		jobFile, ckptDir = testSecuredExactlyOnceCrash(t, c, bin, written)
	})
	t.Run("Checkpoints", func(t *testing.T) {
		if jobFile == "" {
			t.Fatal("ExactlyOnceCrash did not leave a job file and checkpoint dir")
		}
		testSecuredCheckpoints(t, bin, jobFile, ckptDir, written)
	})
	t.Run("StartGroup", func(t *testing.T) { testSecuredStartGroup(t, c, written) })
	t.Run("StartTimestamp", func(t *testing.T) { testSecuredStartTimestamp(t, c, written) })
	t.Run("OffsetCommit", func(t *testing.T) { testSecuredOffsetCommit(t, c, written) })
	t.Run("WrongPassword", func(t *testing.T) {
		testSecuredRefused(t, c, bin, written, map[string]string{"sasl.password": password + "-wrong"}, "kafka.sasl.password")
	})
	t.Run("UntrustedCA", func(t *testing.T) {
		testSecuredRefused(t, c, bin, written, map[string]string{"ssl.ca.location": c.UntrustedCAPath()}, "kafka.ssl.ca.location")
	})
	t.Run("NoPasswordWritten", func(t *testing.T) { testSecuredNoPassword(t, password, written) })
}

// securedTopic creates a topic with time-based retention off on c.
func securedTopic(t *testing.T, c *broker.Cluster, partitions int) string {
	t.Helper()
	name := broker.TopicName(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.CreateTopic(ctx, name, partitions, map[string]string{"retention.ms": "-1"}); err != nil {
		t.Fatal(err)
	}
	return name
}

// kafkaSection renders props as the lines of a job file's kafka section.
func kafkaSection(props map[string]string) string {
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s: %s\n", k, strconv.Quote(props[k]))
	}
	return b.String()
}

// engineProc is one `engine run` child process: stdout to a file, stderr
// to a file line by line, watched for the first "checkpoint complete".
type engineProc struct {
	cmd        *exec.Cmd
	stdoutPath string
	stderrPath string
	checkpoint chan struct{} // closed at the first "checkpoint complete"
	exited     chan error    // Wait's result, once stderr is drained
}

func startEngine(t *testing.T, bin, dir, name string, args ...string) *engineProc {
	t.Helper()
	p := &engineProc{
		stdoutPath: filepath.Join(dir, name+".stdout"),
		stderrPath: filepath.Join(dir, name+".stderr"),
		checkpoint: make(chan struct{}),
		exited:     make(chan error, 1),
	}
	stdout, err := os.Create(p.stdoutPath)
	if err != nil {
		t.Fatal(err)
	}
	errFile, err := os.Create(p.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		seen := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(errFile, line)
			if !seen && strings.Contains(line, "checkpoint complete") {
				seen = true
				close(p.checkpoint)
			}
		}
	}()
	go func() {
		<-logged
		err := p.cmd.Wait()
		stdout.Close()
		errFile.Close()
		p.exited <- err
	}()
	return p
}

// wait returns the exit code of p, killing it if ctx ends first.
func (p *engineProc) wait(t *testing.T, ctx context.Context) int {
	t.Helper()
	select {
	case err := <-p.exited:
		return exitCode(t, err)
	case <-ctx.Done():
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		t.Fatalf("engine %v did not end: %v\n%s", p.cmd.Args[1:], ctx.Err(), p.stderrTail())
		return -1
	}
}

func (p *engineProc) stderrTail() string {
	b, _ := os.ReadFile(p.stderrPath)
	return tail(string(b), 20)
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("engine: %v", err)
	}
	return ee.ExitCode()
}

// testSecuredExactlyOnceCrash runs the exactly-once window job on the
// SASL_SSL listener, kills it with SIGKILL once a checkpoint has completed,
// restarts it to the end of its bounded input and compares the output,
// read with read_committed over SASL_SSL, with the expected windows:
// exactly once. It returns the job file and the checkpoint directory.
func testSecuredExactlyOnceCrash(t *testing.T, c *broker.Cluster, bin string, written *securedRun) (string, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := seed(t)
	const partitions = 4
	in, out := securedTopic(t, c, partitions), securedTopic(t, c, partitions)
	events, err := verify.Generate(verify.GenConfig{Seed: s, Keys: 500, Partitions: partitions, Events: securedEvents,
		Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The input goes in on the plain listener; the engine uses only the
	// secured one.
	if err := verify.Produce(ctx, c.Bootstrap(), in, events, partitions); err != nil {
		t.Fatal(err)
	}
	dir := written.dir(t)
	ckptDir := filepath.Join(dir, "checkpoints")
	jobFile := filepath.Join(dir, "job.yaml")
	job := fmt.Sprintf(securedJob, fmt.Sprintf("secured-eo-%d", s), c.SecuredBootstrap(), in, out, ckptDir, kafkaSection(c.ClientProperties()))
	if err := os.WriteFile(jobFile, []byte(job), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"run", "--config", jobFile, "--status-interval", "100ms"}

	// Run 1: SIGKILL as soon as a checkpoint has completed.
	run1 := startEngine(t, bin, dir, "run-1", args...)
	select {
	case <-run1.checkpoint:
		if err := run1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("SIGKILL: %v", err)
		}
		err := <-run1.exited
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("run 1 ended with %v, want killed by SIGKILL\n%s", err, run1.stderrTail())
		}
		t.Log("run 1: killed (SIGKILL) after its first completed checkpoint")
	case err := <-run1.exited:
		t.Fatalf("run 1 ended (%v) before a checkpoint completed; nothing to recover\n%s", err, run1.stderrTail())
	case <-ctx.Done():
		_ = run1.cmd.Process.Signal(syscall.SIGKILL)
		<-run1.exited
		t.Fatalf("run 1: no checkpoint completed: %v\n%s", ctx.Err(), run1.stderrTail())
	}

	// Run 2: restores the checkpoint, resolves the killed run's
	// transactions from the progress markers and runs to the end.
	run2 := startEngine(t, bin, dir, "run-2", args...)
	if code := run2.wait(t, ctx); code != 0 {
		t.Fatalf("run 2 exited %d\n%s", code, run2.stderrTail())
	}
	log2, err := os.ReadFile(run2.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log2), "restoring from checkpoint") {
		t.Fatalf("run 2 did not restore from a checkpoint:\n%s", tail(string(log2), 20))
	}
	t.Logf("run 2: restored and finished: %s", lastLine(string(log2)))

	got, err := readSecuredResults(ctx, c, out)
	if err != nil {
		t.Fatal(err)
	}
	v := verify.Compare(len(events), verify.Expected(events, windowSize), got)
	t.Log(v.String())
	if !v.OK {
		t.Fatal(v.Report())
	}
	return jobFile, ckptDir
}

func lastLine(s string) string {
	return tail(s, 1)
}

// testSecuredCheckpoints lists the checkpoint directory of the crash run
// with engine checkpoints: at least one complete checkpoint.
func testSecuredCheckpoints(t *testing.T, bin, jobFile, ckptDir string, written *securedRun) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	dir := written.dir(t)
	p := startEngine(t, bin, dir, "checkpoints", "checkpoints", "--config", jobFile)
	if code := p.wait(t, ctx); code != 0 {
		t.Fatalf("engine checkpoints exited %d\n%s", code, p.stderrTail())
	}
	listing, err := os.ReadFile(p.stdoutPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("engine checkpoints:\n%s", listing)
	complete := 0
	for _, line := range strings.Split(string(listing), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && (f[len(f)-2] == "complete" || f[len(f)-2] == "savepoint") && strings.HasPrefix(f[len(f)-1], ckptDir) {
			complete++
		}
	}
	if complete == 0 {
		t.Fatalf("engine checkpoints lists no complete checkpoint in %s", ckptDir)
	}
}

// securedSpec is the window job from in to out on c's SASL_SSL listener.
func securedSpec(t *testing.T, c *broker.Cluster, in, out string, start weir.StartSpec) weir.JobSpec {
	spec := jobSpec(t, in, out, 1, start)
	spec.Brokers = c.SecuredBootstrap()
	spec.Kafka = c.ClientProperties()
	return spec
}

// newSecuredJob builds spec with its log (debug and up) in a file kept for
// the password search, warnings and errors also in the test log.
func newSecuredJob(t *testing.T, spec weir.JobSpec, written *securedRun) *weir.Job {
	t.Helper()
	dir := written.dir(t)
	f, err := os.Create(filepath.Join(dir, "job.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	log := slog.New(teeHandler{
		slog.NewTextHandler(&syncFile{f: f}, &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}),
	})
	job, err := weir.NewJob(spec, weir.WithLogger(log))
	if err != nil {
		written.addText("NewJob error", err.Error())
		t.Fatal(err)
	}
	return job
}

// syncFile serializes the writes of the job's goroutines.
type syncFile struct {
	mu sync.Mutex
	f  *os.File
}

func (s *syncFile) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Write(p)
}

// teeHandler sends each record to every handler that takes its level.
type teeHandler []slog.Handler

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, x := range h {
		if x.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var first error
	for _, x := range h {
		if x.Enabled(ctx, r.Level) {
			if err := x.Handle(ctx, r.Clone()); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(teeHandler, len(h))
	for i, x := range h {
		out[i] = x.WithAttrs(as)
	}
	return out
}

func (h teeHandler) WithGroup(name string) slog.Handler {
	out := make(teeHandler, len(h))
	for i, x := range h {
		out[i] = x.WithGroup(name)
	}
	return out
}

// runSecured runs a bounded spec to its end; Run's error is kept for the
// password search.
func runSecured(t *testing.T, ctx context.Context, spec weir.JobSpec, written *securedRun) (*weir.Job, error) {
	t.Helper()
	job := newSecuredJob(t, spec, written)
	err := wait(t, start(ctx, job))
	if err != nil {
		written.addText(t.Name()+" Run error", err.Error())
	}
	written.addText(t.Name()+" stats", fmt.Sprintf("%+v", job.Stats()))
	return job, err
}

// producedOn generates n events and produces them to topic on c's plain
// listener.
func producedOn(t *testing.T, ctx context.Context, c *broker.Cluster, topic string, partitions, n int) []verify.Event {
	t.Helper()
	events, err := verify.Generate(genConfig(seed(t), partitions, n))
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, c.Bootstrap(), topic, events, partitions); err != nil {
		t.Fatal(err)
	}
	return events
}

// testSecuredStartGroup: the group start position over SASL_SSL starts at
// the offsets committed (over SASL_SSL) for the group.
func testSecuredStartGroup(t *testing.T, c *broker.Cluster, written *securedRun) {
	const partitions = 2
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in := securedTopic(t, c, partitions)
	events := producedOn(t, ctx, c, in, partitions, sourceEvents)
	commits := map[int32]int64{0: 10, 1: 25}
	spec := securedSpec(t, c, in, securedTopic(t, c, 1), weir.StartSpec{Mode: weir.StartGroup, AutoOffsetReset: "none"})
	spec.Source.Bounded = weir.BoundLatest
	spec.Source.Properties = map[string]string{"enable.auto.commit": "false"}
	cl := securedGroupClient(t, c)
	group := "weir-" + spec.Name
	commitGroupWith(t, ctx, cl, group, in, commits)
	if got := committedWith(t, ctx, cl, group, in); !reflect.DeepEqual(got, commits) {
		t.Fatalf("group %s has committed %v, want %v", group, got, commits)
	}
	job, err := runSecured(t, ctx, spec, written)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := job.Stats().RecordsIn, int64(len(events))-commits[0]-commits[1]; got != want {
		t.Fatalf("read %d records, want %d (from the committed offsets %v)", got, want, commits)
	}
}

// testSecuredStartTimestamp: the timestamp start position over SASL_SSL
// (offsets looked up by time) reads exactly the records at or after it.
func testSecuredStartTimestamp(t *testing.T, c *broker.Cluster, written *securedRun) {
	const partitions = 2
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in := securedTopic(t, c, partitions)
	events := producedOn(t, ctx, c, in, partitions, 2000)
	from := events[len(events)/2].TS
	first := firstAtOrAfter(events, partitions, from)
	n := perPartition(events, partitions)
	var want int64
	for p, count := range n {
		want += count - int64(first[p])
	}
	spec := securedSpec(t, c, in, securedTopic(t, c, 1), weir.StartSpec{Mode: weir.StartTimestamp, Timestamp: time.UnixMilli(from)})
	spec.Source.Bounded = weir.BoundLatest
	job, err := runSecured(t, ctx, spec, written)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := job.Stats().RecordsIn; got != want || want == 0 || want == int64(len(events)) {
		t.Fatalf("read %d records from timestamp %d, want %d of %d", got, from, want, len(events))
	}
}

// testSecuredOffsetCommit: with checkpoints on, nothing is committed before
// a checkpoint completes; after a savepoint the group (read over SASL_SSL)
// has the offsets of every partition's end.
func testSecuredOffsetCommit(t *testing.T, c *broker.Cluster, written *securedRun) {
	const partitions = 2
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in := securedTopic(t, c, partitions)
	events := producedOn(t, ctx, c, in, partitions, sourceEvents)
	want := perPartition(events, partitions)
	spec := securedSpec(t, c, in, securedTopic(t, c, partitions), weir.StartSpec{Mode: weir.StartEarliest})
	ckptDir := written.dir(t)
	spec.Checkpoint = weir.CheckpointSpec{Interval: time.Hour, Dir: ckptDir} // only the savepoint below
	job := newSecuredJob(t, spec, written)
	done := start(ctx, job)
	group := job.Spec().Source.Group
	cl := securedGroupClient(t, c)
	waitFor(t, done, "every record read", func() bool { return job.Stats().RecordsIn == int64(len(events)) })
	if got := committedWith(t, ctx, cl, group, in); len(got) != 0 {
		t.Fatalf("offsets committed before any checkpoint completed: %v", got)
	}
	path, err := job.Savepoint(ctx)
	if err != nil {
		written.addText("savepoint error", err.Error())
		t.Fatalf("savepoint: %v", err)
	}
	written.addText("savepoint path", path)
	waitFor(t, done, fmt.Sprintf("committed offsets %v", want), func() bool {
		return reflect.DeepEqual(committedWith(t, ctx, cl, group, in), want)
	})
	if st := job.Stats(); st.OffsetCommits < 1 || st.OffsetCommitFailures != 0 {
		t.Errorf("stats %+v: want at least one offset commit and no failure", st)
	}
	job.Drain()
	if err := wait(t, done); err != nil {
		written.addText("Run error", err.Error())
		t.Fatalf("Run: %v", err)
	}
	written.addText(t.Name()+" stats", fmt.Sprintf("%+v", job.Stats()))
}

// testSecuredRefused runs engine run with the client properties changed by
// bad: exit 2, one line on stderr naming key, nothing written to the
// output topic.
func testSecuredRefused(t *testing.T, c *broker.Cluster, bin string, written *securedRun, bad map[string]string, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in, out := securedTopic(t, c, 1), securedTopic(t, c, 1)
	producedOn(t, ctx, c, in, 1, 100)
	props := c.ClientProperties()
	for k, v := range bad {
		props[k] = v
	}
	dir := written.dir(t)
	jobFile := filepath.Join(dir, "job.yaml")
	job := fmt.Sprintf(securedJob, "secured-refused", c.SecuredBootstrap(), in, out, filepath.Join(dir, "checkpoints"), kafkaSection(props))
	if err := os.WriteFile(jobFile, []byte(job), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startEngine(t, bin, dir, "run", "run", "--config", jobFile, "--check-timeout", "20s")
	code := p.wait(t, ctx)
	stderr, err := os.ReadFile(p.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.TrimRight(string(stderr), "\n")
	t.Logf("engine run: exit %d, stderr: %s", code, msg)
	if code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if strings.Contains(msg, "\n") || msg == "" {
		t.Errorf("stderr is not one line:\n%s", msg)
	}
	if !strings.Contains(msg, key) {
		t.Errorf("error %q does not name %s", msg, key)
	}
	for _, v := range bad {
		if strings.Contains(v, "-wrong") && strings.Contains(msg, v) {
			t.Errorf("error %q shows the wrong password", msg)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "checkpoints")); err == nil {
		t.Errorf("checkpoint dir %s created by a run refused before it started", filepath.Join(dir, "checkpoints"))
	}
	recs, err := verify.ReadAll(ctx, c.Bootstrap(), out, verify.ReadUncommitted)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Errorf("%d records written to %s by a run refused before it started", len(recs), out)
	}
}

// testSecuredNoPassword searches everything the runs wrote, besides the job
// files that hold it, for the SCRAM password.
func testSecuredNoPassword(t *testing.T, password string, written *securedRun) {
	if len(written.paths) == 0 {
		t.Fatal("nothing to search: no run wrote anything")
	}
	files, bytesRead, controls := 0, 0, 0
	for _, root := range written.paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if filepath.Base(path) == "job.yaml" {
				// The input, not written by a run: it holds the password,
				// which shows that the search finds it.
				if bytes.Contains(b, []byte(password)) {
					controls++
				}
				return nil
			}
			files++
			bytesRead += len(b)
			if i := bytes.Index(b, []byte(password)); i >= 0 {
				lo, hi := max(i-120, 0), min(i+len(password)+40, len(b))
				t.Errorf("the password is in %s at byte %d: %q", path, i, bytes.ReplaceAll(b[lo:hi], []byte(password), []byte("<PASSWORD>")))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if controls == 0 {
		t.Error("no job file holds the password: the search is not known to find it")
	}
	for what, s := range written.texts {
		if strings.Contains(s, password) {
			t.Errorf("the password is in %s: %q", what, strings.ReplaceAll(s, password, "<PASSWORD>"))
		}
	}
	t.Logf("searched %d files (%d bytes) and %d texts the runs wrote: no password", files, bytesRead, len(written.texts))
}

// securedGroupClient returns a franz-go client of c's SASL_SSL listener
// (SCRAM-SHA-512, the test CA), closed with the test.
func securedGroupClient(t *testing.T, c *broker.Cluster) *kgo.Client {
	t.Helper()
	pem, err := os.ReadFile(c.CAPath())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", c.CAPath())
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(c.SecuredBootstrap(), ",")...),
		kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}),
		kgo.SASL(scram.Auth{User: broker.SecuredUser, Pass: c.Password(broker.SecuredUser)}.AsSha512Mechanism()),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// readSecuredResults reads every result of topic with read_committed over
// c's SASL_SSL listener, up to each partition's last stable offset as of
// the call, and parses them (record key = result key).
func readSecuredResults(ctx context.Context, c *broker.Cluster, topic string) ([]verify.Result, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	cfg := kafka.ConfigMap{
		"bootstrap.servers":    c.SecuredBootstrap(),
		"group.id":             "weir-secured-reader-" + hex.EncodeToString(rnd[:]),
		"enable.auto.commit":   false,
		"auto.offset.reset":    "earliest",
		"isolation.level":      verify.ReadCommitted,
		"enable.partition.eof": true,
		"log_level":            3,
	}
	for k, v := range c.ClientProperties() {
		cfg[k] = v
	}
	cons, err := kafka.NewConsumer(&cfg)
	if err != nil {
		return nil, fmt.Errorf("secured reader: %w", err)
	}
	defer cons.Close()
	md, err := cons.GetMetadata(&topic, false, int(waitTimeout/time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("secured reader: metadata of %s: %w", topic, err)
	}
	tm := md.Topics[topic]
	if tm.Error.Code() != kafka.ErrNoError || len(tm.Partitions) == 0 {
		return nil, fmt.Errorf("secured reader: topic %s: %v (%d partitions)", topic, tm.Error, len(tm.Partitions))
	}
	end := map[int32]int64{}
	next := map[int32]int64{}
	var assign []kafka.TopicPartition
	for _, pm := range tm.Partitions {
		var lo, hi int64
		for {
			lo, hi, err = cons.QueryWatermarkOffsets(topic, pm.ID, int(waitTimeout/time.Millisecond))
			var ke kafka.Error
			if err == nil || !errors.As(err, &ke) || !ke.IsRetriable() || ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
		if err != nil {
			return nil, fmt.Errorf("secured reader: %s partition %d: watermarks: %w", topic, pm.ID, err)
		}
		if hi > lo {
			end[pm.ID], next[pm.ID] = hi, lo
			assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: pm.ID, Offset: kafka.Offset(lo)})
		}
	}
	if len(assign) > 0 {
		if err := cons.Assign(assign); err != nil {
			return nil, fmt.Errorf("secured reader: assign: %w", err)
		}
	}
	recs := map[int32][]verify.Result{}
	done := func() bool {
		for p, e := range end {
			if next[p] < e {
				return false
			}
		}
		return true
	}
	for !done() {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("secured reader: %s not read to the end (at %v of %v): %w", topic, next, end, err)
		}
		switch ev := cons.Poll(100).(type) {
		case nil:
			var q []kafka.TopicPartition
			for p := range end {
				q = append(q, kafka.TopicPartition{Topic: &topic, Partition: p})
			}
			if pos, err := cons.Position(q); err == nil {
				for _, tp := range pos {
					if tp.Offset >= 0 {
						next[tp.Partition] = max(next[tp.Partition], int64(tp.Offset))
					}
				}
			}
		case *kafka.Message:
			tp := ev.TopicPartition
			if tp.Error != nil {
				return nil, fmt.Errorf("secured reader: %s partition %d: %w", topic, tp.Partition, tp.Error)
			}
			off := int64(tp.Offset)
			if off >= end[tp.Partition] {
				continue
			}
			r, err := verify.ParseResult(ev.Value)
			if err != nil {
				return nil, fmt.Errorf("secured reader: %s partition %d offset %d: %w", topic, tp.Partition, off, err)
			}
			if string(ev.Key) != r.Key {
				return nil, fmt.Errorf("secured reader: %s partition %d offset %d: record key %q, result key %q", topic, tp.Partition, off, ev.Key, r.Key)
			}
			recs[tp.Partition] = append(recs[tp.Partition], r)
			next[tp.Partition] = max(next[tp.Partition], off+1)
		case kafka.PartitionEOF:
			next[ev.Partition] = max(next[ev.Partition], int64(ev.Offset))
		case kafka.Error:
			if ev.IsFatal() {
				return nil, fmt.Errorf("secured reader: %w", ev)
			}
		}
	}
	ids := make([]int32, 0, len(recs))
	for p := range recs {
		ids = append(ids, p)
	}
	slices.Sort(ids)
	var out []verify.Result
	for _, p := range ids {
		out = append(out, recs[p]...)
	}
	return out, nil
}
