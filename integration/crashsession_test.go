package integration

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

var (
	crashSessionSeeds = flag.Int("crashsession-seeds", 0, "seeds of TestCrashSessionJob (default: $WEIR_CRASH_SEEDS, else 10)")
	crashSessionSeed  = flag.Int64("crashsession-seed", 0, "replay one TestCrashSessionJob seed")
)

const (
	// The input: csEvents generated events of csKeys users on
	// csPartitions partitions, event time advancing 1 ms per event, up to
	// csDisorder out of order (never late for the job's bound csBound).
	csEvents     = 10_000
	csKeys       = 50
	csPartitions = 4
	csStart      = 1_700_000_000_000
	csDisorder   = 200 * time.Millisecond
	// The job: out_of_orderness csBound, session gap csGap (the frequent
	// users have long sessions, the rare ones many short ones), allowed
	// lateness csLateness.
	csBound    = 200 * time.Millisecond
	csGap      = 100 * time.Millisecond
	csLateness = 500 * time.Millisecond
	// One in csSlightOneIn positions gets an extra slightly late record,
	// one in csFarOneIn a far late one (see sessionInput).
	csSlightOneIn = 40
	csFarOneIn    = 100
	// csFarBehind is how far a far late record's session has ended before
	// the newest event time of its partition, beyond the allowed lateness.
	csFarBehind = time.Second
	// csProduceBatch bounds the records of one Kafka record batch of the
	// input.
	csProduceBatch = 16
	// csMaxKills bounds the kills of one seed; csKillCheckpoints the
	// completed checkpoints of a run before its kill. csSeedTimeout
	// bounds a seed, csRunTimeout each wait on one run.
	csMaxKills        = 2
	csKillCheckpoints = 5
	csSeedTimeout     = 3 * time.Minute
	csRunTimeout      = time.Minute
)

// Kinds of input records.
const (
	csRegular = iota // generated, on time
	csSlight         // slightly late: never too late, may update a fired session
	csFar            // far late: to the late topic, unless the watermark lagged
)

// sessionInput is the input of one seed and what its construction
// guarantees.
type sessionInput struct {
	events []verify.Event
	kind   map[int64]int // by seq
	// base is the sessions (gap csGap) of each key's regular and slightly
	// late records: [start, end) pairs in order.
	base map[string][][2]int64
}

// newSessionInput generates the input of a seed: csEvents events
// (verify.Generate, disorder within the job's bound), with extra records
// inserted that are late on purpose. The watermark a record meets is at
// most M-csBound-1, M the newest event time read before it on its
// partition; how far below that depends on batching and restarts. So:
//
//   - a slightly late record has ts = M-csBound-1-r, 0 <= r < lateness-2:
//     it may be behind the watermark by up to about the allowed lateness,
//     so it may land in a session that has fired (which fires again) or
//     bridge two, but it is never too late, and never meets a session of
//     its key that was already dropped (that would need the watermark at
//     ts+lateness-1 or more);
//   - a far late record lies inside a base session of its key (start <=
//     ts <= end-gap, so it never widens one) that ended csFarBehind plus
//     the lateness before M: it goes to the late topic unless the
//     watermark lagged far behind; then it joins its session.
//
// Every valid execution therefore ends with exactly the base sessions
// (the sessions of the regular and slightly late records): regular and
// slightly late records are never too late and never meet a dropped
// session, and a far late record either goes to the late topic or joins
// its base session without widening it.
func newSessionInput(seed int64) (*sessionInput, error) {
	gen, err := verify.Generate(verify.GenConfig{Seed: seed, Keys: csKeys, Partitions: csPartitions, Events: csEvents,
		Start: csStart, Step: time.Millisecond, OutOfOrderness: csDisorder})
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewSource(seed ^ 0x5e55))
	in := &sessionInput{kind: map[int64]int{}, base: map[string][][2]int64{}}
	bound, lateness, gap := csBound.Milliseconds(), csLateness.Milliseconds(), csGap.Milliseconds()
	seq := int64(csEvents)
	key := func() string { return fmt.Sprintf("u%d", min(rng.Intn(csKeys), rng.Intn(csKeys))) }
	amount := func() int64 { return 1 + rng.Int63n(verify.AmountMax) }

	// Pass 1: the generated records and the slightly late ones.
	var pass1 []verify.Event
	maxTS := map[int32]int64{}
	for _, e := range gen {
		pass1 = append(pass1, e)
		in.kind[e.Seq] = csRegular
		p := verify.Partition(e, csPartitions)
		maxTS[p] = max(maxTS[p], e.TS)
		if rng.Intn(csSlightOneIn) != 0 {
			continue
		}
		x := verify.Event{Key: key(), Amount: amount(), Seq: seq}
		m, ok := maxTS[verify.Partition(x, csPartitions)]
		if !ok {
			continue
		}
		x.TS = m - bound - 1 - rng.Int63n(lateness-2)
		seq++
		pass1 = append(pass1, x)
		in.kind[x.Seq] = csSlight
	}
	byKey := map[string][]int64{}
	for _, e := range pass1 {
		byKey[e.Key] = append(byKey[e.Key], e.TS)
	}
	for k, ts := range byKey {
		slices.Sort(ts)
		var ss [][2]int64
		for _, t := range ts {
			if n := len(ss); n > 0 && t <= ss[n-1][1] {
				ss[n-1][1] = max(ss[n-1][1], t+gap)
				continue
			}
			ss = append(ss, [2]int64{t, t + gap})
		}
		in.base[k] = ss
	}

	// Pass 2: far late records, each in a base session of its key that
	// ended long before the newest event time of its partition.
	maxTS = map[int32]int64{}
	for _, e := range pass1 {
		in.events = append(in.events, e)
		p := verify.Partition(e, csPartitions)
		maxTS[p] = max(maxTS[p], e.TS)
		if rng.Intn(csFarOneIn) != 0 {
			continue
		}
		x := verify.Event{Key: key(), Amount: amount(), Seq: seq}
		m, ok := maxTS[verify.Partition(x, csPartitions)]
		if !ok {
			continue
		}
		var eligible [][2]int64
		for _, s := range in.base[x.Key] {
			if s[1]+lateness+csFarBehind.Milliseconds() <= m-bound {
				eligible = append(eligible, s)
			}
		}
		if len(eligible) == 0 {
			continue
		}
		s := eligible[rng.Intn(len(eligible))]
		x.TS = s[0] + rng.Int63n(s[1]-gap-s[0]+1)
		seq++
		in.events = append(in.events, x)
		in.kind[x.Seq] = csFar
	}
	return in, nil
}

// count returns the number of records of kind k.
func (in *sessionInput) count(k int) int {
	n := 0
	for _, kk := range in.kind {
		if kk == k {
			n++
		}
	}
	return n
}

// checkConstruction checks what the input's construction guarantees on
// top of verify.CheckSessions: the final sessions are exactly the base
// sessions, and only far late records are in the late topic.
func (in *sessionInput) checkConstruction(v verify.SessionVerdict, late []verify.Record) []string {
	var problems []string
	problem := func(format string, args ...any) {
		if len(problems) < verify.ProblemsMax {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	final := map[string][][2]int64{}
	for _, f := range v.Final {
		final[f.Key] = append(final[f.Key], [2]int64{f.WindowStart, f.WindowEnd})
	}
	var keys []string
	for k := range in.base {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Equal(final[k], in.base[k]) {
			problem("key %q: final sessions %v, want the sessions of its regular and slightly late records %v", k, final[k], in.base[k])
		}
	}
	for _, r := range late {
		e, err := verify.ParseEvent(r.Value)
		if err != nil {
			continue // CheckSessions reports it
		}
		if kind, ok := in.kind[e.Seq]; ok && kind != csFar {
			problem("late topic partition %d offset %d: %s is a record that is never too late (kind %d)", r.Partition, r.Offset, r.Value, kind)
		}
	}
	return problems
}

const crashSessionJob = `name: crashsession-%d
brokers: %s
parallelism: 2
delivery: exactly-once
source:
  topic: %s
  start:
    mode: earliest
  bounded: latest
  # Small fetches, so that each poll gets some dozens of records and the
  # watermark advances in small steps over the backlog, as it would live.
  properties:
    max.partition.fetch.bytes: 4096
    queued.min.messages: 64
key_field: user
timestamp_field: ts
window:
  kind: session
  gap: %v
  allowed_lateness: %v
  late_topic: %s
  out_of_orderness: %v
aggregate:
  value_field: amount
  functions: [count, sum]
sink:
  topic: %s
checkpoint:
  interval: 50ms
  dir: %s
restart:
  strategy: none
`

// TestCrashSessionJob kills the exactly-once session-window job (`engine
// run`: window.kind session, allowed lateness, a late topic, parallelism
// 2, a 50 ms checkpoint interval) with SIGKILL at seeded moments, once or
// twice per seed, and restarts it until a run finishes the bounded
// input. The input has generated records plus records late on purpose
// (newSessionInput). Which records come too late depends on how the
// watermark progressed, so the output is checked for what exactly-once
// guarantees for any single execution (verify.CheckSessions) and for what
// the input's construction guarantees (the final sessions, the late
// topic's records). The first subtest runs the same job and check without
// a kill.
func TestCrashSessionJob(t *testing.T) {
	bin := engineBinary(t)
	seeds := seedList(t, *crashSessionSeed, *crashSessionSeeds, 10, "-crashsession-seed")
	t.Run("baseline", func(t *testing.T) {
		if kills, _ := crashSessionRun(t, bin, seeds[0], 0); kills != 0 {
			t.Fatalf("the baseline was killed %d times", kills)
		}
	})
	restores := 0
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			planned := 1 + rng.Intn(csMaxKills)
			// A first run may finish before its kill point on a loaded
			// machine; then the seed runs again on fresh topics with the
			// first kill right after the start.
			for attempt := 0; ; attempt++ {
				kills, r := crashSessionRun(t, bin, seed, planned)
				restores += r
				if kills > 0 || t.Failed() {
					return
				}
				if attempt == 2 {
					t.Fatal("every first run finished before it could be killed: nothing was tested")
				}
				t.Log("run 1 finished before it could be killed; again, killing right after the start")
				planned = -planned
			}
		})
	}
	if !t.Failed() && restores == 0 {
		t.Fatal("no run restored from a checkpoint: the kills never landed after a checkpoint, so nothing was tested")
	}
}

// crashSessionRun runs one seed on fresh topics: the job is killed up to
// |planned| times (0: never; negative: the first kill right after the
// start), then runs to the end of the input; the output is checked. It
// returns the kills and the runs that restored from a checkpoint.
func crashSessionRun(t *testing.T, bin string, seed int64, planned int) (kills, restores int) {
	replay := fmt.Sprintf("go test -p 1 -count=1 -v ./integration/ -run '^TestCrashSessionJob$' -crashsession-seed %d", seed)
	t.Logf("seed %d (replay: %s)", seed, replay)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d: %s\nreplay: %s", seed, fmt.Sprintf(format, args...), replay)
	}
	killEarly := planned < 0
	if planned < 0 {
		planned = -planned
	}
	rng := rand.New(rand.NewSource(seed + 1))
	ctx, cancel := context.WithTimeout(context.Background(), csSeedTimeout)
	defer cancel()
	brokers := broker.Shared().Bootstrap()
	inTopic, outTopic, lateTopic := topic(t, csPartitions), topic(t, csPartitions), topic(t, csPartitions)
	in, err := newSessionInput(seed)
	if err != nil {
		fail("input: %v", err)
	}
	began := time.Now()
	if err := produceSmallBatches(ctx, brokers, inTopic, in.events, csPartitions); err != nil {
		fail("produce: %v", err)
	}
	produced := time.Now()
	dir, err := os.MkdirTemp("", "weir-crashsession-")
	if err != nil {
		fail("run dir: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d: job file, run logs (run-N.log) and checkpoints kept in %s", seed, dir)
			return
		}
		os.RemoveAll(dir)
	})
	jobFile := filepath.Join(dir, "job.yaml")
	job := fmt.Sprintf(crashSessionJob, seed, brokers, inTopic, csGap, csLateness, lateTopic, csBound, outTopic, filepath.Join(dir, "checkpoints"))
	if err := os.WriteFile(jobFile, []byte(job), 0o644); err != nil {
		fail("job file: %v", err)
	}

	checkpointed := false // a run before this one completed a checkpoint
	for run := 1; ; run++ {
		p, err := startGraph(t, bin, []string{"run", "--config", jobFile, "--status-interval", "0"},
			filepath.Join(dir, fmt.Sprintf("run-%d.log", run)), run)
		if err != nil {
			fail("%v", err)
		}
		finished := func() bool {
			select {
			case <-p.exited:
				return true
			default:
				return false
			}
		}
		if kills < planned {
			// The kill lands after 0 to csKillCheckpoints-1 completed
			// checkpoints of this run (a run over the whole input
			// completes 5 to 20), plus 0-150 ms: before any checkpoint,
			// between two, or while one is taken or its transactions
			// commit.
			target := int64(rng.Intn(csKillCheckpoints))
			extra := time.Duration(rng.Intn(150)) * time.Millisecond
			if killEarly && kills == 0 {
				target, extra = 0, 0
			}
			rctx, rcancel := context.WithTimeout(ctx, csRunTimeout)
			err := p.waitFor(rctx, fmt.Sprintf("%d completed checkpoints", target), func() bool { return p.checkpoints.Load() >= target })
			rcancel()
			if err != nil && !finished() {
				fail("%v", err)
			}
			if !finished() {
				timer := time.NewTimer(extra)
				select {
				case <-timer.C:
				case <-p.exited:
					timer.Stop()
				}
			}
			if !finished() {
				if err := p.kill(); err != nil {
					fail("%v", err)
				}
				kills++
				checkpointed = checkpointed || p.checkpoints.Load() > 0
				if p.restored.Load() {
					restores++
				}
				t.Logf("run %d: killed (SIGKILL) after %d completed checkpoints (restored from a checkpoint: %v)", run, p.checkpoints.Load(), p.restored.Load())
				continue
			}
		}
		select {
		case <-p.exited:
		case <-ctx.Done():
			fail("run %d did not end: %v\n%s", run, ctx.Err(), p.tail())
		}
		if p.err != nil {
			fail("run %d failed: %v\n%s", run, p.err, p.tail())
		}
		if p.restored.Load() {
			restores++
		}
		if checkpointed && !p.restored.Load() {
			fail("run %d did not restore from a checkpoint, but a run before it completed one\n%s", run, p.tail())
		}
		t.Logf("run %d: finished after %d completed checkpoints; %d kills, %d runs restored from a checkpoint", run, p.checkpoints.Load(), kills, restores)
		break
	}

	ran := time.Now()
	results, err := verify.ReadResults(ctx, brokers, outTopic, verify.ReadCommitted)
	if err != nil {
		fail("%v", err)
	}
	late, err := verify.ReadRecords(ctx, brokers, lateTopic, verify.ReadCommitted)
	if err != nil {
		fail("%v", err)
	}
	v := verify.CheckSessions(csGap.Milliseconds(), in.events, results, late)
	problems := in.checkConstruction(v, late)
	sessions := 0
	for _, s := range in.base {
		sessions += len(s)
	}
	uncommitted, err := verify.ReadAll(ctx, brokers, outTopic, verify.ReadUncommitted)
	if err != nil {
		fail("%v", err)
	}
	t.Logf("seed %d: input %d records (%d slightly late, %d far late) of %d keys in %d sessions; %d of the far late ones in the late topic; "+
		"%d results committed, %d read_uncommitted (the difference: records of aborted transactions)",
		seed, len(in.events), in.count(csSlight), in.count(csFar), len(in.base), sessions, len(late), len(results), len(uncommitted))
	t.Logf("seed %d: %s (producing %v, runs %v, reading and checking %v)", seed, v.String(),
		produced.Sub(began).Round(time.Millisecond), ran.Sub(produced).Round(time.Millisecond), time.Since(ran).Round(time.Millisecond))
	if !v.OK || len(problems) > 0 {
		report := v.Report()
		if len(problems) > 0 {
			report += "\n  input construction:\n  " + strings.Join(problems, "\n  ")
		}
		fail("%s", report)
	}
	return kills, restores
}

// produceSmallBatches writes events as verify.Produce does (partition
// verify.Partition, key the user, value the JSON, in order per partition,
// idempotent), in Kafka record batches of at most csProduceBatch records:
// a fetch returns at least one whole batch, so the job's polls stay small
// only if the batches are.
func produceSmallBatches(ctx context.Context, brokers, topic string, events []verify.Event, partitions int) error {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":   brokers,
		"enable.idempotence":  true,
		"acks":                "all",
		"linger.ms":           1,
		"batch.num.messages":  csProduceBatch,
		"enable.metrics.push": false,
	})
	if err != nil {
		return fmt.Errorf("produce to %s: producer: %w", topic, err)
	}
	defer p.Close()
	reports := make(chan kafka.Event, len(events))
	for _, e := range events {
		msg := &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: verify.Partition(e, partitions)},
			Key:            []byte(e.Key),
			Value:          e.JSON(),
			Timestamp:      time.UnixMilli(e.TS),
		}
		for {
			err := p.Produce(msg, reports)
			if err == nil {
				break
			}
			if ke, ok := err.(kafka.Error); !ok || ke.Code() != kafka.ErrQueueFull {
				return fmt.Errorf("produce to %s: seq %d: %w", topic, e.Seq, err)
			}
			p.Flush(10)
		}
	}
	for range events {
		select {
		case ev := <-reports:
			if m, ok := ev.(*kafka.Message); !ok || m.TopicPartition.Error != nil {
				return fmt.Errorf("produce to %s: delivery: %v", topic, ev)
			}
		case <-ctx.Done():
			return fmt.Errorf("produce to %s: delivery reports: %w", topic, ctx.Err())
		}
	}
	return nil
}
