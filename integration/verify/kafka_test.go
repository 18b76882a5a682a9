package verify

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testTimeout bounds every Kafka call of a test; it is a deadline, not an
// assertion about speed.
const testTimeout = 2 * time.Minute

func newCluster(t *testing.T, partitions int32, topics ...string) string {
	t.Helper()
	_, brokers := newFakeCluster(t, partitions, topics...)
	return brokers
}

// newFakeCluster starts an in-process kfake broker on 127.0.0.1 with the
// given topics and returns it and its bootstrap list.
func newFakeCluster(t *testing.T, partitions int32, topics ...string) (*kfake.Cluster, string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c, strings.Join(c.ListenAddrs(), ",")
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestProduceReadAll(t *testing.T) {
	const partitions = 3
	brokers := newCluster(t, partitions, "events")
	ctx := testCtx(t)
	events, err := Generate(GenConfig{Seed: 3, Keys: 20, Partitions: partitions, Events: 25000, Start: 1764028800000, Step: time.Millisecond, OutOfOrderness: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := Produce(ctx, brokers, "events", events, partitions); err != nil {
		t.Fatal(err)
	}
	for _, iso := range []string{ReadCommitted, ReadUncommitted} {
		recs, err := readAll(ctx, brokers, "events", iso)
		if err != nil {
			t.Fatalf("%s: %v", iso, err)
		}
		if len(recs) != len(events) {
			t.Fatalf("%s: read %d records, produced %d", iso, len(recs), len(events))
		}
		// Per partition, records come back in produced order, each on
		// Partition(e) with key e.Key.
		next := map[int32][]Event{}
		for _, e := range events {
			p := Partition(e, partitions)
			next[p] = append(next[p], e)
		}
		for i, r := range recs {
			if i > 0 && r.partition < recs[i-1].partition {
				t.Fatalf("%s: records not grouped by partition", iso)
			}
			e, err := ParseEvent(r.value)
			if err != nil {
				t.Fatalf("%s: %v", iso, err)
			}
			q := next[r.partition]
			if len(q) == 0 || q[0] != e || string(r.key) != e.Key {
				t.Fatalf("%s: partition %d offset %d: got %+v key %q, want next %v", iso, r.partition, r.offset, e, r.key, q[:min(1, len(q))])
			}
			next[r.partition] = q[1:]
		}
	}
	vals, err := ReadAll(ctx, brokers, "events", ReadCommitted)
	if err != nil || len(vals) != len(events) {
		t.Fatalf("ReadAll: %d values, %v", len(vals), err)
	}
}

func TestProduceErrors(t *testing.T) {
	brokers := newCluster(t, 2, "two")
	ctx := testCtx(t)
	events := []Event{{Key: "u1", TS: 1}}
	err := Produce(ctx, brokers, "two", events, 3)
	if err == nil || !strings.Contains(err.Error(), "topic has 2 partitions") {
		t.Errorf("3 partitions on a 2-partition topic: %v", err)
	}
	if err := Produce(ctx, brokers, "two", events, 0); err == nil {
		t.Errorf("0 partitions: no error")
	}
	if _, err := ReadAll(ctx, brokers, "two", "read_everything"); err == nil || !strings.Contains(err.Error(), "isolation") {
		t.Errorf("bad isolation: %v", err)
	}
	vals, err := ReadAll(ctx, brokers, "two", ReadCommitted)
	if err != nil || len(vals) != 0 {
		t.Errorf("empty topic: %d values, %v", len(vals), err)
	}
}

// TestProduceDeliveryError makes the broker refuse every produce request
// with a non-retriable error and checks that Produce returns it, with the
// topic, instead of waiting forever.
func TestProduceDeliveryError(t *testing.T) {
	c, brokers := newFakeCluster(t, 2, "refused")
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	events, err := Generate(GenConfig{Seed: 1, Keys: 5, Partitions: 2, Events: 100, Step: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = Produce(testCtx(t), brokers, "refused", events, 2)
	if err == nil || !strings.Contains(err.Error(), `verify: produce to "refused"`) {
		t.Fatalf("Produce to a refusing broker: %v", err)
	}
	t.Logf("error, as expected: %v", err)
}

// txProducer returns a transactional confluent producer on brokers.
func txProducer(t *testing.T, ctx context.Context, brokers, txid string) *kafka.Producer {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":   brokers,
		"transactional.id":    txid,
		"linger.ms":           1,
		"enable.metrics.push": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	go func() { // keep the client's event channel drained
		for range p.Events() {
		}
	}()
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatalf("init transactions: %v", err)
	}
	return p
}

func produceResults(t *testing.T, p *kafka.Producer, topic string, rs []Result, partition func(Result) int32) {
	t.Helper()
	for _, r := range rs {
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: partition(r)},
			Key:            []byte(r.Key),
			Value:          r.JSON(),
		}, nil)
		if err != nil {
			t.Fatalf("produce %v: %v", r, err)
		}
	}
}

// TestReadAllTransactions writes committed and aborted results in
// transactions, ending every partition with a transaction marker (partition
// 1 holds only aborted records), and checks that read_committed returns
// exactly the committed results, and read_uncommitted all of them.
func TestReadAllTransactions(t *testing.T) {
	brokers := newCluster(t, 2, "results")
	ctx := testCtx(t)
	p := txProducer(t, ctx, brokers, "verify-test")

	var committed, aborted []Result
	for i := range int64(30) {
		committed = append(committed, res(fmt.Sprintf("u%d", i%5), i*1000, i+1, float64(10*i)))
		aborted = append(aborted, res(fmt.Sprintf("u%d", i%5), i*1000, 999, 1))
	}
	on0 := func(Result) int32 { return 0 }
	byKey := func(r Result) int32 { return int32(r.WindowStart/1000) % 2 }

	// 1: commit half the committed results on partition 0.
	// 2: abort results on both partitions.
	// 3: commit the rest on partition 0.
	// 4: abort more on both partitions, so both end in an abort marker.
	steps := []struct {
		rs     []Result
		part   func(Result) int32
		commit bool
	}{
		{committed[:15], on0, true},
		{aborted[:15], byKey, false},
		{committed[15:], on0, true},
		{aborted[15:], byKey, false},
	}
	for i, s := range steps {
		if err := p.BeginTransaction(); err != nil {
			t.Fatalf("step %d: begin: %v", i, err)
		}
		produceResults(t, p, "results", s.rs, s.part)
		if s.commit {
			if err := p.CommitTransaction(ctx); err != nil {
				t.Fatalf("step %d: commit: %v", i, err)
			}
		} else {
			if err := p.Flush(int(testTimeout.Milliseconds())); err != 0 {
				t.Fatalf("step %d: %d records not flushed", i, err)
			}
			if err := p.AbortTransaction(ctx); err != nil {
				t.Fatalf("step %d: abort: %v", i, err)
			}
		}
	}

	got, err := ReadResults(ctx, brokers, "results", ReadCommitted)
	if err != nil {
		t.Fatalf("read_committed: %v", err)
	}
	if !slices.Equal(got, committed) {
		t.Fatalf("read_committed: got %d results, want the %d committed:\n%v", len(got), len(committed), got)
	}
	if v := Compare(30, committed, got); !v.OK {
		t.Fatalf("%s", v.Report())
	}

	all, err := ReadResults(ctx, brokers, "results", ReadUncommitted)
	if err != nil {
		t.Fatalf("read_uncommitted: %v", err)
	}
	if len(all) != len(committed)+len(aborted) {
		t.Fatalf("read_uncommitted: %d results, want %d", len(all), len(committed)+len(aborted))
	}
	v := Compare(30, committed, all)
	if v.OK || v.Wrong != 30 || v.Duplicates != 30 || v.Missing != 0 || v.Unexpected != 0 {
		t.Fatalf("aborted results not seen by read_uncommitted: %s", v.Report())
	}
}

func TestReadResultsRejectsBadRecords(t *testing.T) {
	brokers := newCluster(t, 1, "bad")
	ctx := testCtx(t)
	p := txProducer(t, ctx, brokers, "verify-bad")
	topic := "bad"
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	good := res("u1", 0, 1, 1)
	for _, m := range []*kafka.Message{
		{Key: []byte("u1"), Value: good.JSON()},
		{Key: []byte("u2"), Value: good.JSON()}, // record key differs from result key
	} {
		m.TopicPartition = kafka.TopicPartition{Topic: &topic, Partition: 0}
		if err := p.Produce(m, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.CommitTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := ReadResults(ctx, brokers, topic, ReadCommitted)
	if err == nil || !strings.Contains(err.Error(), "partition 0 offset 1: record key \"u2\"") {
		t.Fatalf("key mismatch: %v", err)
	}
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Key: []byte("u1"), Value: []byte(`{"key":"u1"`)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.CommitTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	vals, err := ReadAll(ctx, brokers, topic, ReadCommitted)
	if err != nil || len(vals) != 3 {
		t.Fatalf("ReadAll: %d values, %v", len(vals), err)
	}
}

// TestReadAllOpenTransaction checks that a transaction left open (a
// lingering transaction) does not make read_committed hang: it reads up to
// the last stable offset, while read_uncommitted also returns the open
// transaction's records.
func TestReadAllOpenTransaction(t *testing.T) {
	brokers := newCluster(t, 1, "open")
	ctx := testCtx(t)
	p := txProducer(t, ctx, brokers, "verify-open")
	on0 := func(Result) int32 { return 0 }
	done, open := res("u1", 0, 1, 1), res("u1", 1000, 2, 2)

	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceResults(t, p, "open", []Result{done}, on0)
	if err := p.CommitTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceResults(t, p, "open", []Result{open}, on0)
	if n := p.Flush(int(testTimeout.Milliseconds())); n != 0 {
		t.Fatalf("%d records not flushed", n)
	}

	got, err := ReadResults(ctx, brokers, "open", ReadCommitted)
	if err != nil || !slices.Equal(got, []Result{done}) {
		t.Fatalf("read_committed: %v, %v; want only %v", got, err, done)
	}
	got, err = ReadResults(ctx, brokers, "open", ReadUncommitted)
	if err != nil || !slices.Equal(got, []Result{done, open}) {
		t.Fatalf("read_uncommitted: %v, %v; want %v and %v", got, err, done, open)
	}
}
