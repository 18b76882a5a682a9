package integration

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

// The example programs (examples/fraud, examples/pipeline,
// examples/window) built as binaries and run against the real broker:
// exactly-once, parallelism 2, a short checkpoint interval and a bounded
// source, over a generated input. Their output, read with read_committed,
// must be what the test computes from the input on its own, exactly once;
// read with read_uncommitted, the topics must hold nothing else but
// records of aborted transactions, and no transaction may be left open.

var examplesSeed = flag.Int64("examples-seed", 0, "seed of a TestExample* input to replay (0: a fresh seed per test)")

const (
	// exPartitions is the partition count of every topic the tests create.
	exPartitions = 4
	// exBuildTimeout bounds building the examples (a cold cgo build of
	// confluent-kafka-go takes a minute or two).
	exBuildTimeout = 10 * time.Minute
	// exRunTimeout bounds one run of an example; exWaitDelay the wait for
	// its output pipes once it is killed.
	exRunTimeout = 2 * time.Minute
	exWaitDelay  = 10 * time.Second
	// exTestTimeout bounds producing the input and reading the output.
	exTestTimeout = 3 * time.Minute
	// exStableTimeout bounds the wait for the transaction markers of the
	// last commits to reach the output partitions after the run.
	exStableTimeout = 30 * time.Second
	// exShowMax bounds the differences listed in a failure.
	exShowMax = 12
)

var (
	examplesOnce sync.Once
	examplesDir  string
	examplesErr  error
)

// exampleBinary builds the three examples once per test binary (one go
// build, bounded by exBuildTimeout) and returns the path of the named one.
func exampleBinary(t *testing.T, name string) string {
	t.Helper()
	examplesOnce.Do(func() {
		root, err := broker.RepoRoot()
		if err != nil {
			examplesErr = fmt.Errorf("examples: repository root: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "weir-examples-")
		if err != nil {
			examplesErr = fmt.Errorf("examples: binary dir: %w", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), exBuildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
			"./examples/fraud", "./examples/pipeline", "./examples/window")
		cmd.Dir = root
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			examplesErr = fmt.Errorf("go build ./examples/{fraud,pipeline,window} (after %v): %w\n%s",
				time.Since(start).Round(time.Millisecond), err, out)
			return
		}
		examplesDir = dir
	})
	if examplesErr != nil {
		t.Fatal(examplesErr)
	}
	return filepath.Join(examplesDir, name)
}

// exSeed returns the test's generator seed and logs how to replay it.
func exSeed(t *testing.T) int64 {
	t.Helper()
	s := *examplesSeed
	if s == 0 {
		s = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay: go test -p 1 -count=1 -v ./integration/ -run '^%s$' -examples-seed %d)", s, t.Name(), s)
	return s
}

// exClient returns a client of the shared broker for producing and
// offset requests, closed when the test ends.
func exClient(t *testing.T) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker.Shared().Bootstrap()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatalf("examples: client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// exProduce writes recs (topic and partition set on each) with the
// client's idempotent producer, in slice order per partition.
func exProduce(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("examples: produce %d records: %w", len(recs), err)
	}
	return nil
}

// exPartition spreads keys over the partitions, each key on one.
func exPartition(key string) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int32(h.Sum32() % exPartitions)
}

// exampleRun is what a finished run of an example printed.
type exampleRun struct {
	stdout      string
	checkpoints int // "checkpoint complete" lines on stderr
}

// runExample runs the binary with args, bounded by exRunTimeout, and fails
// the test unless it exits 0. It logs the warnings and errors the program
// logged and its counters line.
func runExample(t *testing.T, bin string, args ...string) exampleRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), exRunTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = exWaitDelay
	name := filepath.Base(bin)
	t.Logf("run: %s %s", name, strings.Join(args, " "))
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began).Round(time.Millisecond)

	var run exampleRun
	var notable []string
	sc := bufio.NewScanner(bytes.NewReader(stderr.Bytes()))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "checkpoint complete"):
			run.checkpoints++
		case strings.Contains(line, " WARN ") || strings.Contains(line, " ERROR "):
			notable = append(notable, line)
		}
	}
	for i, line := range notable {
		if i == exShowMax {
			t.Logf("%s: ... %d more warnings and errors", name, len(notable)-i)
			break
		}
		t.Logf("%s logged: %s", name, line)
	}
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s did not exit within %v (killed): %v\nstdout: %s\nstderr (last lines):\n%s",
			name, exRunTimeout, err, stdout.String(), tail(stderr.String(), 30))
	case err != nil:
		t.Fatalf("%s exited after %v: %v, want exit 0\nstdout: %s\nstderr (last lines):\n%s",
			name, took, err, stdout.String(), tail(stderr.String(), 30))
	}
	run.stdout = strings.TrimSpace(stdout.String())
	t.Logf("%s exited 0 after %v, %d checkpoints completed; it printed: %s", name, took, run.checkpoints, run.stdout)
	return run
}

// counters parses the numbers named by re's groups from the counters line
// a run printed.
func (r exampleRun) counters(t *testing.T, re *regexp.Regexp) []int64 {
	t.Helper()
	m := re.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("the counters line %q does not match %s", r.stdout, re)
	}
	out := make([]int64, len(m)-1)
	for i, s := range m[1:] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("counters line %q: %q: %v", r.stdout, s, err)
		}
		out[i] = n
	}
	return out
}

// endOffsets returns the end offset of every partition of topic: the high
// watermark (isolation 0, read_uncommitted) or the last stable offset
// (isolation 1, read_committed).
func endOffsets(ctx context.Context, cl *kgo.Client, topic string, partitions int, isolation int8) (map[int32]int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.IsolationLevel = isolation
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = int32(p)
		rp.Timestamp = -1 // the end
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s (isolation %d): %w", topic, isolation, err)
	}
	ends := map[int32]int64{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return nil, fmt.Errorf("list offsets of %s/%d (isolation %d): %w", topic, rp.Partition, isolation, err)
			}
			ends[rp.Partition] = rp.Offset
		}
	}
	if len(ends) != partitions {
		return nil, fmt.Errorf("list offsets of %s (isolation %d): %d partitions answered, want %d", topic, isolation, len(ends), partitions)
	}
	return ends, nil
}

// waitStable waits, bounded by exStableTimeout, until every partition of
// topic has its last stable offset at its high watermark: no transaction
// holds records on it any more. Commit markers are written by the
// transaction coordinator after the producer's commit returns, so they may
// trail the program's exit by a moment; a transaction left open stays.
func waitStable(ctx context.Context, cl *kgo.Client, topic string, partitions int) (map[int32]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, exStableTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	var lso, hwm map[int32]int64
	for {
		var err error
		if lso, err = endOffsets(ctx, cl, topic, partitions, 1); err == nil {
			if hwm, err = endOffsets(ctx, cl, topic, partitions, 0); err == nil {
				open := false
				for p, h := range hwm {
					open = open || lso[p] != h
				}
				if !open {
					return hwm, nil
				}
			}
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil && (lso == nil || hwm == nil) {
				return nil, fmt.Errorf("%s: offsets: %w", topic, lastErr)
			}
			var open []string
			for p := range int32(partitions) {
				if lso[p] != hwm[p] {
					open = append(open, fmt.Sprintf("partition %d: last stable offset %d, high watermark %d", p, lso[p], hwm[p]))
				}
			}
			return nil, fmt.Errorf("%s: a transaction is still open %v after the program exited (%s)", topic, exStableTimeout, strings.Join(open, "; "))
		case <-tick.C:
		}
	}
}

// readLog reads every partition of topic from its start to ends with the
// given isolation, keeping the transaction markers (control records), and
// returns the records by partition, in offset order. With read_committed
// the aborted records are not returned, their abort markers are.
func readLog(ctx context.Context, topic string, ends map[int32]int64, iso kgo.IsolationLevel) ([]*kgo.Record, error) {
	offsets := map[int32]kgo.Offset{}
	for p, end := range ends {
		if end > 0 {
			offsets[p] = kgo.NewOffset().AtStart()
		}
	}
	if len(offsets) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker.Shared().Bootstrap()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords())
	if err != nil {
		return nil, fmt.Errorf("read %s: client: %w", topic, err)
	}
	defer cl.Close()
	next := map[int32]int64{}
	done := func() bool {
		for p := range offsets {
			if next[p] < ends[p] {
				return false
			}
		}
		return true
	}
	var recs []*kgo.Record
	for !done() {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			var unread []string
			for p := range offsets {
				if next[p] < ends[p] {
					unread = append(unread, fmt.Sprintf("%d (at %d of %d)", p, next[p], ends[p]))
				}
			}
			slices.Sort(unread)
			return nil, fmt.Errorf("read %s: partitions %s not read to the end: %w", topic, strings.Join(unread, ", "), err)
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("read %s/%d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				recs = append(recs, r)
				next[r.Partition] = max(next[r.Partition], r.Offset+1)
			}
		})
	}
	slices.SortFunc(recs, func(a, b *kgo.Record) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	return recs, nil
}

// outputLog is an output topic after the run, read both ways.
type outputLog struct {
	committed []*kgo.Record // read_committed, data records only
	aborted   []*kgo.Record // data records of aborted transactions
	markers   int           // commit and abort markers
}

// readOutput waits until no transaction is open on topic, reads it with
// read_committed and with read_uncommitted, and checks them against each
// other: read_uncommitted, walked partition by partition with its
// transaction markers, holds the committed records (exactly the ones
// read_committed returns) and otherwise only records of aborted
// transactions, and no transaction is left open.
func readOutput(t *testing.T, ctx context.Context, cl *kgo.Client, topic string) outputLog {
	t.Helper()
	ends, err := waitStable(ctx, cl, topic, exPartitions)
	if err != nil {
		t.Fatalf("examples: %v", err)
	}
	committedLog, err := readLog(ctx, topic, ends, kgo.ReadCommitted())
	if err != nil {
		t.Fatalf("examples: read_committed: %v", err)
	}
	uncommittedLog, err := readLog(ctx, topic, ends, kgo.ReadUncommitted())
	if err != nil {
		t.Fatalf("examples: read_uncommitted: %v", err)
	}

	var out outputLog
	for _, r := range committedLog {
		if !r.Attrs.IsControl() {
			out.committed = append(out.committed, r)
		}
	}
	// Walk the full log: a transactional record is pending until its
	// producer's next marker on the partition commits or aborts it.
	type at struct {
		p   int32
		off int64
	}
	var walked []*kgo.Record // committed by the walk
	var open []*kgo.Record
	pending := map[int64][]*kgo.Record{}
	flush := func() {
		for _, rs := range pending {
			open = append(open, rs...)
		}
		clear(pending)
	}
	for i, r := range uncommittedLog {
		if i > 0 && uncommittedLog[i-1].Partition != r.Partition {
			flush()
		}
		switch {
		case r.Attrs.IsControl():
			if len(r.Key) < 4 {
				t.Fatalf("%s/%d offset %d: control record with key %x", topic, r.Partition, r.Offset, r.Key)
			}
			out.markers++
			switch typ := binary.BigEndian.Uint16(r.Key[2:4]); typ {
			case 0:
				out.aborted = append(out.aborted, pending[r.ProducerID]...)
			case 1:
				walked = append(walked, pending[r.ProducerID]...)
			default:
				t.Fatalf("%s/%d offset %d: control record of type %d", topic, r.Partition, r.Offset, typ)
			}
			delete(pending, r.ProducerID)
		case r.Attrs.IsTransactional():
			pending[r.ProducerID] = append(pending[r.ProducerID], r)
		default:
			walked = append(walked, r) // not in a transaction: visible at once
		}
	}
	flush()
	if len(open) > 0 {
		r := open[0]
		t.Fatalf("%s: %d records of transactions neither committed nor aborted, e.g. partition %d offset %d (producer %d): %s",
			topic, len(open), r.Partition, r.Offset, r.ProducerID, r.Value)
	}
	pos := func(rs []*kgo.Record) []at {
		ats := make([]at, len(rs))
		for i, r := range rs {
			ats[i] = at{r.Partition, r.Offset}
		}
		slices.SortFunc(ats, func(a, b at) int { return cmp.Or(cmp.Compare(a.p, b.p), cmp.Compare(a.off, b.off)) })
		return ats
	}
	if a, b := pos(out.committed), pos(walked); !slices.Equal(a, b) {
		t.Fatalf("%s: read_committed returned %d records, the log with its markers commits %d", topic, len(a), len(b))
	}
	t.Logf("%s: %d records committed, %d in aborted transactions, %d transaction markers, no transaction open",
		topic, len(out.committed), len(out.aborted), out.markers)
	return out
}

// decodeStrict decodes a JSON object into v, refusing unknown fields.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the object")
	}
	return nil
}

// diffMultisets compares two multisets of values and returns their
// differences (at most exShowMax, the last line saying how many more),
// or nil when they are equal: a value written more often than expected
// is a duplicate, less often missing, never expected unexpected.
func diffMultisets[K comparable](got, want map[K]int) []string {
	var diffs []string
	for k, w := range want {
		switch g := got[k]; {
		case g == 0:
			diffs = append(diffs, fmt.Sprintf("missing: %+v (want it %d times)", k, w))
		case g != w:
			diffs = append(diffs, fmt.Sprintf("%+v written %d times, want %d", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected: %+v (%d times)", k, g))
		}
	}
	slices.Sort(diffs)
	if len(diffs) > exShowMax {
		diffs = append(diffs[:exShowMax], fmt.Sprintf("... %d more differences", len(diffs)-exShowMax))
	}
	return diffs
}

// ---- examples/fraud ----

// fraudTx is a transaction as the fraud example reads it.
type fraudTx struct {
	AccountID int64   `json:"account_id"`
	Amount    float64 `json:"amount"`
	TS        int64   `json:"ts"`
}

// fraudAlert is an alert as the fraud example writes it.
type fraudAlert struct {
	AccountID int64   `json:"account_id"`
	TS        int64   `json:"ts"`
	Amount    float64 `json:"amount"`
}

// fraudGenTx is a generated transaction, its amount in cents.
type fraudGenTx struct {
	account int64
	cents   int64
	ts      int64
}

const (
	fraudAccounts = 240
	fraudStart    = 1_714_564_800_000 // 2024-05-01T12:00:00Z
	fraudMinute   = 60_000
	fraudSmall    = 100    // below 1.00 is small
	fraudLarge    = 50_000 // above 500.00 is large
)

// genFraud returns transactions of fraudAccounts accounts in production
// order: by time, ties by account, so that every partition is in time
// order and no transaction is ever behind the watermark. Each account's
// times strictly increase. Each account starts with one of ten scripted
// patterns around the rule's edges (five raise an alert for certain, four
// are near misses, one is empty), followed by random transactions whose gaps
// cluster around the minute and whose amounts include the thresholds.
func genFraud(rng *rand.Rand) []fraudGenTx {
	var txs []fraudGenTx
	for a := range fraudAccounts {
		id := int64(7001 + a)
		ts := fraudStart + rng.Int63n(2*fraudMinute)
		add := func(gap, cents int64) {
			ts += gap
			txs = append(txs, fraudGenTx{account: id, cents: cents, ts: ts})
		}
		switch a % 10 {
		case 0: // small, large 30 s later: alert
			add(1, 50)
			add(30_000, 72_530)
		case 1: // 0.99, then 500.01 1 ms inside the minute: alert
			add(1, 99)
			add(fraudMinute-1, 50_001)
		case 2: // small, large exactly a minute later: no alert
			add(1, 1)
			add(fraudMinute, 99_900)
		case 3: // small, large 1 ms after the minute: no alert
			add(1, 25)
			add(fraudMinute+1, 150_000)
		case 4: // small, normal, large within 2 s: the normal one clears the flag
			add(1, 75)
			add(1_000, 4_200)
			add(1_000, 80_000)
		case 5: // 1.00 is not small, 500.00 is not large: no alerts
			add(1, 100)
			add(5_000, 90_000)
			add(1_000, 50)
			add(5_000, 50_000)
		case 6: // small, small 20 s later, large 50 s after that: the second small re-arms
			add(1, 10)
			add(20_000, 20)
			add(50_000, 60_000)
		case 7: // large, small, large 1 ms later: alert
			add(1, 80_000)
			add(1_000, 30)
			add(1, 70_000)
		case 8: // small, large 2 min later (no alert), small, large 10 s later (alert)
			add(1, 5)
			add(2*fraudMinute, 300_000)
			add(1_000, 5)
			add(10_000, 51_000)
		case 9: // random only
		}
		for n := 6 + rng.Intn(12); n > 0; n-- {
			var gap int64
			switch r := rng.Intn(10); {
			case r < 4:
				gap = 1 + rng.Int63n(fraudMinute-1) // within the minute
			case r < 5:
				gap = fraudMinute - 1 + rng.Int63n(3) // at its edge
			default:
				gap = fraudMinute + 1 + rng.Int63n(2*fraudMinute)
			}
			var cents int64
			switch r := rng.Intn(20); {
			case r < 6:
				cents = 1 + rng.Int63n(fraudSmall-1) // small
			case r < 10:
				cents = fraudLarge + 1 + rng.Int63n(250_000) // large
			case r == 10:
				cents = fraudSmall // the thresholds
			case r == 11:
				cents = fraudLarge
			default:
				cents = fraudSmall + rng.Int63n(fraudLarge-fraudSmall+1) // 1.00 .. 500.00
			}
			add(gap, cents)
		}
	}
	slices.SortStableFunc(txs, func(x, y fraudGenTx) int {
		return cmp.Or(cmp.Compare(x.ts, y.ts), cmp.Compare(x.account, y.account))
	})
	return txs
}

// fraudExpected applies the rule, in cents, to each account's
// transactions in time order: a transaction above 500.00 less than a
// minute after one below 1.00, with no transaction of the account in
// between, is an alert. It also counts the near misses in the input.
func fraudExpected(txs []fraudGenTx) (alerts map[fraudAlert]int, nearMisses map[string]int) {
	byAccount := map[int64][]fraudGenTx{}
	for _, tx := range txs {
		byAccount[tx.account] = append(byAccount[tx.account], tx)
	}
	alerts, nearMisses = map[fraudAlert]int{}, map[string]int{}
	for _, list := range byAccount {
		slices.SortFunc(list, func(x, y fraudGenTx) int { return cmp.Compare(x.ts, y.ts) })
		for i := 1; i < len(list); i++ {
			prev, cur := list[i-1], list[i]
			gap := cur.ts - prev.ts
			small, large := prev.cents < fraudSmall, cur.cents > fraudLarge
			switch {
			case small && large && gap < fraudMinute:
				alerts[fraudAlert{AccountID: cur.account, TS: cur.ts, Amount: float64(cur.cents) / 100}]++
			case small && large && gap == fraudMinute:
				nearMisses["large exactly a minute after small"]++
			case small && large:
				nearMisses["large more than a minute after small"]++
			case small && cur.cents == fraudLarge && gap < fraudMinute:
				nearMisses["500.00 within a minute after small"]++
			case prev.cents == fraudSmall && large && gap < fraudMinute:
				nearMisses["large within a minute after 1.00"]++
			}
			if i >= 2 {
				first := list[i-2]
				if first.cents < fraudSmall && prev.cents >= fraudSmall && prev.cents <= fraudLarge && large && cur.ts-first.ts < fraudMinute {
					nearMisses["large within a minute after small, another transaction between"]++
				}
			}
		}
	}
	return alerts, nearMisses
}

var fraudCounters = regexp.MustCompile(`^transactions in (\d+), alerts out (\d+), checkpoints (\d+) \(last \d+\), restored from (\d+), restarts (\d+)$`)

// TestExampleFraud runs examples/fraud over generated transactions and
// compares the alerts, read with read_committed, with the alerts the test
// computes from the transactions.
func TestExampleFraud(t *testing.T) {
	bin := exampleBinary(t, "fraud")
	rng := rand.New(rand.NewSource(exSeed(t)))
	txs := genFraud(rng)
	want, nearMisses := fraudExpected(txs)
	for _, kind := range []string{
		"large exactly a minute after small", "large more than a minute after small",
		"500.00 within a minute after small", "large within a minute after 1.00",
		"large within a minute after small, another transaction between",
	} {
		if nearMisses[kind] == 0 {
			t.Fatalf("generator: no near miss %q in the input", kind)
		}
	}
	if len(want) < fraudAccounts/2 {
		t.Fatalf("generator: %d alerts, want at least %d", len(want), fraudAccounts/2)
	}
	t.Logf("%d transactions of %d accounts: %d alerts expected; near misses: %v", len(txs), fraudAccounts, len(want), nearMisses)

	ctx, cancel := context.WithTimeout(context.Background(), exTestTimeout)
	defer cancel()
	cl := exClient(t)
	in, alerts := topic(t, exPartitions), topic(t, exPartitions)
	recs := make([]*kgo.Record, len(txs))
	for i, tx := range txs {
		v, err := json.Marshal(fraudTx{AccountID: tx.account, Amount: float64(tx.cents) / 100, TS: tx.ts})
		if err != nil {
			t.Fatalf("encode transaction %d: %v", i, err)
		}
		key := strconv.FormatInt(tx.account, 10)
		recs[i] = &kgo.Record{Topic: in, Partition: exPartition(key), Key: []byte(key), Value: v}
	}
	if err := exProduce(ctx, cl, recs); err != nil {
		t.Fatal(err)
	}

	run := runExample(t, bin,
		"-brokers", broker.Shared().Bootstrap(), "-transactions", in, "-alerts", alerts,
		"-checkpoint-dir", filepath.Join(t.TempDir(), "checkpoints"), "-checkpoint-interval", "100ms",
		"-parallelism", "2", "-exactly-once", "-bounded", "-out-of-orderness", "1s")
	c := run.counters(t, fraudCounters)
	if c[0] != int64(len(txs)) {
		t.Errorf("the program read %d transactions, want %d", c[0], len(txs))
	}
	if c[3] != 0 || c[4] != 0 {
		t.Errorf("a fresh run restored from checkpoint %d and restarted %d times, want 0 and 0", c[3], c[4])
	}

	out := readOutput(t, ctx, cl, alerts)
	got := map[fraudAlert]int{}
	for _, r := range out.committed {
		var a fraudAlert
		if err := decodeStrict(r.Value, &a); err != nil {
			t.Fatalf("%s/%d offset %d: %v: %s", alerts, r.Partition, r.Offset, err, r.Value)
		}
		if k := strconv.FormatInt(a.AccountID, 10); string(r.Key) != k {
			t.Errorf("%s/%d offset %d: record key %q, want the account id %q", alerts, r.Partition, r.Offset, r.Key, k)
		}
		got[a]++
	}
	if diffs := diffMultisets(got, want); diffs != nil {
		t.Fatalf("alerts: %d committed, want %d, each once:\n  %s", len(out.committed), len(want), strings.Join(diffs, "\n  "))
	}
	if c[1] != int64(len(out.committed)) {
		t.Errorf("the program counted %d alerts out, %d are committed", c[1], len(out.committed))
	}
	t.Logf("verdict: %d transactions, %d alerts committed exactly once and right", len(txs), len(out.committed))
}

// ---- examples/pipeline ----

// pipeTagClick is an output record of the pipeline example.
type pipeTagClick struct {
	ClickID string `json:"click_id"`
	User    string `json:"user"`
	Product string `json:"product"`
	Day     string `json:"day"`
	Mobile  bool   `json:"mobile"`
	Tag     string `json:"tag"`
	TS      int64  `json:"ts"`
}

// pipeRejected is a record of the pipeline's rejected topic.
type pipeRejected struct {
	Reason string `json:"reason"`
	Detail string `json:"detail"`
	Record string `json:"record"`
}

// pipeRejectKey is what the test compares of a rejected record.
type pipeRejectKey struct {
	Reason string
	Record string
}

// pipeInput is the generated input and what it must give.
type pipeInput struct {
	values   [][]byte // nil: a tombstone
	out      map[pipeTagClick]int
	rejected map[pipeRejectKey]int
	kinds    map[string]int
}

const (
	pipeClicks = 4000
	// pipeStart is 2024-05-01T22:00:00Z: the clicks, about 40 s apart,
	// cross two UTC midnights.
	pipeStart = 1_714_600_800_000
	pipeDay   = 86_400_000
)

var (
	pipeBrowsers = []struct {
		ua     string
		mobile bool
	}{
		{"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", false},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36", false},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1", true},
		{"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36", true},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15", false},
	}
	pipeBots = []string{
		"Googlebot/2.1 (+http://www.google.com/bot.html)",
		"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
		"Mozilla/5.0 (compatible; YandexBot/3.0)",
		"Screaming Frog SEO Spider/19.0",
		"SiteCrawler/1.0",
		"Mozilla/5.0 (compatible) AhrefsBOT",
		"DuckDuckBot-Https/1.1",
	}
	pipeOtherPages = []string{
		"/", "/cart", "/products", "/products/", "/products/p3/reviews", "/search?q=/products/p3",
		"/product/p3", "https://shop.example.com/checkout", "/PRODUCTS/p3",
	}
	pipeTagWords = []string{"summer", "sale", "new", "mail", "retarget", "vip", "été"}
)

// genPipeline returns pipeClicks click records, about 74% clicks on
// product pages (URLs with a query, a fragment or a host; zero to four
// tags, repeats possible, written untidily: case, spaces and tabs, empty
// items), 9% clicks on other pages, 9% bots (on any page) and 8% records
// the pipeline cannot parse (not JSON, truncated, wrong types, missing
// or empty fields, an empty value, a tombstone), with what each must
// give.
func genPipeline(rng *rand.Rand) pipeInput {
	g := pipeInput{out: map[pipeTagClick]int{}, rejected: map[pipeRejectKey]int{}, kinds: map[string]int{}}
	for i := range pipeClicks {
		id := fmt.Sprintf("c%d", i)
		user := fmt.Sprintf("u%d", rng.Intn(400))
		ts := int64(pipeStart + i*40_000 + rng.Intn(40_000))
		if rng.Intn(50) == 0 { // on a UTC midnight, or 1 ms before it
			ts = (ts/pipeDay+1)*pipeDay - int64(rng.Intn(2))
		}
		b := pipeBrowsers[rng.Intn(len(pipeBrowsers))]
		click := map[string]any{"click_id": id, "user": user, "ts": ts, "user_agent": b.ua}
		encode := func() []byte {
			v, err := json.Marshal(click)
			if err != nil {
				panic(err) // a map of strings and numbers
			}
			return v
		}
		reject := func(reason string, v []byte) {
			g.values = append(g.values, v)
			g.rejected[pipeRejectKey{reason, string(v)}]++
			g.kinds[reason]++
		}
		switch r := rng.Intn(100); {
		case r < 8:
			click["url"] = fmt.Sprintf("/products/p%d", rng.Intn(60))
			var v []byte
			switch rng.Intn(14) {
			case 0:
				v = []byte("not json at all")
			case 1:
				v = encode()
				v = v[:len(v)/2] // cut off
			case 2:
				delete(click, "user")
				v = encode()
			case 3:
				click["ts"] = "yesterday"
				v = encode()
			case 4:
				v = []byte("null")
			case 5:
				v = []byte(fmt.Sprintf("[%q]", id))
			case 6:
				click["ts"] = 0
				v = encode()
			case 7:
				click["click_id"] = ""
				v = encode()
			case 8:
				v = []byte{} // an empty value
			case 9:
				v = nil // a tombstone: read as ""
			case 10:
				click["ts"] = -ts
				v = encode()
			case 11:
				v = []byte(fmt.Sprintf(`{"click_id":%q,"user":%q,"url":"/products/p1","ts":%d.5}`, id, user, ts))
			case 12:
				click["tags"] = 5 // not a string
				v = encode()
			case 13: // a bot without a url: malformed comes first
				delete(click, "url")
				click["user_agent"] = pipeBots[rng.Intn(len(pipeBots))]
				v = encode()
			}
			reject("malformed", v)
		case r < 17:
			if rng.Intn(2) == 0 {
				click["url"] = fmt.Sprintf("/products/p%d", rng.Intn(60))
			} else {
				click["url"] = pipeOtherPages[rng.Intn(len(pipeOtherPages))]
			}
			click["user_agent"] = pipeBots[rng.Intn(len(pipeBots))]
			click["tags"] = "sale"
			reject("bot", encode())
		case r < 26:
			click["url"] = pipeOtherPages[rng.Intn(len(pipeOtherPages))]
			click["tags"] = "sale,new"
			g.values = append(g.values, encode())
			g.kinds["other page"]++
		default:
			product := fmt.Sprintf("p%d", rng.Intn(60))
			switch rng.Intn(6) {
			case 0:
				click["url"] = "/products/" + product + "?ref=mail&x=1"
			case 1:
				click["url"] = "/products/" + product + "#reviews"
			case 2:
				click["url"] = "https://shop.example.com/products/" + product + "?next=/products/p0"
			default:
				click["url"] = "/products/" + product
			}
			mobile := b.mobile
			switch rng.Intn(20) {
			case 0:
				delete(click, "user_agent")
				mobile = false
			case 1:
				click["user_agent"] = nil
				mobile = false
			case 2:
				click["extra"] = map[string]any{"a": 1} // unknown fields are ignored
			}
			var written []string
			n := rng.Intn(5)
			for range n {
				w := pipeTagWords[rng.Intn(len(pipeTagWords))]
				day := time.UnixMilli(ts).UTC().Format(time.DateOnly)
				g.out[pipeTagClick{ClickID: id, User: user, Product: product, Day: day, Mobile: mobile, Tag: w, TS: ts}]++
				switch rng.Intn(4) {
				case 0:
					w = strings.ToUpper(w)
				case 1:
					runes := []rune(w)
					w = strings.ToUpper(string(runes[0])) + string(runes[1:])
				}
				pad := []string{"", " ", "  ", "\t"}
				written = append(written, pad[rng.Intn(len(pad))]+w+pad[rng.Intn(len(pad))])
				if rng.Intn(6) == 0 {
					written = append(written, pad[rng.Intn(len(pad))]) // an empty item
				}
			}
			switch {
			case n == 0 && rng.Intn(2) == 0: // no tags field at all
			default:
				click["tags"] = strings.Join(written, ",")
			}
			g.values = append(g.values, encode())
			g.kinds[fmt.Sprintf("product page, %d tags", n)]++
		}
	}
	return g
}

var pipeCounters = regexp.MustCompile(`^clicks in (\d+), records out (\d+) \(both topics\), checkpoints (\d+) \(last \d+\), restored from (\d+), restarts (\d+)$`)

// TestExamplePipeline runs examples/pipeline over generated clicks of
// every kind and compares both output topics, read with read_committed,
// with what the test says each click must give.
func TestExamplePipeline(t *testing.T) {
	bin := exampleBinary(t, "pipeline")
	rng := rand.New(rand.NewSource(exSeed(t)))
	g := genPipeline(rng)
	wantOut := 0
	for _, n := range g.out {
		wantOut += n
	}
	t.Logf("%d clicks (%v): %d output records, %d rejected expected", len(g.values), g.kinds, wantOut, g.kinds["malformed"]+g.kinds["bot"])

	ctx, cancel := context.WithTimeout(context.Background(), exTestTimeout)
	defer cancel()
	cl := exClient(t)
	in, out, rejected := topic(t, exPartitions), topic(t, exPartitions), topic(t, exPartitions)
	recs := make([]*kgo.Record, len(g.values))
	for i, v := range g.values {
		recs[i] = &kgo.Record{Topic: in, Partition: int32(i % exPartitions), Value: v}
	}
	if err := exProduce(ctx, cl, recs); err != nil {
		t.Fatal(err)
	}

	run := runExample(t, bin,
		"-brokers", broker.Shared().Bootstrap(), "-clicks", in, "-out", out, "-rejected", rejected,
		"-checkpoint-dir", filepath.Join(t.TempDir(), "checkpoints"), "-checkpoint-interval", "100ms",
		"-parallelism", "2", "-exactly-once", "-bounded")
	c := run.counters(t, pipeCounters)
	if c[0] != int64(len(g.values)) {
		t.Errorf("the program read %d clicks, want %d", c[0], len(g.values))
	}
	if c[3] != 0 || c[4] != 0 {
		t.Errorf("a fresh run restored from checkpoint %d and restarted %d times, want 0 and 0", c[3], c[4])
	}

	outLog := readOutput(t, ctx, cl, out)
	rejLog := readOutput(t, ctx, cl, rejected)
	failed := false
	got := map[pipeTagClick]int{}
	for _, r := range outLog.committed {
		var tc pipeTagClick
		if err := decodeStrict(r.Value, &tc); err != nil {
			t.Fatalf("%s/%d offset %d: %v: %s", out, r.Partition, r.Offset, err, r.Value)
		}
		if string(r.Key) != tc.Product {
			t.Errorf("%s/%d offset %d: record key %q, want the product %q", out, r.Partition, r.Offset, r.Key, tc.Product)
		}
		got[tc]++
	}
	if diffs := diffMultisets(got, g.out); diffs != nil {
		failed = true
		t.Errorf("%s: %d records committed, want %d, each once:\n  %s", out, len(outLog.committed), wantOut, strings.Join(diffs, "\n  "))
	}
	gotRej := map[pipeRejectKey]int{}
	for _, r := range rejLog.committed {
		var rj pipeRejected
		if err := decodeStrict(r.Value, &rj); err != nil {
			t.Fatalf("%s/%d offset %d: %v: %s", rejected, r.Partition, r.Offset, err, r.Value)
		}
		if rj.Detail == "" {
			t.Errorf("%s/%d offset %d: no detail: %s", rejected, r.Partition, r.Offset, r.Value)
		}
		if len(r.Key) != 0 {
			t.Errorf("%s/%d offset %d: record key %q, want none", rejected, r.Partition, r.Offset, r.Key)
		}
		gotRej[pipeRejectKey{rj.Reason, rj.Record}]++
	}
	wantRej := g.kinds["malformed"] + g.kinds["bot"]
	if diffs := diffMultisets(gotRej, g.rejected); diffs != nil {
		failed = true
		t.Errorf("%s: %d records committed, want %d, each once:\n  %s", rejected, len(rejLog.committed), wantRej, strings.Join(diffs, "\n  "))
	}
	if failed {
		t.FailNow()
	}
	if total := int64(len(outLog.committed) + len(rejLog.committed)); c[1] != total {
		t.Errorf("the program counted %d records out, %d are committed on the two topics", c[1], total)
	}
	t.Logf("verdict: %d clicks, %d tag records and %d rejected records committed exactly once and right",
		len(g.values), len(outLog.committed), len(rejLog.committed))
}

// ---- examples/window ----

const (
	windowExEvents = 6000
	windowExSize   = 250 * time.Millisecond
	// windowExOutOfOrder is the generator's out-of-orderness, below the
	// program's bound windowExBound: no record is late.
	windowExOutOfOrder = 200 * time.Millisecond
	windowExBound      = 300 * time.Millisecond
)

var windowCounters = regexp.MustCompile(`^records in (\d+), late (\d+), records out (\d+), checkpoints (\d+) \(last \d+\), restored from (\d+), restarts (\d+)$`)

// TestExampleWindow runs examples/window over generated events (none
// late) and compares the window results, read with read_committed, with
// the count and sum per key and window of the events; the late topic must
// stay empty.
func TestExampleWindow(t *testing.T) {
	bin := exampleBinary(t, "window")
	events, err := verify.Generate(verify.GenConfig{
		Seed: exSeed(t), Keys: 60, Partitions: exPartitions, Events: windowExEvents,
		Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: windowExOutOfOrder,
	})
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	want := verify.Expected(events, windowExSize)
	t.Logf("%d events of up to 60 users over %d ms of event time: %d window results expected",
		len(events), events[len(events)-1].TS-events[0].TS, len(want))

	ctx, cancel := context.WithTimeout(context.Background(), exTestTimeout)
	defer cancel()
	cl := exClient(t)
	in, out, late := topic(t, exPartitions), topic(t, exPartitions), topic(t, exPartitions)
	if err := verify.Produce(ctx, broker.Shared().Bootstrap(), in, events, exPartitions); err != nil {
		t.Fatal(err)
	}

	run := runExample(t, bin,
		"-brokers", broker.Shared().Bootstrap(), "-in", in, "-out", out, "-late", late,
		"-key-field", "user", "-timestamp-field", "ts", "-value-field", "amount",
		"-window", windowExSize.String(), "-out-of-orderness", windowExBound.String(),
		"-checkpoint-dir", filepath.Join(t.TempDir(), "checkpoints"), "-checkpoint-interval", "100ms",
		"-parallelism", "2", "-exactly-once", "-bounded")
	c := run.counters(t, windowCounters)
	if c[0] != int64(len(events)) || c[1] != 0 {
		t.Errorf("the program read %d records, %d of them late; want %d, none late", c[0], c[1], len(events))
	}
	if c[4] != 0 || c[5] != 0 {
		t.Errorf("a fresh run restored from checkpoint %d and restarted %d times, want 0 and 0", c[4], c[5])
	}

	outLog := readOutput(t, ctx, cl, out)
	lateLog := readOutput(t, ctx, cl, late)
	got := make([]verify.Result, 0, len(outLog.committed))
	for _, r := range outLog.committed {
		res, err := verify.ParseResult(r.Value)
		if err != nil {
			t.Fatalf("%s/%d offset %d: %v", out, r.Partition, r.Offset, err)
		}
		if string(r.Key) != res.Key {
			t.Errorf("%s/%d offset %d: record key %q, want the result's key %q", out, r.Partition, r.Offset, r.Key, res.Key)
		}
		got = append(got, res)
	}
	v := verify.Compare(len(events), want, got)
	t.Log(v.String())
	if !v.OK {
		t.Fatal(v.Report())
	}
	if n := len(lateLog.committed) + len(lateLog.aborted); n != 0 {
		t.Errorf("%s: %d records (%d committed), want none: no record is behind the watermark", late, n, len(lateLog.committed))
	}
	if c[2] != int64(len(got)) {
		t.Errorf("the program counted %d records out, %d are committed", c[2], len(got))
	}
	t.Logf("verdict: %d events, %d window results committed exactly once and right, none late", len(events), len(got))
}
