package rdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kfake"
)

const topic = "t"

func cluster(t testing.TB) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "8000000"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

func producer(t testing.TB, brokers string, extra kafka.ConfigMap) *kafka.Producer {
	t.Helper()
	cfg := kafka.ConfigMap{"bootstrap.servers": brokers, "linger.ms": 1, "go.delivery.reports": false,
		"message.max.bytes": 8000000}
	for k, v := range extra {
		cfg[k] = v
	}
	p, err := kafka.NewProducer(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func consumer(t testing.TB, brokers string, extra kafka.ConfigMap) *kafka.Consumer {
	t.Helper()
	c := unassigned(t, brokers, extra)
	assignBoth(t, c)
	return c
}

// unassigned is a consumer of the test's settings (and extra) that has
// not been assigned partitions yet.
func unassigned(t testing.TB, brokers string, extra kafka.ConfigMap) *kafka.Consumer {
	t.Helper()
	cfg := kafka.ConfigMap{"bootstrap.servers": brokers, "group.id": "g", "enable.auto.commit": false,
		"enable.partition.eof": true, "fetch.message.max.bytes": 8000000}
	for k, v := range extra {
		cfg[k] = v
	}
	c, err := kafka.NewConsumer(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// assignBoth assigns c the topic's two partitions from their beginning.
func assignBoth(t testing.TB, c *kafka.Consumer) {
	t.Helper()
	tp := topic
	if err := c.Assign([]kafka.TopicPartition{{Topic: &tp, Partition: 0, Offset: kafka.OffsetBeginning},
		{Topic: &tp, Partition: 1, Offset: kafka.OffsetBeginning}}); err != nil {
		c.Close()
		t.Fatal(err)
	}
}

type rec struct{ key, value []byte }

// records are random records, some with null or empty keys and values and
// some larger than the consumer's first buffer.
func records(rng *rand.Rand, n int) []rec {
	bytesOf := func(max int) []byte {
		switch rng.IntN(8) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, rng.IntN(max)+1)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	out := make([]rec, n)
	for i := range out {
		out[i] = rec{bytesOf(40), bytesOf(300)}
		if i%97 == 5 {
			out[i].value = bytes.Repeat([]byte{byte(i)}, 200_000+rng.IntN(300_000))
		}
	}
	return out
}

// readBack reads the topic from its beginning through the shim, as readAll
// does, its partitions routed (the source's way).
func readBack(t testing.TB, brokers string, n int) map[int32][]Entry {
	t.Helper()
	sc, done := attached(t, brokers, true)
	defer done()
	return readAll(t, sc, n)
}

// attached is a consumer of the topic from its beginning, attached to
// through the shim, with its partitions routed to the shim's fetch queue
// or read from the consumer queue; done closes both.
func attached(t testing.TB, brokers string, route bool) (sc *Consumer, done func()) {
	t.Helper()
	c := unassigned(t, brokers, nil)
	sc, err := AttachConsumer(c)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	if route {
		if err := sc.Route(topic, []int32{0, 1}); err != nil {
			sc.Close()
			c.Close()
			t.Fatal(err)
		}
	}
	assignBoth(t, c)
	return sc, func() {
		sc.Close()
		c.Close()
	}
}

// readAll polls until every partition reported its end and n records came,
// with a bound on the time.
func readAll(t testing.TB, c *Consumer, n int) map[int32][]Entry {
	t.Helper()
	return readAllWith(t, c, n, func([]Entry) {})
}

// readAllWith is readAll calling each(batch) after each Poll, before the
// batch's entries are kept.
func readAllWith(t testing.TB, c *Consumer, n int, each func([]Entry)) map[int32][]Entry {
	t.Helper()
	got := map[int32][]Entry{}
	count := 0
	eof := map[int32]bool{}
	deadline := time.Now().Add(30 * time.Second)
	var batch []Entry
	for count < n || len(eof) < 2 {
		if time.Now().After(deadline) {
			last := map[int32]int64{}
			for part, es := range got {
				last[part] = es[len(es)-1].Offset
			}
			t.Fatalf("read %d of %d records (last offsets %v), ends of %v, within 30s", count, n, last, eof)
		}
		var err error
		batch, err = c.Poll(100*time.Millisecond, 1000, batch[:0])
		if err != nil {
			t.Fatal(err)
		}
		each(batch)
		for _, e := range batch {
			switch e.Kind {
			case Record:
				got[e.Partition] = append(got[e.Partition], e)
				count++
				delete(eof, e.Partition)
			case EOF:
				if e.Offset == int64(len(got[e.Partition])) {
					eof[e.Partition] = true
				}
			case Error:
				t.Logf("client error: %v", e.Err)
			}
		}
	}
	return got
}

// TestProduceConsumeBatches writes random records through Topic.Produce
// and reads them back through Consumer.Poll: every record arrives once, in
// order per partition, with its key and value (null stays null), its
// offset and a timestamp, including records larger than a batch's buffer;
// both from the consumer queue and with the partitions routed (Route).
func TestProduceConsumeBatches(t *testing.T) {
	for _, route := range []bool{false, true} {
		name := map[bool]string{false: "consumer-queue", true: "routed"}[route]
		t.Run(name, func(t *testing.T) {
			brokers, p0, p1 := produceRandom(t)
			sc, done := attached(t, brokers, route)
			defer done()
			checkRecords(t, readAll(t, sc, len(p0)+len(p1)), p0, p1)
		})
	}
}

// TestConsumerReuseBuffer: with ReuseBuffer, a caller that copies each
// batch's keys and values before the next Poll reads every record as
// TestProduceConsumeBatches does, and the batches share a buffer (one per
// size the buffer grows to, not one per batch).
func TestConsumerReuseBuffer(t *testing.T) {
	brokers, p0, p1 := produceRandom(t)
	sc, done := attached(t, brokers, true)
	defer done()
	sc.ReuseBuffer()
	buffers := map[*byte]bool{}
	polls := 0
	got := readAllWith(t, sc, len(p0)+len(p1), func(batch []Entry) {
		polls++
		buffers[unsafe.SliceData(sc.own)] = true
		for i := range batch {
			e := &batch[i]
			e.Key, e.Value = bytes.Clone(e.Key), bytes.Clone(e.Value)
		}
	})
	checkRecords(t, got, p0, p1)
	t.Logf("%d polls read into %d buffers", polls, len(buffers))
	if len(buffers) > 12 || len(buffers) >= polls {
		t.Fatalf("%d polls read into %d buffers; want one buffer per size (at most 12)", polls, len(buffers))
	}
}

// produceRandom writes random records (records) to the topic's two
// partitions through Topic.Produce: partition 0 in one call, partition 1
// in calls of random sizes. It logs its seed.
func produceRandom(t *testing.T) (brokers string, p0, p1 []rec) {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (rerun: change the seed line)", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	brokers = cluster(t)
	p := producer(t, brokers, nil)
	defer p.Close()
	tp, err := AttachTopic(p, topic)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range records(rng, 3000) {
		if i%2 == 0 {
			p0 = append(p0, r)
		} else {
			p1 = append(p1, r)
		}
	}
	produce := func(part int32, rs []rec) {
		for done := 0; done < len(rs); {
			n, err := tp.Produce(part, len(rs)-done, func(i int) ([]byte, []byte) { return rs[done+i].key, rs[done+i].value })
			done += n
			var ke kafka.Error
			if errors.As(err, &ke) && ke.Code() == kafka.ErrQueueFull {
				p.Flush(10)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(0, p0)
	for done := 0; done < len(p1); {
		k := min(1+rng.IntN(300), len(p1)-done)
		produce(1, p1[done:done+k])
		done += k
	}
	tp.Close()
	if left := p.Flush(30_000); left != 0 {
		t.Fatalf("%d records not delivered", left)
	}
	return brokers, p0, p1
}

// checkRecords checks that got holds the records of p0 and p1 in order,
// at offsets from 0, with their keys and values (null stays null) and a
// timestamp.
func checkRecords(t *testing.T, got map[int32][]Entry, p0, p1 []rec) {
	t.Helper()
	for part, exp := range map[int32][]rec{0: p0, 1: p1} {
		if len(got[part]) != len(exp) {
			t.Fatalf("partition %d: %d records, want %d", part, len(got[part]), len(exp))
		}
		for i, e := range got[part] {
			w := exp[i]
			if e.Offset != int64(i) || !bytes.Equal(e.Key, w.key) || !bytes.Equal(e.Value, w.value) ||
				(e.Key == nil) != (w.key == nil) || (e.Value == nil) != (w.value == nil) {
				t.Fatalf("partition %d record %d: offset %d key %q (nil %v) value of %d bytes (nil %v); want key %q (nil %v) value of %d bytes (nil %v)",
					part, i, e.Offset, e.Key, e.Key == nil, len(e.Value), e.Value == nil, w.key, w.key == nil, len(w.value), w.value == nil)
			}
			if !e.HasTimestamp || e.Timestamp <= 0 {
				t.Fatalf("partition %d record %d: timestamp %d (has %v)", part, i, e.Timestamp, e.HasTimestamp)
			}
		}
	}
}

// TestProduceTransactional: records produced through the shim belong to
// the producer's transaction: an aborted one is not read by a
// read_committed consumer, a committed one is.
func TestProduceTransactional(t *testing.T) {
	brokers := cluster(t)
	p := producer(t, brokers, kafka.ConfigMap{"transactional.id": "tx-1"})
	defer p.Close()
	ctx := t.Context()
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatal(err)
	}
	tp, err := AttachTopic(p, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	write := func(prefix string) error {
		_, err := tp.Produce(0, 10, func(i int) ([]byte, []byte) { return nil, fmt.Appendf(nil, "%s-%d", prefix, i) })
		return err
	}
	inTxn(t, p, false, func() error { return write("aborted") })
	inTxn(t, p, true, func() error { return write("committed") })
	vals := readCommitted(t, brokers, 10)
	for i, v := range vals {
		if want := fmt.Sprintf("committed-%d", i); v != want {
			t.Fatalf("record %d: %q, want %q (all: %q)", i, v, want, vals)
		}
	}
}

// txnProducer is what inTxn needs of a producer (confluent-kafka-go's or
// ours).
type txnProducer interface {
	BeginTransaction() error
	CommitTransaction(context.Context) error
	AbortTransaction(context.Context) error
}

// inTxn runs produce in a transaction of p, then commits or aborts it.
func inTxn(t *testing.T, p txnProducer, commit bool, produce func() error) {
	t.Helper()
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := produce(); err != nil {
		t.Fatal(err)
	}
	var err error
	if commit {
		err = p.CommitTransaction(t.Context())
	} else {
		err = p.AbortTransaction(t.Context())
	}
	if err != nil {
		t.Fatal(err)
	}
}

// readCommitted reads the values of the first n records of the topic that
// a read_committed consumer sees, within 30s.
func readCommitted(t *testing.T, brokers string, n int) []string {
	t.Helper()
	c := consumer(t, brokers, kafka.ConfigMap{"isolation.level": "read_committed"})
	defer c.Close()
	sc, err := AttachConsumer(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	var vals []string
	deadline := time.Now().Add(30 * time.Second)
	for len(vals) < n {
		if time.Now().After(deadline) {
			t.Fatalf("read %q within 30s", vals)
		}
		batch, err := sc.Poll(100*time.Millisecond, 100, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range batch {
			if e.Kind == Record {
				vals = append(vals, string(e.Value))
			}
		}
	}
	return vals
}

// TestConsumerCommitResults: the results of the client's offset commits
// come as Committed entries, with the partitions routed (Route) or not.
func TestConsumerCommitResults(t *testing.T) {
	for _, route := range []bool{false, true} {
		name := map[bool]string{false: "consumer-queue", true: "routed"}[route]
		t.Run(name, func(t *testing.T) {
			brokers := cluster(t)
			c := unassigned(t, brokers, kafka.ConfigMap{"enable.auto.commit": true, "auto.commit.interval.ms": 50,
				"enable.auto.offset.store": false})
			defer c.Close()
			sc, err := AttachConsumer(c)
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			if route {
				if err := sc.Route(topic, []int32{0, 1}); err != nil {
					t.Fatal(err)
				}
			}
			assignBoth(t, c)
			tp := topic
			if _, err := c.StoreOffsets([]kafka.TopicPartition{{Topic: &tp, Partition: 0, Offset: 0}}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				if time.Now().After(deadline) {
					t.Fatal("no commit result within 30s")
				}
				batch, err := sc.Poll(100*time.Millisecond, 100, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range batch {
					if e.Kind == Committed {
						if e.Err != nil {
							t.Fatalf("commit failed: %v", e.Err)
						}
						return
					}
				}
			}
		})
	}
}

// TestAttachChecksTheHandle: the handle found is the client's own (named
// as the client), for both kinds of client.
func TestAttachChecksTheHandle(t *testing.T) {
	brokers := cluster(t)
	p := producer(t, brokers, nil)
	defer p.Close()
	c := consumer(t, brokers, nil)
	defer c.Close()
	for _, cl := range []interface{ String() string }{p, c} {
		rk, err := handleOf(cl)
		if err != nil {
			t.Fatalf("%s: %v", cl, err)
		}
		if rk == nil {
			t.Fatalf("%s: no handle", cl)
		}
	}
	if _, err := handleOf((*kafka.Consumer)(nil)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("nil consumer: %v", err)
	}
	if _, err := handleOf(fakeClient{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("not a client: %v", err)
	}
}

type fakeClient struct{}

func (fakeClient) String() string { return "x" }

// tenRecordQueue returns a cluster, a producer whose queue holds 10
// records and a shim topic on it (both closed at the end of the test;
// closing them earlier is fine).
func tenRecordQueue(t *testing.T) (string, *kafka.Producer, *Topic) {
	t.Helper()
	brokers := cluster(t)
	p := producer(t, brokers, kafka.ConfigMap{"queue.buffering.max.messages": 10})
	t.Cleanup(p.Close)
	tp, err := AttachTopic(p, topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tp.Close) // runs before p.Close
	return brokers, p, tp
}

// TestProduceAllWaitsForRoom: with a queue of 10 records, ProduceAll asks
// for room whenever it is full and every record arrives once, in order; an
// error from room ends it with the records before it produced.
func TestProduceAllWaitsForRoom(t *testing.T) {
	brokers, p, tp := tenRecordQueue(t)
	const n = 500
	rec := func(i int) ([]byte, []byte) { return nil, fmt.Appendf(nil, "v%d", i) }
	waits := 0
	if err := tp.ProduceAll(0, n, rec, func(full error) error {
		var ke kafka.Error
		if !errors.As(full, &ke) || ke.Code() != kafka.ErrQueueFull {
			t.Fatalf("room called with %v", full)
		}
		waits++
		p.Flush(10)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if waits == 0 {
		t.Fatal("a queue of 10 records never filled up")
	}
	if left := p.Flush(30_000); left != 0 {
		t.Fatalf("%d records not delivered", left)
	}
	stop := errors.New("stop")
	if err := tp.ProduceAll(0, n, rec, func(error) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ProduceAll with a room that gives up: %v", err)
	}
	tp.Close()
	if left := p.Flush(30_000); left != 0 {
		t.Fatalf("%d records not delivered", left)
	}
	got := readBack(t, brokers, n) // to the end of both partitions
	if len(got[0]) < n+10 || len(got[0]) >= 2*n {
		t.Fatalf("%d records in partition 0, want %d and the 10 that fit before room gave up", len(got[0]), n+10)
	}
	for i, e := range got[0][:n] {
		if want := fmt.Sprintf("v%d", i); string(e.Value) != want {
			t.Fatalf("record %d: %q, want %q", i, e.Value, want)
		}
	}
}

// TestMallocArenasLimited: the constructor limited glibc's arenas to two
// (the tests run without MALLOC_ARENA_MAX, GLIBC_TUNABLES or
// WEIR_MALLOC_ARENA_MAX).
func TestMallocArenasLimited(t *testing.T) {
	for _, v := range []string{"MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "WEIR_MALLOC_ARENA_MAX"} {
		if s, ok := os.LookupEnv(v); ok {
			t.Fatalf("%s=%q is set: this test checks the default; unset it", v, s)
		}
	}
	if got := MallocArenas(); got != 2 {
		t.Fatalf("MallocArenas() = %d, want 2", got)
	}
}

// TestMallocArenasFromEnvironment: WEIR_MALLOC_ARENA_MAX sets the count
// (0 leaves glibc's default), and the user's own glibc setting wins.
func TestMallocArenasFromEnvironment(t *testing.T) {
	if os.Getenv("WEIR_ARENA_CHILD") != "" {
		os.Stdout.WriteString("arenas=" + strconv.Itoa(MallocArenas()) + "\n")
		return
	}
	for _, c := range []struct {
		env  string
		want string
	}{
		{"WEIR_MALLOC_ARENA_MAX=3", "arenas=3"},
		{"WEIR_MALLOC_ARENA_MAX=0", "arenas=0"},
		{"WEIR_MALLOC_ARENA_MAX=two", "arenas=0"},
		{"MALLOC_ARENA_MAX=4", "arenas=0"},
		{"GLIBC_TUNABLES=glibc.malloc.arena_max=4", "arenas=0"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMallocArenasFromEnvironment$")
		cmd.Env = append(os.Environ(), "WEIR_ARENA_CHILD=1", c.env)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.env, err, out)
		}
		if !strings.Contains(string(out), c.want+"\n") {
			t.Errorf("%s: got %q, want %s", c.env, out, c.want)
		}
	}
}

// TestProduceAllPartitionerKeepsOrder: records for the topic's partitioner
// (partition -1) through a queue of 10 records, which fills up in the
// middle of the batches handed to librdkafka: every record arrives once
// and each key's records in the order produced.
func TestProduceAllPartitionerKeepsOrder(t *testing.T) {
	brokers, p, tp := tenRecordQueue(t)
	const n, keys = 1000, 7
	waits := 0
	if err := tp.ProduceAll(kafka.PartitionAny, n, func(i int) ([]byte, []byte) {
		return fmt.Appendf(nil, "k%d", i%keys), fmt.Appendf(nil, "%d", i)
	}, func(error) error { waits++; p.Flush(10); return nil }); err != nil {
		t.Fatal(err)
	}
	tp.Close()
	if waits == 0 {
		t.Fatal("a queue of 10 records never filled up")
	}
	if left := p.Flush(30_000); left != 0 {
		t.Fatalf("%d records not delivered", left)
	}
	got := readBack(t, brokers, n)
	last := map[string]int{}
	total := 0
	for part, es := range got {
		for _, e := range es {
			total++
			i, err := strconv.Atoi(string(e.Value))
			if err != nil {
				t.Fatalf("partition %d: value %q", part, e.Value)
			}
			k := string(e.Key)
			if prev, ok := last[k]; ok && i <= prev {
				t.Fatalf("partition %d: key %s has %d after %d", part, k, i, prev)
			}
			if want := fmt.Sprintf("k%d", i%keys); k != want {
				t.Fatalf("record %d has key %s, want %s", i, k, want)
			}
			last[k] = i
		}
	}
	if total != n {
		t.Fatalf("%d records read, want %d", total, n)
	}
}
