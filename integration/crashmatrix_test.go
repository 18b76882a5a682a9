package integration

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	weir "github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

// The crash matrix of DESIGN.md section 6, the rows with a failpoint or a
// process-level fault, against the real broker: the exactly-once window job
// runs as a child process (`engine run`), is killed at a named protocol step
// (WEIR_FAILPOINT in its environment), and is started again until a run
// ends by itself. The output is then read from the start: read_committed
// must hold every window exactly once with the right value, and
// read_uncommitted must show the aborted records the fault left behind.

var (
	matrixSeeds  = flag.Int("matrix-seeds", 0, "seeds per crash-matrix row (default: $WEIR_CRASH_SEEDS, else 5)")
	matrixSeed   = flag.Int64("matrix-seed", 0, "replay one crash-matrix seed")
	matrixEngine = flag.String("matrix-engine", "", "engine binary for the crash matrix (default: build ./cmd/engine)")
)

const (
	// matrixEvents is the input size of one seed: 4 partitions, 1 ms of
	// event time per event, so 30 one-second windows per key.
	matrixEvents = 30_000
	// matrixLongEvents is the input size of the rows whose run must span
	// many checkpoints.
	matrixLongEvents = 150_000
	// matrixKeys is the number of keys of the input.
	matrixKeys = 100
	// matrixSeedTimeout bounds one seed: producing, every run, and the reads.
	matrixSeedTimeout = 3 * time.Minute
	// matrixRunTimeout bounds one run of the child process.
	matrixRunTimeout = 90 * time.Second
	// matrixMaxRuns bounds the clean runs after the fault.
	matrixMaxRuns = 3
	// matrixWaitTimeout bounds every poll (log lines, the broker's abort).
	matrixWaitTimeout = 90 * time.Second
)

// matrixSeedList is the seeds of one row: -matrix-seed replays one;
// otherwise -matrix-seeds (or WEIR_CRASH_SEEDS, or 5) seeds from a printed
// base.
func matrixSeedList(t *testing.T) []int64 {
	return seedList(t, *matrixSeed, *matrixSeeds, 5, "-matrix-seed")
}

// matrixBinary is the engine binary the matrix runs.
func matrixBinary(t *testing.T) string {
	if *matrixEngine != "" {
		return *matrixEngine
	}
	return engineBinary(t)
}

// matrixJob is the exactly-once window job of one test, as a job file.
type matrixJob struct {
	name, in, out, dir string
	window             time.Duration // window.size; default 1s
	interval           time.Duration // checkpoint.interval; default 100ms
	unbounded          bool          // no source.bounded (default: latest)
	tolerableFailures  int           // checkpoint.tolerable_failures
	checkpointTimeout  time.Duration // checkpoint.timeout; 0: default
	txTimeout          time.Duration // sink.transaction_timeout; 0: default
	restart            string        // the restart: section's keys; default strategy none
	deadLetter         string        // bad_records: dead-letter to this topic; "": fail
}

func (j matrixJob) yaml() string {
	window := j.window
	if window == 0 {
		window = time.Second
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nbrokers: %s\nparallelism: 2\ndelivery: exactly-once\n", j.name, broker.Shared().Bootstrap())
	fmt.Fprintf(&b, "source:\n  topic: %s\n  start:\n    mode: earliest\n", j.in)
	if !j.unbounded {
		b.WriteString("  bounded: latest\n")
	}
	b.WriteString("key_field: user\ntimestamp_field: ts\n")
	fmt.Fprintf(&b, "window:\n  size: %v\n  out_of_orderness: 300ms\n", window)
	b.WriteString("aggregate:\n  value_field: amount\n")
	if j.deadLetter != "" {
		fmt.Fprintf(&b, "bad_records: dead-letter\ndead_letter:\n  topic: %s\n", j.deadLetter)
	}
	fmt.Fprintf(&b, "sink:\n  topic: %s\n", j.out)
	if j.txTimeout > 0 {
		fmt.Fprintf(&b, "  transaction_timeout: %v\n", j.txTimeout)
	}
	interval := j.interval
	if interval == 0 {
		interval = 100 * time.Millisecond
	}
	fmt.Fprintf(&b, "checkpoint:\n  interval: %v\n  dir: %s\n", interval, j.dir)
	if j.checkpointTimeout > 0 {
		fmt.Fprintf(&b, "  timeout: %v\n", j.checkpointTimeout)
	}
	if j.tolerableFailures > 0 {
		fmt.Fprintf(&b, "  tolerable_failures: %d\n", j.tolerableFailures)
	}
	restart := j.restart
	if restart == "" {
		restart = "strategy: none"
	}
	b.WriteString("restart:\n")
	for _, line := range strings.Split(restart, "\n") {
		fmt.Fprintf(&b, "  %s\n", line)
	}
	return b.String()
}

// write writes the job file into dir and returns its path.
func (j matrixJob) write(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "job-"+j.name+".yaml")
	if err := os.WriteFile(path, []byte(j.yaml()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// matrixInput generates and produces the input of a seed into a fresh
// 4-partition topic; it returns the topic, a fresh output topic and the
// events.
func matrixInput(t *testing.T, ctx context.Context, seed int64, n int, step time.Duration) (in, out string, events []verify.Event) {
	t.Helper()
	in, out = broker.Topic(t, 4), broker.Topic(t, 4)
	events, err := verify.Generate(verify.GenConfig{Seed: seed, Keys: matrixKeys, Partitions: 4, Events: n,
		Start: 1_700_000_000_000, Step: step, OutOfOrderness: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, broker.Shared().Bootstrap(), in, events, 4); err != nil {
		t.Fatal(err)
	}
	return in, out, events
}

// child is one `engine run` process; stdout and stderr go to its log file.
type child struct {
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{}
	err     error // cmd.Wait's result, set before done is closed
}

// startChild starts `engine run --config jobFile` with env added to (and
// WEIR_FAILPOINT removed from) this process's environment.
func startChild(t *testing.T, bin, jobFile, logPath string, env ...string) *child {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", jobFile, "--status-interval", "0")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, weir.FailpointEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	c := &child{cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-c.done
		}
	})
	return c
}

// outcome is how a child process ended.
type outcome struct {
	code   int            // exit code; -1 when killed by a signal
	signal syscall.Signal // the signal that killed it, if any
	log    string
}

func (o outcome) String() string {
	if o.code < 0 {
		return "killed by " + o.signal.String()
	}
	return fmt.Sprintf("exit %d", o.code)
}

// wait waits for the child to end, at most matrixRunTimeout, and returns
// how it ended. A child that does not end is killed and fails the test.
func (c *child) wait(t *testing.T) outcome {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(matrixRunTimeout):
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.done
		t.Fatalf("engine run did not end within %v; log %s:\n%s", matrixRunTimeout, c.logPath, tail(c.logText(), 30))
	}
	o := outcome{code: c.cmd.ProcessState.ExitCode(), log: c.logText()}
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		o.signal = ws.Signal()
	}
	var ee *exec.ExitError
	if c.err != nil && !errors.As(c.err, &ee) {
		t.Fatalf("engine run: %v", c.err)
	}
	return o
}

func (c *child) logText() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// waitLog polls the child's log until it contains n lines with s, failing
// the test when the child ends first or after matrixWaitTimeout.
func (c *child) waitLog(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.After(matrixWaitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for strings.Count(c.logText(), s) < n {
		select {
		case <-c.done:
			t.Fatalf("engine run ended (%v) before logging %q %d times:\n%s", c.err, s, n, tail(c.logText(), 30))
		case <-deadline:
			t.Fatalf("engine run did not log %q %d times within %v:\n%s", s, n, matrixWaitTimeout, tail(c.logText(), 30))
		case <-tick.C:
		}
	}
}

// runClean runs the job without a failpoint until a run exits 0, at most
// matrixMaxRuns runs, and returns the number of runs.
func runClean(t *testing.T, bin, jobFile, dir, tag string) int {
	t.Helper()
	for run := 1; run <= matrixMaxRuns; run++ {
		c := startChild(t, bin, jobFile, filepath.Join(dir, fmt.Sprintf("%s-clean-%d.log", tag, run)))
		o := c.wait(t)
		if o.code == 0 {
			if !strings.Contains(o.log, "restoring from checkpoint") {
				t.Logf("clean run %d: did not restore from a checkpoint (none was complete)", run)
			}
			return run
		}
		t.Logf("clean run %d: %v:\n%s", run, o, tail(o.log, 20))
	}
	t.Fatalf("no clean run exited 0 in %d runs", matrixMaxRuns)
	return 0
}

// counts reads topic from the start with both isolation levels and returns
// the numbers of records.
func counts(t *testing.T, ctx context.Context, topic string) (committed, uncommitted int) {
	t.Helper()
	c, err := verify.ReadAll(ctx, broker.Shared().Bootstrap(), topic, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	u, err := verify.ReadAll(ctx, broker.Shared().Bootstrap(), topic, verify.ReadUncommitted)
	if err != nil {
		t.Fatal(err)
	}
	return len(c), len(u)
}

// unstable returns, summed over the partitions of topic, the records
// between the last stable offset and the high watermark (zero exactly when
// no transaction with records is open on the topic), and the number of
// partitions where there are some: each of them holds at least one record
// of an open transaction, at its last stable offset.
func unstable(ctx context.Context, topic string) (records, partitions int, err error) {
	ends := map[string]map[int32]int64{}
	for _, iso := range []string{verify.ReadCommitted, verify.ReadUncommitted} {
		var rnd [8]byte
		_, _ = rand.New(rand.NewSource(time.Now().UnixNano())).Read(rnd[:])
		c, err := kafka.NewConsumer(&kafka.ConfigMap{
			"bootstrap.servers":   broker.Shared().Bootstrap(),
			"group.id":            "weir-matrix-" + hex.EncodeToString(rnd[:]),
			"isolation.level":     iso,
			"enable.auto.commit":  false,
			"enable.metrics.push": false,
			"log_level":           3,
		})
		if err != nil {
			return 0, 0, fmt.Errorf("integration: consumer: %w", err)
		}
		md, err := c.GetMetadata(&topic, false, 10_000)
		if err != nil {
			c.Close()
			return 0, 0, fmt.Errorf("integration: metadata of %s: %w", topic, err)
		}
		ends[iso] = map[int32]int64{}
		for _, p := range md.Topics[topic].Partitions {
			_, high, err := c.QueryWatermarkOffsets(topic, p.ID, 10_000)
			if err != nil {
				c.Close()
				return 0, 0, fmt.Errorf("integration: %s offsets of %s/%d: %w", iso, topic, p.ID, err)
			}
			ends[iso][p.ID] = high
		}
		c.Close()
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
	}
	for p, hw := range ends[verify.ReadUncommitted] {
		if d := hw - ends[verify.ReadCommitted][p]; d > 0 {
			records += int(d)
			partitions++
		}
	}
	return records, partitions, nil
}

// checkExactlyOnce reads out with read_committed from the start and
// compares it with the windows of events: every window exactly once with
// its value. It returns the number of results.
func checkExactlyOnce(t *testing.T, ctx context.Context, out string, events []verify.Event, window time.Duration) int {
	t.Helper()
	got, err := verify.ReadResults(ctx, broker.Shared().Bootstrap(), out, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	v := verify.Compare(len(events), verify.Expected(events, window), got)
	t.Log(v.String())
	if !v.OK {
		t.Fatal(v.Report())
	}
	return len(got)
}

// failpointRow is one row of the matrix with a failpoint: the steps are
// armed in turn, one per seed's subtest.
type failpointRow struct {
	steps []string
	// Each seed arms one hit count (step@N) of [firstHit, firstHit+hits),
	// plus period times a number below periods (0 or 1: none): the same
	// steps of a later checkpoint.
	firstHit, hits  int
	period, periods int
	// events is the input's size; 0: matrixEvents.
	events int
}

// hit is the hit count seed arms.
func (row failpointRow) hit(seed int64) int {
	rng := rand.New(rand.NewSource(seed))
	h := row.firstHit + rng.Intn(row.hits)
	if row.periods > 1 {
		h += row.period * rng.Intn(row.periods)
	}
	return h
}

func runFailpointRow(t *testing.T, row failpointRow) {
	bin := matrixBinary(t)
	open := 0
	for _, step := range row.steps {
		for _, seed := range matrixSeedList(t) {
			name := fmt.Sprintf("seed=%d", seed)
			if len(row.steps) > 1 {
				name = step + "/" + name
			}
			t.Run(name, func(t *testing.T) {
				open += failpointSeed(t, bin, step, seed, row.hit(seed), cmp.Or(row.events, matrixEvents))
			})
		}
	}
	if !t.Failed() && open == 0 && *matrixSeed == 0 {
		t.Fatal("no seed left records in an open transaction at the kill: the abort path was never tested")
	}
}

// failpointSeed runs one seed of a failpoint row: a run killed the hit-th
// time step is reached, clean runs until one ends, and the checks. It
// returns the number of output partitions with an open transaction at the
// kill.
func failpointSeed(t *testing.T, bin, step string, seed int64, hit, nEvents int) int {
	t.Logf("seed %d, failpoint %s@%d (replay with -matrix-seed %d)", seed, step, hit, seed)
	ctx, cancel := context.WithTimeout(context.Background(), matrixSeedTimeout)
	defer cancel()
	in, out, events := matrixInput(t, ctx, seed, nEvents, time.Millisecond)
	dir := t.TempDir()
	job := matrixJob{name: fmt.Sprintf("matrix-%s-%d", step, seed), in: in, out: out, dir: filepath.Join(dir, "checkpoints")}
	jobFile := job.write(t, dir)
	// The run that is killed reads unbounded: a bounded job can end before
	// the step has been reached hit times (a fast run takes few
	// checkpoints); an unbounded one reaches every step at every
	// checkpoint. The clean runs after it are bounded.
	fault := job
	fault.unbounded = true
	faultDir := filepath.Join(dir, "fault")
	if err := os.MkdirAll(faultDir, 0o755); err != nil {
		t.Fatal(err)
	}
	open := killAt(t, ctx, bin, fault.write(t, faultDir), dir, step, hit, out)
	runs := runClean(t, bin, jobFile, dir, "run")
	n := checkExactlyOnce(t, ctx, out, events, time.Second)
	committed, uncommitted := counts(t, ctx, out)
	aborted := uncommitted - committed
	t.Logf("%s@%d: open transactions on %d output partition(s) at the kill; %d clean run(s); %d results committed, %d records aborted",
		step, hit, open, runs, n, aborted)
	if committed != n {
		t.Fatalf("read_committed: %d records, %d results", committed, n)
	}
	if aborted < open {
		t.Fatalf("transactions of the killed run were open on %d output partitions, but only %d records are aborted: one of them was committed", open, aborted)
	}
	return open
}

// killAt runs the job with the failpoint step@hit armed, expects it to die
// by SIGKILL after printing the failpoint line, and returns the number of
// output partitions holding records of a transaction the killed run left
// open. Such a transaction can never commit (its producer is gone, and the
// next run fences its transactional id), so each of these partitions must
// end with at least one aborted record.
func killAt(t *testing.T, ctx context.Context, bin, jobFile, dir, step string, hit int, out string) int {
	t.Helper()
	c := startChild(t, bin, jobFile, filepath.Join(dir, "run-fault.log"), fmt.Sprintf("%s=%s@%d", weir.FailpointEnv, step, hit))
	o := c.wait(t)
	if o.signal != syscall.SIGKILL || !strings.Contains(o.log, "failpoint "+step+" hit") {
		t.Fatalf("with %s=%s@%d the run ended with %v, want SIGKILL at the failpoint (a \"failpoint %s hit\" line):\n%s",
			weir.FailpointEnv, step, hit, o, step, tail(o.log, 30))
	}
	// A commit the coordinator accepted just before the kill gets its
	// markers a moment later: wait until two reads 250 ms apart agree.
	records, partitions, err := unstable(ctx, out)
	for range 20 {
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
		r, p, err2 := unstable(ctx, out)
		if err2 == nil && r == records && p == partitions {
			break
		}
		records, partitions, err = r, p, err2
	}
	t.Logf("run with %s@%d: killed at the failpoint after %d complete checkpoint(s); open transactions on %d output partition(s), %d records behind the last stable offset",
		step, hit, strings.Count(o.log, "checkpoint complete"), partitions, records)
	return partitions
}

// TestMatrixRow1MidEpoch: a crash mid-epoch, before the barrier's
// pre-commit. The restart resumes from the last complete checkpoint and
// the open transaction is aborted. The first barrier usually reaches the
// sinks before any window has fired, so the kill is armed at the 2nd or
// 3rd pre-commit, when the sinks have written results.
func TestMatrixRow1MidEpoch(t *testing.T) {
	runFailpointRow(t, failpointRow{steps: []string{"mid-epoch"}, firstHit: 2, hits: 2})
}

// TestMatrixRow2AfterSnapshotBeforeAck: a crash after a task's snapshot is
// durable, before its ack. The incomplete checkpoint is ignored and its
// pre-committed transaction aborted. Six tasks snapshot per checkpoint,
// the sinks last: the kill is armed at the 5th or 6th snapshot of the
// first or second checkpoint, a sink's, whose transaction is
// pre-committed. The long input keeps the first epochs busy: on a slow
// start the first epoch can end before any window fired, and a short input
// is read whole within one epoch.
func TestMatrixRow2AfterSnapshotBeforeAck(t *testing.T) {
	runFailpointRow(t, failpointRow{steps: []string{"after-snapshot-before-ack"}, firstHit: 5, hits: 2, period: 6, periods: 2, events: matrixLongEvents})
}

// TestMatrixRow3AfterCompleteBeforeCommit: a crash after checkpoint N is
// complete, before its transaction commits. The restart fences (aborting
// the pre-committed transaction) and replays epoch N from the sink's
// state exactly once.
func TestMatrixRow3AfterCompleteBeforeCommit(t *testing.T) {
	runFailpointRow(t, failpointRow{steps: []string{"after-complete-before-commit"}, firstHit: 1, hits: 2})
}

// TestMatrixRow4DuringCommit: a crash between an epoch's data and its
// progress marker, just before the commit is sent, and just after it. The
// restart resolves the epoch from the progress markers: committed once,
// never twice.
func TestMatrixRow4DuringCommit(t *testing.T) {
	runFailpointRow(t, failpointRow{steps: []string{"between-data-and-marker", "during-commit", "after-commit"}, firstHit: 1, hits: 2})
}

// TestMatrixRow6TransactionTimeout: the job is killed after checkpoint N is
// complete and before its commit, and stays down until the broker has
// aborted the pre-committed transaction on its own (transaction.timeout.ms
// 3s). The restart replays epoch N from the sink's state: nothing lost.
//
// The transaction timeout must cover checkpoint.interval plus
// checkpoint.timeout, so the checkpoint timeout is 2s; the first
// checkpoint of a backlog takes most of a second on two busy cores, so a
// few timed-out checkpoints are tolerated rather than failing the run.
func TestMatrixRow6TransactionTimeout(t *testing.T) {
	bin := matrixBinary(t)
	const step = "after-complete-before-commit"
	opened := 0
	defer func() {
		if !t.Failed() && opened == 0 && *matrixSeed == 0 {
			t.Error("no seed left records in an open transaction at the kill: the broker's abort was never tested")
		}
	}()
	for _, seed := range matrixSeedList(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Logf("seed %d (replay with -matrix-seed %d)", seed, seed)
			hit := 1 + rand.New(rand.NewSource(seed)).Intn(2)
			ctx, cancel := context.WithTimeout(context.Background(), matrixSeedTimeout)
			defer cancel()
			in, out, events := matrixInput(t, ctx, seed, matrixEvents, time.Millisecond)
			dir := t.TempDir()
			job := matrixJob{name: fmt.Sprintf("matrix-timeout-%d", seed), in: in, out: out, dir: filepath.Join(dir, "checkpoints"),
				checkpointTimeout: 2 * time.Second, txTimeout: 3 * time.Second, tolerableFailures: 5}
			jobFile := job.write(t, dir)

			open := killAt(t, ctx, bin, jobFile, dir, step, hit, out)
			opened += open
			if open == 0 {
				// The completed checkpoint's epoch was empty (no window had
				// fired yet): nothing for the broker to abort.
				t.Logf("no transaction with records was open at the kill")
			}
			// Stay down until the broker has aborted the open transactions
			// (its timed-out-transaction check runs every 10 s by default).
			deadline := time.After(matrixWaitTimeout)
			for {
				n, _, err := unstable(ctx, out)
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
				select {
				case <-deadline:
					t.Fatalf("the broker did not abort the transactions left open (%d records above the last stable offset) within %v", n, matrixWaitTimeout)
				case <-time.After(250 * time.Millisecond):
				}
			}
			committed, uncommitted := counts(t, ctx, out)
			if uncommitted-committed < open {
				t.Fatalf("after the broker's abort: %d records aborted, want at least one on each of the %d partitions with an open transaction", uncommitted-committed, open)
			}
			t.Logf("the broker aborted the transactions of the killed run: %d records aborted", uncommitted-committed)

			runs := runClean(t, bin, jobFile, dir, "run")
			n := checkExactlyOnce(t, ctx, out, events, time.Second)
			t.Logf("aborted by the broker, replayed from state; %d clean run(s); %d results", runs, n)
		})
	}
}

// TestMatrixRow7Zombie: the unbounded job (instance A) is paused with
// SIGSTOP after its 1st to 3rd checkpoint (seeded); a second instance B starts from a
// copy of A's checkpoints (another checkpoint.dir, the same job name and so
// the same transactional ids) and fences A's ids. More input arrives and A
// is resumed (SIGCONT): it reads it and tries to write its results, and
// must fail on the fencing (exit 1) instead of committing. B is stopped
// with SIGTERM once it has committed every closed window: the output is
// exactly once.
func TestMatrixRow7Zombie(t *testing.T) {
	bin := matrixBinary(t)
	for _, seed := range matrixSeedList(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Logf("seed %d (replay with -matrix-seed %d)", seed, seed)
			rng := rand.New(rand.NewSource(seed))
			ctx, cancel := context.WithTimeout(context.Background(), matrixSeedTimeout)
			defer cancel()
			brokers := broker.Shared().Bootstrap()
			in, out := broker.Topic(t, 4), broker.Topic(t, 4)
			events, err := verify.Generate(verify.GenConfig{Seed: seed, Keys: matrixKeys, Partitions: 4, Events: 2 * matrixEvents,
				Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			// The second half follows the first on every partition.
			if err := verify.Produce(ctx, brokers, in, events[:matrixEvents], 4); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			name := fmt.Sprintf("matrix-zombie-%d", seed)
			dirA, dirB := filepath.Join(dir, "a", "checkpoints"), filepath.Join(dir, "b", "checkpoints")
			jobA := matrixJob{name: name, in: in, out: out, dir: dirA, unbounded: true}
			jobB := jobA
			jobB.dir = dirB
			for _, d := range []string{dirA, dirB} {
				if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			fileA, fileB := jobA.write(t, filepath.Dir(dirA)), jobB.write(t, filepath.Dir(dirB))

			a := startChild(t, bin, fileA, filepath.Join(dir, "zombie.log"))
			// Pause A after a seeded number of completed checkpoints
			// (observed in its log, not timed).
			a.waitLog(t, "checkpoint complete", 1+rng.Intn(3))
			if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			resumed := false
			defer func() {
				if !resumed {
					_ = a.cmd.Process.Signal(syscall.SIGCONT)
				}
			}()
			paused := strings.Count(a.logText(), "checkpoint complete")
			if err := copyTree(dirA, dirB); err != nil {
				t.Fatal(err)
			}
			b := startChild(t, bin, fileB, filepath.Join(dir, "successor.log"))
			// B's sinks fence A's transactional ids before B's first
			// checkpoint can complete.
			b.waitLog(t, "checkpoint complete", 1)
			if err := verify.Produce(ctx, brokers, in, events[matrixEvents:], 4); err != nil {
				t.Fatal(err)
			}
			if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			resumed = true
			oa := a.wait(t)
			t.Logf("zombie paused after %d checkpoint(s), resumed: %v: %s", paused, oa, tail(oa.log, 1))
			if oa.code != 1 || !strings.Contains(strings.ToLower(oa.log), "fenced") {
				t.Fatalf("the zombie ended with %v, want exit 1 naming the fencing:\n%s", oa, tail(oa.log, 20))
			}

			closed := verify.ExpectedBefore(verify.Expected(events, time.Second), closedBefore(events))
			waitCommitted(t, ctx, b, out, len(closed))
			b.waitLog(t, "checkpoint complete", strings.Count(b.logText(), "checkpoint complete")+2)
			if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if ob := b.wait(t); ob.code != 0 {
				t.Fatalf("the successor ended with %v after SIGTERM, want exit 0:\n%s", ob, tail(ob.log, 20))
			}
			got, err := verify.ReadResults(ctx, brokers, out, verify.ReadCommitted)
			if err != nil {
				t.Fatal(err)
			}
			v := verify.Compare(len(events), closed, got)
			t.Log(v.String())
			if !v.OK {
				t.Fatal(v.Report())
			}
			committed, uncommitted := counts(t, ctx, out)
			t.Logf("%d results committed, %d records aborted", len(got), uncommitted-committed)
		})
	}
}

// copyTree copies the regular files and directories under src to dst.
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return fmt.Errorf("integration: copy %s: %w", path, err)
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return fmt.Errorf("integration: copy %s: %w", path, err)
		}
		target := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(target, 0o755)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("integration: copy %s: %w", path, err)
			}
			return os.WriteFile(target, b, fi.Mode().Perm())
		}
		return nil
	})
}

// closedBefore returns the end of event time every window ending at or
// before which an unbounded run fires once it has read events: the lowest
// newest event time over the partitions, less the out-of-orderness.
func closedBefore(events []verify.Event) int64 {
	newest := map[int32]int64{}
	for _, e := range events {
		p := verify.Partition(e, 4)
		newest[p] = max(newest[p], e.TS)
	}
	wm := int64(-1)
	for _, ts := range newest {
		if wm < 0 || ts < wm {
			wm = ts
		}
	}
	return wm - 300
}

// waitCommitted polls out with read_committed until it holds at least n
// records, failing the test when c ends first or after matrixWaitTimeout.
func waitCommitted(t *testing.T, ctx context.Context, c *child, out string, n int) {
	t.Helper()
	deadline := time.After(matrixWaitTimeout)
	for {
		got, err := verify.ReadAll(ctx, broker.Shared().Bootstrap(), out, verify.ReadCommitted)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= n {
			return
		}
		select {
		case <-c.done:
			t.Fatalf("engine run ended (%v) with %d of %d results committed:\n%s", c.err, len(got), n, tail(c.logText(), 30))
		case <-deadline:
			t.Fatalf("%d of %d results committed within %v", len(got), n, matrixWaitTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestMatrixRow12EmptyEpochs: one-hour windows over 75 minutes of event
// time, unbounded: the first window fires once the input is read, the
// second never does, so after the epoch holding the output every epoch is
// empty. The run goes on for ten more checkpoints and is stopped with
// SIGTERM (a savepoint): the output is committed exactly once, and nothing
// was aborted.
func TestMatrixRow12EmptyEpochs(t *testing.T) {
	bin := matrixBinary(t)
	s := seed(t)
	ctx, cancel := context.WithTimeout(context.Background(), matrixSeedTimeout)
	defer cancel()
	in, out, events := matrixInput(t, ctx, s, matrixEvents, 150*time.Millisecond)
	closed := verify.ExpectedBefore(verify.Expected(events, time.Hour), closedBefore(events))
	if len(closed) == 0 {
		t.Fatal("no window closes: the input does not span an hour boundary")
	}
	dir := t.TempDir()
	job := matrixJob{name: fmt.Sprintf("matrix-empty-%d", s), in: in, out: out, dir: filepath.Join(dir, "checkpoints"),
		window: time.Hour, unbounded: true}
	c := startChild(t, bin, job.write(t, dir), filepath.Join(dir, "run.log"))
	waitCommitted(t, ctx, c, out, len(closed))
	before := strings.Count(c.logText(), "checkpoint complete")
	c.waitLog(t, "checkpoint complete", before+10)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	o := c.wait(t)
	if o.code != 0 {
		t.Fatalf("the run ended with %v after SIGTERM, want exit 0:\n%s", o, tail(o.log, 30))
	}
	checkpoints := strings.Count(o.log, "checkpoint complete")
	got, err := verify.ReadResults(ctx, broker.Shared().Bootstrap(), out, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	v := verify.Compare(len(events), closed, got)
	t.Log(v.String())
	if !v.OK {
		t.Fatal(v.Report())
	}
	committed, uncommitted := counts(t, ctx, out)
	t.Logf("%d checkpoints complete, %d of them after the output was committed; %d results; %d records aborted",
		checkpoints, checkpoints-before, len(got), uncommitted-committed)
	if uncommitted != committed {
		t.Fatalf("read_uncommitted shows %d records, read_committed %d: a clean run aborted a transaction", uncommitted, committed)
	}
	if n, _, err := unstable(ctx, out); err != nil {
		t.Fatal(err)
	} else if n != 0 {
		t.Fatalf("%d output records are in a transaction still open after the job stopped", n)
	}
}

// TestMatrixRow14RestartStorm: the unbounded job commits the windows of
// the input, then a malformed record arrives on partition 0 and every
// attempt fails on it: fixed-delay restarts (5 attempts, 50 ms) each
// restore the latest checkpoint and fail again, then the strategy gives
// up: exit 1 with the cause. The committed output holds every closed
// window exactly once with its value, and no transaction is left open.
func TestMatrixRow14RestartStorm(t *testing.T) {
	bin := matrixBinary(t)
	s := seed(t)
	ctx, cancel := context.WithTimeout(context.Background(), matrixSeedTimeout)
	defer cancel()
	brokers := broker.Shared().Bootstrap()
	in, out, events := matrixInput(t, ctx, s, matrixEvents, time.Millisecond)
	expected := verify.Expected(events, time.Second)
	// Windows ending a second before the watermark have surely fired.
	sure := verify.ExpectedBefore(expected, closedBefore(events)-1000)
	dir := t.TempDir()
	job := matrixJob{name: fmt.Sprintf("matrix-storm-%d", s), in: in, out: out, dir: filepath.Join(dir, "checkpoints"),
		unbounded: true, restart: "strategy: fixed-delay\nattempts: 5\ndelay: 50ms"}
	c := startChild(t, bin, job.write(t, dir), filepath.Join(dir, "run.log"))
	waitCommitted(t, ctx, c, out, len(sure))
	c.waitLog(t, "checkpoint complete", strings.Count(c.logText(), "checkpoint complete")+2)
	badOffset, err := produceRaw(ctx, brokers, in, 0, []byte("bad"), []byte("not json"))
	if err != nil {
		t.Fatal(err)
	}
	o := c.wait(t)
	last := tail(o.log, 1)
	t.Logf("%v: %s", o, last)
	if o.code != 1 {
		t.Fatalf("the run ended with %v, want exit 1:\n%s", o, tail(o.log, 30))
	}
	if !strings.Contains(last, "gave up after 5 restarts") || !strings.Contains(last, in+"/0 offset "+strconv.FormatInt(badOffset, 10)) {
		t.Fatalf("the last line does not give the cause (%s/0 offset %d) and \"gave up after 5 restarts\":\n%s",
			in, badOffset, tail(o.log, 10))
	}
	if restarts := strings.Count(o.log, "restarting from the latest complete checkpoint"); restarts != 5 {
		t.Fatalf("the log shows %d restarts, want 5", restarts)
	}
	t.Logf("%d attempts restored from a checkpoint", strings.Count(o.log, "restoring from checkpoint"))

	// No transaction left open: the last stable offset is the end.
	if n, _, err := unstable(ctx, out); err != nil {
		t.Fatal(err)
	} else if n != 0 {
		t.Fatalf("%d output records are in a transaction still open after the job ended", n)
	}
	got, err := verify.ReadResults(ctx, brokers, out, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	// Every committed window once, with its value; every window surely
	// closed among them.
	type windowID struct {
		key   string
		start int64
	}
	want := map[windowID]verify.Result{}
	for _, r := range expected {
		want[windowID{r.Key, r.WindowStart}] = r
	}
	subset := sure
	picked := map[windowID]bool{}
	for _, r := range sure {
		picked[windowID{r.Key, r.WindowStart}] = true
	}
	for _, r := range got {
		id := windowID{r.Key, r.WindowStart}
		if w, ok := want[id]; ok && !picked[id] {
			picked[id] = true
			subset = append(subset, w)
		}
	}
	v := verify.Compare(len(events), subset, got)
	t.Log(v.String())
	if !v.OK {
		t.Fatal(v.Report())
	}
	committed, uncommitted := counts(t, ctx, out)
	t.Logf("%d windows committed once each (%d surely closed, %d in all); %d records aborted",
		len(got), len(sure), len(expected), uncommitted-committed)
}
