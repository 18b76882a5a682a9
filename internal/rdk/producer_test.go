package rdk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kfake"
)

// events records what a Producer reports.
type events struct {
	delivered atomic.Int64
	mu        sync.Mutex
	failed    []error
}

func (e *events) hooks() ProducerEvents {
	return ProducerEvents{
		Delivered: func(n int64) { e.delivered.Add(n) },
		Failed: func(err error) {
			e.mu.Lock()
			e.failed = append(e.failed, err)
			e.mu.Unlock()
		},
	}
}

func (e *events) failures() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.failed...)
}

func ownProducer(t testing.TB, brokers string, extra kafka.ConfigMap, ev ProducerEvents) *Producer {
	t.Helper()
	cfg := kafka.ConfigMap{"bootstrap.servers": brokers, "linger.ms": 1, "message.max.bytes": 8000000,
		"go.delivery.report.fields": "none"} // a go.* key is ignored
	for k, v := range extra {
		cfg[k] = v
	}
	p, err := NewProducer(cfg, ev)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProducerCountsResults: random records through a Result topic and
// dead letters with headers through ProduceOne all arrive once, in order,
// with their keys, values and headers (null stays null); Delivered counts
// the results and the records ProduceOne marks as results, not the others.
func TestProducerCountsResults(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d (replay: change the seed line)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	brokers := cluster(t)
	var ev events
	p := ownProducer(t, brokers, nil, ev.hooks())
	defer p.Close()
	out, err := p.Result(topic)
	if err != nil {
		t.Fatal(err)
	}
	recs := records(rng, 600)
	if err := out.ProduceAll(0, len(recs), func(i int) ([]byte, []byte) { return recs[i].key, recs[i].value },
		func(full error) error { p.Flush(10); return nil }); err != nil {
		t.Fatal(err)
	}
	out.Close()
	// To partition 1 (any partition of a 2-partition topic: checked by
	// reading both): 3 dead letters and 2 results with headers.
	type one struct {
		key, value []byte
		headers    []Header
		result     bool
	}
	ones := []one{
		{[]byte("k0"), []byte("v0"), []Header{{"error", []byte("bad json")}, {"empty", []byte{}}, {"null", nil}}, false},
		{nil, nil, nil, false},
		{[]byte("k2"), []byte("v2"), []Header{{"h", []byte("x")}}, true},
		{[]byte{}, []byte("v3"), []Header{{"", []byte("noname")}}, false},
		{[]byte("k4"), []byte{}, nil, true},
	}
	for _, o := range ones {
		if err := p.ProduceOne(topic, o.key, o.value, o.headers, o.result); err != nil {
			t.Fatal(err)
		}
	}
	if left := p.Flush(30_000); left != 0 {
		t.Fatalf("%d records not delivered", left)
	}
	if got, want := ev.delivered.Load(), int64(len(recs)+2); got != want {
		t.Fatalf("Delivered counted %d records, want %d (%d results and the 2 of ProduceOne marked so)", got, want, len(recs))
	}
	if f := ev.failures(); len(f) != 0 {
		t.Fatalf("failures reported: %v", f)
	}
	got := readBack(t, brokers, len(recs)+len(ones))
	var p0 []Entry
	for _, e := range got[0] {
		p0 = append(p0, e)
	}
	// ProduceOne's records may land in either partition: match them by
	// value, the results by order in partition 0.
	i := 0
	for _, e := range p0 {
		if i < len(recs) && equalNull(e.Key, recs[i].key) && equalNull(e.Value, recs[i].value) {
			i++
		}
	}
	if i != len(recs) {
		t.Fatalf("partition 0 holds the first %d of %d results in order", i, len(recs))
	}

	// Headers, read by the client.
	c := consumer(t, brokers, nil)
	defer c.Close()
	seen := 0
	deadline := time.Now().Add(30 * time.Second)
	for seen < len(ones) && time.Now().Before(deadline) {
		ev := c.Poll(100)
		m, ok := ev.(*kafka.Message)
		if !ok || m.TopicPartition.Error != nil {
			continue
		}
		for _, o := range ones {
			if !equalNull(m.Key, o.key) || !equalNull(m.Value, o.value) {
				continue
			}
			if len(m.Headers) != len(o.headers) {
				t.Fatalf("record %q: headers %v, want %v", m.Key, m.Headers, o.headers)
			}
			for j, h := range o.headers {
				if m.Headers[j].Key != h.Key || !equalNull(m.Headers[j].Value, h.Value) {
					t.Fatalf("record %q header %d: %q=%q (nil %v), want %q=%q (nil %v)", m.Key, j, m.Headers[j].Key,
						m.Headers[j].Value, m.Headers[j].Value == nil, h.Key, h.Value, h.Value == nil)
				}
			}
			seen++
		}
	}
	if seen != len(ones) {
		t.Fatalf("read %d of the %d records of ProduceOne within 30s", seen, len(ones))
	}
}

// equalNull compares two byte strings, null (nil) apart from empty.
func equalNull(a, b []byte) bool {
	return (a == nil) == (b == nil) && string(a) == string(b)
}

// refusingProducer is a Producer (no retries) with a Result topic on a
// one-partition kfake cluster that refuses records over 1000 bytes; all
// are closed when the test ends.
func refusingProducer(t *testing.T, ev ProducerEvents) (*Producer, *Topic) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "1000"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	p := ownProducer(t, c.ListenAddrs()[0], kafka.ConfigMap{"message.send.max.retries": 0}, ev)
	t.Cleanup(p.Close)
	out, err := p.Result(topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(out.Close) // before the producer's Close: cleanups run last first
	return p, out
}

// TestProducerReportsFailure: a record the brokers refuse (larger than the
// topic's limit) is reported once to Failed, naming the topic and the
// broker's error, and is not counted as delivered; Flush still returns.
func TestProducerReportsFailure(t *testing.T) {
	var ev events
	p, out := refusingProducer(t, ev.hooks())
	// One request each: the broker refuses a request whole.
	big := make([]byte, 5000)
	for _, v := range [][]byte{[]byte("small"), big, []byte("small")} {
		if _, err := out.Produce(0, 1, func(int) ([]byte, []byte) { return nil, v }); err != nil {
			t.Fatal(err)
		}
		if left := p.Flush(30_000); left != 0 {
			t.Fatalf("%d records not delivered or failed", left)
		}
	}
	f := ev.failures()
	if len(f) != 1 {
		t.Fatalf("%d failures reported, want 1: %v", len(f), f)
	}
	var ke kafka.Error
	if !errors.As(f[0], &ke) || ke.Code() != kafka.ErrMsgSizeTooLarge || !strings.Contains(f[0].Error(), "write to "+topic) {
		t.Fatalf("failure %q (code %v), want the topic and %v", f[0], ke.Code(), kafka.ErrMsgSizeTooLarge)
	}
	if d := ev.delivered.Load(); d != 2 {
		t.Fatalf("Delivered counted %d records, want the 2 small ones", d)
	}
}

// TestProducerFlushFencesReports: Flush returns 0 only once the reports
// of every record produced before it have been handed to Events. Each
// step's report is held inside its hook (the serving goroutine has taken
// it off the queue, so the queue is empty): Flush must not return 0 then,
// and once the hook is let go it returns 0 with the report counted. An
// at-least-once sink acknowledges a barrier on that answer.
func TestProducerFlushFencesReports(t *testing.T) {
	var ev events
	var hold atomic.Pointer[chan struct{}] // the current step's release
	entered := make(chan struct{}, 1)
	gate := func() {
		if rel := hold.Load(); rel != nil {
			entered <- struct{}{}
			<-*rel
		}
	}
	held := ev.hooks()
	delivered, failed := held.Delivered, held.Failed
	held.Delivered = func(n int64) { gate(); delivered(n) }
	held.Failed = func(err error) { gate(); failed(err) }
	p, out := refusingProducer(t, held)
	big := make([]byte, 5000)
	steps := []struct {
		value                  []byte
		wantDelivered, wantErr int
	}{{[]byte("a"), 1, 0}, {big, 1, 1}, {[]byte("b"), 2, 1}, {[]byte("c"), 3, 1}}
	for i, st := range steps {
		rel := make(chan struct{})
		var once sync.Once
		release := func() { hold.Store(nil); once.Do(func() { close(rel) }) }
		t.Cleanup(release) // a failed step must not leave the serving goroutine held: Close waits for it
		hold.Store(&rel)
		if _, err := out.Produce(0, 1, func(int) ([]byte, []byte) { return nil, st.value }); err != nil {
			t.Fatal(err)
		}
		select {
		case <-entered:
		case <-time.After(30 * time.Second):
			t.Fatalf("step %d: no report reached Events within 30s", i)
		}
		if left := p.Flush(200); left == 0 {
			t.Fatalf("step %d: Flush returned 0 while the report was still held by the serving goroutine", i)
		}
		release()
		if left := p.Flush(30_000); left != 0 {
			t.Fatalf("step %d: %d records not delivered or failed", i, left)
		}
		if d, f := ev.delivered.Load(), len(ev.failures()); d != int64(st.wantDelivered) || f != st.wantErr {
			t.Fatalf("step %d: Flush returned 0 with %d delivered and %d failures handed over, want %d and %d",
				i, d, f, st.wantDelivered, st.wantErr)
		}
	}
}

// TestProducerBadConfig: a property librdkafka does not know, a value it
// refuses and a value of an unknown type are errors naming them.
func TestProducerBadConfig(t *testing.T) {
	for _, tc := range []struct {
		conf kafka.ConfigMap
		want string
	}{
		{kafka.ConfigMap{"no.such.property": "1"}, "no.such.property"},
		{kafka.ConfigMap{"acks": "several"}, "acks"},
		{kafka.ConfigMap{"linger.ms": []int{1}}, "linger.ms"},
		{kafka.ConfigMap{"go.logs.channel": "stderr"}, "go.logs.channel"},
	} {
		tc.conf["bootstrap.servers"] = "127.0.0.1:1"
		p, err := NewProducer(tc.conf, ProducerEvents{})
		if err == nil {
			p.Close()
			t.Fatalf("%v: no error", tc.conf)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%v: error %q does not name %q", tc.conf, err, tc.want)
		}
	}
}

// TestProducerLogs: the client's log lines reach go.logs.channel, with the
// client's name and facility.
func TestProducerLogs(t *testing.T) {
	logs := make(chan kafka.LogEvent, 100)
	p := ownProducer(t, "127.0.0.1:1", kafka.ConfigMap{"go.logs.channel.enable": true, "go.logs.channel": logs,
		"log_level": 7, "debug": "generic"}, ProducerEvents{})
	defer p.Close()
	select {
	case ev := <-logs:
		if ev.Name != p.String() || ev.Tag == "" || ev.Message == "" {
			t.Fatalf("log event %+v: want the client's name %q, a tag and a message", ev, p.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no log line within 30s")
	}
}

// TestProducerCloseWithQueued: Close returns with records still queued
// for a broker that is not there, and a second Close does nothing.
func TestProducerCloseWithQueued(t *testing.T) {
	p := ownProducer(t, "127.0.0.1:1", nil, ProducerEvents{})
	out, err := p.Result(topic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.Produce(-1, 10, func(i int) ([]byte, []byte) { return nil, fmt.Appendf(nil, "%d", i) }); err != nil {
		t.Fatal(err)
	}
	if p.Len() < 10 { // and the events not served yet
		t.Fatalf("Len %d, want at least the 10 queued records", p.Len())
	}
	out.Close()
	p.Close()
	p.Close()
}

// TestProducerTransactions: with delivery.report.only.error, records
// produced through a Topic of the Producer belong to its transaction (an
// aborted one is not read by a read_committed consumer, a committed one
// is, and no successful delivery is reported); a call out of order is a
// *TxnError that names it and is neither retriable nor fatal; a producer
// fenced by another of its transactional.id fails its commit with a fatal
// error, which goes to Events.Fatal, not Failed (which hears of the
// records purged).
func TestProducerTransactions(t *testing.T) {
	brokers := cluster(t)
	var ev events
	var fatal atomic.Pointer[error]
	hooks := ev.hooks()
	hooks.Fatal = func(err error) { fatal.CompareAndSwap(nil, &err) }
	p := ownProducer(t, brokers, kafka.ConfigMap{"transactional.id": "tx-own", "delivery.report.only.error": true}, hooks)
	defer p.Close()
	ctx := t.Context()
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatal(err)
	}
	var te *TxnError
	if err := p.CommitTransaction(ctx); !errors.As(err, &te) || te.Err.Code() != kafka.ErrState || te.IsRetriable() || te.IsFatal() {
		t.Fatalf("commit before begin: %v (%#v), want a state error, not retriable, not fatal", err, te)
	}
	tp, err := p.Topic(topic)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	write := func(prefix string) error {
		if _, err := tp.Produce(0, 10, func(i int) ([]byte, []byte) { return nil, fmt.Appendf(nil, "%s-%d", prefix, i) }); err != nil {
			return err
		}
		return p.ProduceOne(topic, []byte("k"), fmt.Appendf(nil, "%s-one", prefix), []Header{{Key: "h", Value: []byte("v")}}, false)
	}
	inTxn(t, p, false, func() error { return write("aborted") })
	inTxn(t, p, true, func() error { return write("committed") })
	if n := p.Flush(1000); n != 0 {
		t.Fatalf("Flush after the commit: %d left", n)
	}
	vals := readCommitted(t, brokers, 11)
	slices.Sort(vals)
	want := []string{"committed-one"}
	for i := 0; i < 10; i++ {
		want = append(want, fmt.Sprintf("committed-%d", i))
	}
	slices.Sort(want)
	if !slices.Equal(vals, want) {
		t.Fatalf("read %q, want %q", vals, want)
	}
	if n := ev.delivered.Load(); n != 0 {
		t.Errorf("Delivered counted %d records none of which was a result", n)
	}

	// A second producer of the id fences the first.
	p2 := ownProducer(t, brokers, kafka.ConfigMap{"transactional.id": "tx-own"}, ProducerEvents{})
	defer p2.Close()
	if err := p2.InitTransactions(ctx); err != nil {
		t.Fatal(err)
	}
	err = p.BeginTransaction()
	if err == nil {
		_, err = tp.Produce(0, 1, func(int) ([]byte, []byte) { return nil, []byte("zombie") })
	}
	if err == nil {
		err = p.CommitTransaction(ctx)
	}
	if err == nil {
		t.Fatal("the fenced producer committed")
	}
	if !errors.As(err, &te) || !te.IsFatal() {
		t.Errorf("the fenced producer's commit: %v, want a fatal *TxnError", err)
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for fatal.Load() == nil {
		if fctx.Err() != nil {
			t.Fatal("no fatal error reported after the producer was fenced")
		}
		p.Flush(10)
	}
	var ke kafka.Error
	if err := *fatal.Load(); !errors.As(err, &ke) || ke.Code() != kafka.ErrFenced || !ke.IsFatal() {
		t.Errorf("fatal error %v, want a fatal kafka.Error with the code of the fencing (%v)", err, kafka.ErrFenced)
	}
	for _, f := range ev.failures() { // records aborted or purged are
		if errors.As(f, &ke) && ke.IsFatal() {
			t.Errorf("Failed told of %v; the fatal error goes to Fatal only", f)
		}
	}
}
