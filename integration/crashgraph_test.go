package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

var (
	crashGraphSeeds = flag.Int("crashgraph-seeds", 0, "seeds of TestCrashGraph (default: $WEIR_CRASH_SEEDS, else 10)")
	crashGraphSeed  = flag.Int64("crashgraph-seed", 0, "replay one TestCrashGraph seed")
)

const (
	// cgEvents events of cgKeys users over cgPartitions partitions, one
	// per ms of event time from cgStart (a whole second): the first half
	// covers the windows [cgStart, cgStart+2s), the second the next two
	// seconds, and out-of-order records (up to cgOutOfOrder behind) cross
	// the boundary only by that much.
	cgEvents     = 4000
	cgKeys       = 40
	cgPartitions = 4
	cgStart      = 1_700_000_000_000
	cgOutOfOrder = 200 * time.Millisecond
	// cgBound is the program's watermark bound, above cgOutOfOrder: no
	// record is late.
	cgBound = 300 * time.Millisecond
	// cgWindowMs is the program's window.
	cgWindowMs = 1000
	// cgSeedTimeout bounds one seed; cgRunTimeout each wait on one run;
	// cgExitWait the wait for a killed run to be reaped.
	cgSeedTimeout = 3 * time.Minute
	cgRunTimeout  = time.Minute
	cgExitWait    = 30 * time.Second
	// cgBuildTimeout bounds building the program (a cold cgo build of
	// confluent-kafka-go takes a minute or two).
	cgBuildTimeout = 10 * time.Minute
	// cgShowMax bounds the problems listed in a failure.
	cgShowMax = 15
)

// crashGraphBinary builds integration/crashgraph into a directory of t.
func crashGraphBinary(t *testing.T) string {
	t.Helper()
	root, err := broker.RepoRoot()
	if err != nil {
		t.Fatalf("crashgraph: repository root: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "crashgraph")
	ctx, cancel := context.WithTimeout(context.Background(), cgBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./integration/crashgraph")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./integration/crashgraph: %v\n%s", err, out)
	}
	return bin
}

// cgWindow is a window result of the program (topic 1).
type cgWindow struct {
	User  string `json:"user"`
	Start int64  `json:"start"`
	Sum   int64  `json:"sum"`
	Count int64  `json:"count"`
	Run   int    `json:"run"`
}

// cgCount is a running count of the program (topic 2): record Seq was the
// K-th of User.
type cgCount struct {
	User string `json:"user"`
	K    int64  `json:"k"`
	Seq  int64  `json:"seq"`
	TS   int64  `json:"ts"`
	Run  int    `json:"run"`
	Late bool   `json:"late"`
}

type cgWindowKey struct {
	user  string
	start int64
}

func (k cgWindowKey) String() string { return fmt.Sprintf("%s@%d", k.user, k.start) }

// TestCrashGraph kills a dataflow program (integration/crashgraph: keyed
// Process with value and map state and event-time timers, a window result
// sink and a side-output sink, exactly-once, parallelism 2) with SIGKILL
// two or three times per seed, at seeded numbers of completed checkpoints,
// and lets a last bounded run drain the input. The input is produced in
// two halves, the second only after the first kill, and the first kill
// comes only once every record of the first half is committed: the last
// windows of the first half wait for the second half's watermark, so
// their timers, set before the kill, fire after a restore.
//
// Read with read_committed, the window topic must hold every (user,
// window) exactly once with the sum and count computed from the input, and
// the count topic every (user, k), k = 1..records of the user, exactly
// once, the k-th naming the user's k-th record. Every output record names
// the run that produced it: some window must have been fired by a later
// run than every run that handled its records, i.e. by a timer restored
// from a checkpoint.
func TestCrashGraph(t *testing.T) {
	bin := crashGraphBinary(t)
	for _, seed := range seedList(t, *crashGraphSeed, *crashGraphSeeds, 10, "-crashgraph-seed") {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			crashGraphOneSeed(t, bin, seed)
		})
	}
}

func crashGraphOneSeed(t *testing.T, bin string, seed int64) {
	t.Logf("seed %d (replay: go test -p 1 -count=1 -v ./integration/ -run '^TestCrashGraph$' -crashgraph-seed %d)", seed, seed)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d: %s", seed, fmt.Sprintf(format, args...))
	}
	rng := rand.New(rand.NewSource(seed))
	ctx, cancel := context.WithTimeout(context.Background(), cgSeedTimeout)
	defer cancel()
	brokers := broker.Shared().Bootstrap()
	in, windowsTopic, countsTopic := topic(t, cgPartitions), topic(t, cgPartitions), topic(t, cgPartitions)
	events, err := verify.Generate(verify.GenConfig{Seed: seed, Keys: cgKeys, Partitions: cgPartitions, Events: cgEvents,
		Start: cgStart, Step: time.Millisecond, OutOfOrderness: cgOutOfOrder})
	if err != nil {
		fail("generate: %v", err)
	}
	first, second := events[:cgEvents/2], events[cgEvents/2:]

	dir, err := os.MkdirTemp("", "weir-crashgraph-")
	if err != nil {
		fail("run dir: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d: run logs (run-N.log) and checkpoints kept in %s", seed, dir)
			return
		}
		os.RemoveAll(dir)
	})
	args := func(run int, bounded bool) []string {
		a := []string{
			"-brokers", brokers, "-name", fmt.Sprintf("crashgraph-%d", seed),
			"-in", in, "-windows", windowsTopic, "-counts", countsTopic,
			"-checkpoint-dir", filepath.Join(dir, "checkpoints"), "-checkpoint-interval", "100ms",
			"-parallelism", "2", "-out-of-orderness", cgBound.String(), "-run", fmt.Sprint(run),
		}
		if bounded {
			a = append(a, "-bounded")
		}
		return a
	}

	if err := verify.Produce(ctx, brokers, in, first, cgPartitions); err != nil {
		fail("produce the first half: %v", err)
	}
	// The first run is killed only once every record of the first half is
	// committed on the count topic: its state and timers are then in a
	// completed checkpoint.
	committed, stopWatch, err := watchCommitted(ctx, brokers, countsTopic, len(first))
	if err != nil {
		fail("%v", err)
	}
	defer stopWatch()

	kills := 2 + rng.Intn(2)
	var produced chan error
	restores := 0
	for run := 1; run <= kills; run++ {
		p, err := startGraph(t, bin, args(run, false), filepath.Join(dir, fmt.Sprintf("run-%d.log", run)), run)
		if err != nil {
			fail("%v", err)
		}
		rctx, rcancel := context.WithTimeout(ctx, cgRunTimeout)
		if err := p.waitFor(rctx, "the running line", func() bool { return p.running.Load() }); err != nil {
			rcancel()
			fail("%v", err)
		}
		var target int64
		switch run {
		case 1:
			select {
			case <-committed:
			case <-p.exited:
				rcancel()
				fail("run 1 exited (%v) before the first half was committed\n%s", p.err, p.tail())
			case <-rctx.Done():
				rcancel()
				fail("run 1: the first half (%d records) was not committed on %s within %v\n%s", len(first), countsTopic, cgRunTimeout, p.tail())
			}
			target = p.checkpoints.Load() + int64(rng.Intn(3))
		case 2:
			// The second half goes in while run 2 restores and runs.
			produced = make(chan error, 1)
			go func() { produced <- verify.Produce(ctx, brokers, in, second, cgPartitions) }()
			target = 1 + int64(rng.Intn(4))
		default:
			target = int64(rng.Intn(4))
		}
		// The kill lands after target completed checkpoints of this run,
		// plus 0-80 ms: between checkpoints, or while one is taken or
		// committed.
		if err := p.waitFor(rctx, fmt.Sprintf("%d completed checkpoints", target), func() bool { return p.checkpoints.Load() >= target }); err != nil {
			rcancel()
			fail("%v", err)
		}
		rcancel()
		extra := time.NewTimer(time.Duration(rng.Intn(80)) * time.Millisecond)
		select {
		case <-extra.C:
		case <-p.exited:
			extra.Stop()
			fail("run %d exited (%v) while it was to be killed\n%s", run, p.err, p.tail())
		}
		if err := p.kill(); err != nil {
			fail("%v", err)
		}
		if p.restored.Load() {
			restores++
		}
		t.Logf("run %d: killed (SIGKILL) after %d completed checkpoints (restored from a checkpoint: %v)", run, p.checkpoints.Load(), p.restored.Load())
		if run > 1 && p.checkpoints.Load() > 0 && !p.restored.Load() {
			fail("run %d completed checkpoints without restoring one: the runs before it had completed checkpoints\n%s", run, p.tail())
		}
	}
	select {
	case err := <-produced:
		if err != nil {
			fail("produce the second half: %v", err)
		}
	case <-ctx.Done():
		fail("the second half was not produced: %v", ctx.Err())
	}

	final := kills + 1
	p, err := startGraph(t, bin, args(final, true), filepath.Join(dir, fmt.Sprintf("run-%d.log", final)), final)
	if err != nil {
		fail("%v", err)
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		fail("run %d (bounded) did not end: %v\n%s", final, ctx.Err(), p.tail())
	}
	if p.err != nil {
		fail("run %d (bounded) failed: %v\n%s", final, p.err, p.tail())
	}
	if !p.restored.Load() {
		fail("run %d (bounded) did not restore from a checkpoint\n%s", final, p.tail())
	}
	restores++
	t.Logf("run %d: bounded, finished after %d completed checkpoints; %d kills, %d runs restored from a checkpoint",
		final, p.checkpoints.Load(), kills, restores)

	windows, err := readCommittedJSON[cgWindow](ctx, brokers, windowsTopic)
	if err != nil {
		fail("%v", err)
	}
	counts, err := readCommittedJSON[cgCount](ctx, brokers, countsTopic)
	if err != nil {
		fail("%v", err)
	}
	v := checkCrashGraph(events, windows, counts)
	t.Logf("seed %d: verdict: %s", seed, v.summary)
	if len(v.problems) > 0 {
		fail("%d problems in the output:\n  %s", len(v.problems), strings.Join(v.problems, "\n  "))
	}
}

// cgVerdict is the outcome of checkCrashGraph.
type cgVerdict struct {
	summary  string
	problems []string
}

// checkCrashGraph compares the program's committed output with what the
// input says.
func checkCrashGraph(events []verify.Event, windows []cgWindow, counts []cgCount) cgVerdict {
	var v cgVerdict
	problem := func(format string, args ...any) {
		if len(v.problems) < cgShowMax {
			v.problems = append(v.problems, fmt.Sprintf(format, args...))
		} else if len(v.problems) == cgShowMax {
			v.problems = append(v.problems, "... (more problems not listed)")
		}
	}

	// What the input says: per window its sum, count and records; per
	// user its records in order (one user's records are on one
	// partition, in order, so the program sees them in this order).
	type acc struct{ sum, count int64 }
	want := map[cgWindowKey]acc{}
	windowSeqs := map[cgWindowKey][]int64{}
	userSeqs := map[string][]int64{}
	for _, e := range events {
		k := cgWindowKey{e.Key, e.TS - e.TS%cgWindowMs}
		a := want[k]
		a.sum += e.Amount
		a.count++
		want[k] = a
		windowSeqs[k] = append(windowSeqs[k], e.Seq)
		userSeqs[e.Key] = append(userSeqs[e.Key], e.Seq)
	}

	// Topic 1: every window exactly once, right.
	got := map[cgWindowKey]cgWindow{}
	for _, w := range windows {
		k := cgWindowKey{w.User, w.Start}
		if prev, dup := got[k]; dup {
			problem("window %s written twice: %+v (run %d) and %+v (run %d)", k, prev, prev.Run, w, w.Run)
			continue
		}
		got[k] = w
		a, ok := want[k]
		switch {
		case !ok:
			problem("window %s: %+v, but the input has no record in it", k, w)
		case a.sum != w.Sum || a.count != w.Count:
			problem("window %s: sum %d count %d (run %d), want sum %d count %d", k, w.Sum, w.Count, w.Run, a.sum, a.count)
		}
	}
	var missing []string
	for k := range want {
		if _, ok := got[k]; !ok {
			missing = append(missing, k.String())
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		problem("%d of %d windows missing, e.g. %s", len(missing), len(want), strings.Join(missing[:min(len(missing), 10)], " "))
	}

	// Topic 2: every (user, k) exactly once, the k-th naming the user's
	// k-th record; runOf is the run that handled each record.
	type countKey struct {
		user string
		k    int64
	}
	seenCount := map[countKey]cgCount{}
	runOf := map[int64]int{}
	late := 0
	for _, c := range counts {
		ck := countKey{c.User, c.K}
		if prev, dup := seenCount[ck]; dup {
			problem("count %d of %s written twice: seq %d (run %d) and seq %d (run %d)", c.K, c.User, prev.Seq, prev.Run, c.Seq, c.Run)
			continue
		}
		seenCount[ck] = c
		seqs := userSeqs[c.User]
		switch {
		case c.K < 1 || c.K > int64(len(seqs)):
			problem("count %d of %s (seq %d, run %d): the input has %d records of the user", c.K, c.User, c.Seq, c.Run, len(seqs))
		case seqs[c.K-1] != c.Seq:
			problem("count %d of %s is record seq %d (run %d), want seq %d: the user's count state was lost or counted twice", c.K, c.User, c.Seq, c.Run, seqs[c.K-1])
		}
		if c.Late {
			late++
		}
		runOf[c.Seq] = c.Run
	}
	if late > 0 {
		problem("%d records were behind the watermark (late), want none", late)
	}
	missingCounts, wantCounts := 0, 0
	example := ""
	for user, seqs := range userSeqs {
		wantCounts += len(seqs)
		for k := int64(1); k <= int64(len(seqs)); k++ {
			if _, ok := seenCount[countKey{user, k}]; !ok {
				missingCounts++
				if example == "" {
					example = fmt.Sprintf("count %d of %s (seq %d)", k, user, seqs[k-1])
				}
			}
		}
	}
	if missingCounts > 0 {
		problem("%d of %d running counts missing, e.g. %s", missingCounts, wantCounts, example)
	}

	// Restored timers: a window fired by a later run than every run that
	// handled one of its records had its timer (and its map entry) from a
	// checkpoint: no record of the window was handled by the run that
	// fired it.
	restoredFired, lastFirstHalf, lastFirstHalfLater := 0, 0, 0
	var shown string
	keys := make([]cgWindowKey, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].start != keys[j].start {
			return keys[i].start < keys[j].start
		}
		return keys[i].user < keys[j].user
	})
	for _, k := range keys {
		w := got[k]
		maxRun := 0
		for _, s := range windowSeqs[k] {
			maxRun = max(maxRun, runOf[s])
		}
		if maxRun > 0 && w.Run > maxRun {
			restoredFired++
			if shown == "" {
				shown = fmt.Sprintf("%s (%d records, handled by run %d at the latest) fired by run %d", k, len(windowSeqs[k]), maxRun, w.Run)
			}
		}
		if k.start == cgStart+cgWindowMs { // the first half's last window
			lastFirstHalf++
			if w.Run > 1 {
				lastFirstHalfLater++
			}
		}
	}
	if restoredFired == 0 && len(v.problems) == 0 {
		problem("no window was fired by a run later than every run that handled its records: a timer set before a kill never fired after a restore (the first half's last window [%d,%d) was fired by a later run for %d of %d users)",
			cgStart+cgWindowMs, cgStart+2*cgWindowMs, lastFirstHalfLater, lastFirstHalf)
	}
	v.summary = fmt.Sprintf("%d window results (want %d) exactly once and right: %v; %d running counts (want %d) exactly once and in record order: %v; "+
		"%d windows fired by a run after a kill with every record handled before it (e.g. %s); the first half's last window fired after the first kill for %d of %d users",
		len(windows), len(want), len(got) == len(want) && len(missing) == 0, len(counts), wantCounts, missingCounts == 0 && len(counts) == wantCounts,
		restoredFired, shown, lastFirstHalfLater, lastFirstHalf)
	return v
}

// readCommittedJSON reads topic with read_committed from the start and
// decodes every value.
func readCommittedJSON[T any](ctx context.Context, brokers, topic string) ([]T, error) {
	values, err := verify.ReadAll(ctx, brokers, topic, verify.ReadCommitted)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", topic, err)
	}
	out := make([]T, len(values))
	for i, v := range values {
		if err := json.Unmarshal(v, &out[i]); err != nil {
			return nil, fmt.Errorf("read %s: record %d: %w: %q", topic, i, err, v)
		}
	}
	return out, nil
}

// watchCommitted reads topic with read_committed from the start and
// closes the returned channel once it has read want records. stop ends
// the reading (and waits for it).
func watchCommitted(ctx context.Context, brokers, topic string, want int) (reached <-chan struct{}, stop func(), err error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, nil, fmt.Errorf("watch %s: client: %w", topic, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	ch := make(chan struct{})
	go func() {
		defer close(done)
		n := 0
		for wctx.Err() == nil {
			n += cl.PollFetches(wctx).NumRecords()
			if n >= want {
				close(ch)
				return
			}
		}
	}()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			cancel()
			<-done
			cl.Close()
		})
	}, nil
}

// graphProc is one run of the crashgraph program.
type graphProc struct {
	run     int
	cmd     *exec.Cmd
	logPath string

	checkpoints atomic.Int64 // "checkpoint complete" lines
	restored    atomic.Bool  // "restoring from checkpoint" seen
	running     atomic.Bool  // "crashgraph: running" seen
	notify      chan struct{}

	mu    sync.Mutex
	lines []string // the last stderr lines

	exited chan struct{} // closed once the process is reaped
	err    error         // its exit status, valid after exited
}

// startGraph starts the program with args, its stdout and stderr in
// logPath; t.Cleanup kills it if it still runs.
func startGraph(t *testing.T, bin string, args []string, logPath string, run int) (*graphProc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("run %d: log: %w", run, err)
	}
	p := &graphProc{run: run, logPath: logPath, notify: make(chan struct{}, 1), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = logFile
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("run %d: stderr pipe: %w", run, err)
	}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("run %d: start %s: %w", run, bin, err)
	}
	go func() {
		defer close(p.exited)
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			p.mu.Lock()
			p.lines = append(p.lines, line)
			if len(p.lines) > 40 {
				p.lines = p.lines[len(p.lines)-20:]
			}
			p.mu.Unlock()
			switch {
			case strings.Contains(line, "checkpoint complete"):
				p.checkpoints.Add(1)
			case strings.Contains(line, "restoring from checkpoint"):
				p.restored.Store(true)
			case strings.HasPrefix(line, "crashgraph: running"):
				p.running.Store(true)
			default:
				continue
			}
			select {
			case p.notify <- struct{}{}:
			default:
			}
		}
		p.err = p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if err := p.kill(); err != nil {
			t.Error(err)
		}
	})
	return p, nil
}

// waitFor waits until cond holds, checked on every line the program logs
// that counts; it fails when the program exits first or ctx ends.
func (p *graphProc) waitFor(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-p.notify:
		case <-p.exited:
			if cond() {
				return nil
			}
			return fmt.Errorf("run %d exited (%v) while waiting for %s\n%s", p.run, p.err, what, p.tail())
		case <-ctx.Done():
			return fmt.Errorf("run %d: waiting for %s: %w\n%s", p.run, what, ctx.Err(), p.tail())
		}
	}
	return nil
}

// kill sends SIGKILL (unless the process has exited) and waits until it
// is reaped.
func (p *graphProc) kill() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
		return nil
	case <-time.After(cgExitWait):
		return fmt.Errorf("run %d (pid %d): not reaped %v after SIGKILL", p.run, p.cmd.Process.Pid, cgExitWait)
	}
}

// tail is the program's last stderr lines, for a failure message.
func (p *graphProc) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := min(len(p.lines), 20)
	return fmt.Sprintf("last lines of run %d (%s):\n%s", p.run, p.logPath, strings.Join(p.lines[len(p.lines)-n:], "\n"))
}
