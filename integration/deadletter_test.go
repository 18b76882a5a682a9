package integration

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	weir "github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

// badInput is a record of the input the window job cannot read, where it
// landed.
type badInput struct {
	key, value string
	partition  int32
	offset     int64
}

// deadLetterInput produces a seed's events into a fresh 4-partition topic
// with n records the job cannot read (cut-short JSON, no ts field) between
// its two halves, on partitions the seed picks; it returns the topic, a
// fresh output topic, the events and the bad records.
func deadLetterInput(t *testing.T, ctx context.Context, seed int64, events, n int) (in, out string, evs []verify.Event, bad []badInput) {
	t.Helper()
	brokers := broker.Shared().Bootstrap()
	in, out = broker.Topic(t, 4), broker.Topic(t, 4)
	evs, err := verify.Generate(verify.GenConfig{Seed: seed, Keys: matrixKeys, Partitions: 4, Events: events,
		Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, in, evs[:len(evs)/2], 4); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(seed))
	for i := range n {
		v := fmt.Sprintf(`{"user":"u%d","ts":1700000000000,"amount":`, i)
		if i%2 == 1 {
			v = fmt.Sprintf(`{"user":"u%d","amount":1}`, i)
		}
		b := badInput{key: fmt.Sprintf("bad-%d-%d", seed, i), value: v, partition: int32(rng.Intn(4))}
		if b.offset, err = produceRaw(ctx, brokers, in, b.partition, []byte(b.key), []byte(v)); err != nil {
			t.Fatal(err)
		}
		bad = append(bad, b)
	}
	if err := verify.Produce(ctx, brokers, in, evs[len(evs)/2:], 4); err != nil {
		t.Fatal(err)
	}
	return in, out, evs, bad
}

// checkDeadLetters reads dlq read_committed from the start: each of bad
// exactly once, with its key and value and the headers naming its source
// topic, partition and offset and the error. It returns the number of
// records in dlq read_uncommitted (aborted dead letters included).
func checkDeadLetters(t *testing.T, ctx context.Context, dlq, in string, bad []badInput) int {
	t.Helper()
	brokers := broker.Shared().Bootstrap()
	got, err := verify.ReadRecords(ctx, brokers, dlq, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]badInput{}
	for _, b := range bad {
		want[b.key] = b
	}
	seen := map[string]bool{}
	for _, r := range got {
		k := string(r.Key)
		b, ok := want[k]
		switch {
		case !ok:
			t.Fatalf("%s/%d offset %d: key %q is no bad record of the input", dlq, r.Partition, r.Offset, k)
		case seen[k]:
			t.Fatalf("%s: bad record %q committed twice", dlq, k)
		case string(r.Value) != b.value:
			t.Fatalf("%s: %q has value %q, the input's is %q", dlq, k, r.Value, b.value)
		case r.Headers[weir.HeaderSourceTopic] != in,
			r.Headers[weir.HeaderSourcePartition] != strconv.Itoa(int(b.partition)),
			r.Headers[weir.HeaderSourceOffset] != strconv.FormatInt(b.offset, 10),
			r.Headers[weir.HeaderError] == "":
			t.Fatalf("%s: %q has headers %v; want source %s/%d offset %d and an error", dlq, k, r.Headers, in, b.partition, b.offset)
		}
		seen[k] = true
	}
	if len(seen) != len(bad) {
		t.Fatalf("%s holds %d of the %d bad records (read_committed)", dlq, len(seen), len(bad))
	}
	all, err := verify.ReadAll(ctx, brokers, dlq, verify.ReadUncommitted)
	if err != nil {
		t.Fatal(err)
	}
	return len(all)
}

// TestMatrixRow10DeadLetter is row 10 with bad_records: dead-letter: the
// input holds records the job cannot read between its halves; the
// exactly-once job is SIGKILLed at a failpoint and run again until a run
// ends. The dead-letter topic (read_committed) holds each bad record
// exactly once with its headers, and the output every window exactly once:
// the dead letters are written in the epochs' transactions, aborted and
// replayed with them. Seeds: -matrix-seeds (default 2 per step), replay
// one with -matrix-seed.
func TestMatrixRow10DeadLetter(t *testing.T) {
	bin := matrixBinary(t)
	const nBad = 12
	aborted := 0
	for _, fp := range []struct {
		step           string
		firstHit, hits int
	}{{"mid-epoch", 2, 2}, {"after-complete-before-commit", 1, 2}, {"during-commit", 1, 2}} {
		for _, seed := range seedListCapped(t, *matrixSeed, *matrixSeeds, 2, 3, "-matrix-seed") {
			t.Run(fmt.Sprintf("%s/seed=%d", fp.step, seed), func(t *testing.T) {
				hit := fp.firstHit + rand.New(rand.NewSource(seed)).Intn(fp.hits)
				t.Logf("seed %d, failpoint %s@%d (replay with -matrix-seed %d)", seed, fp.step, hit, seed)
				ctx, cancel := context.WithTimeout(context.Background(), matrixSeedTimeout)
				defer cancel()
				in, out, events, bad := deadLetterInput(t, ctx, seed, matrixEvents, nBad)
				dlq := broker.Topic(t, 2)
				dir := t.TempDir()
				job := matrixJob{name: fmt.Sprintf("matrix-dlq-%s-%d", fp.step, seed), in: in, out: out,
					dir: filepath.Join(dir, "checkpoints"), deadLetter: dlq}
				jobFile := job.write(t, dir)
				fault := job
				fault.unbounded = true
				faultDir := filepath.Join(dir, "fault")
				if err := os.MkdirAll(faultDir, 0o755); err != nil {
					t.Fatal(err)
				}
				open := killAt(t, ctx, bin, fault.write(t, faultDir), dir, fp.step, hit, out)
				runs := runClean(t, bin, jobFile, dir, "run")
				n := checkExactlyOnce(t, ctx, out, events, time.Second)
				all := checkDeadLetters(t, ctx, dlq, in, bad)
				aborted += all - nBad
				t.Logf("%s@%d: open transactions on %d output partition(s) at the kill; %d clean run(s); %d results; %d dead letters exactly once, %d aborted ones in %s",
					fp.step, hit, open, runs, n, nBad, all-nBad, dlq)
			})
		}
	}
	t.Logf("aborted dead letters over all seeds: %d (a kill with dead letters in an open transaction)", aborted)
}
