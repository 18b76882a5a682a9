package broker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir/integration/broker"
)

func TestMain(m *testing.M) { os.Exit(broker.Main(m, 1)) }

// Bounds on waits; none of them is asserted as a duration.
const (
	opTimeout      = 90 * time.Second
	deliverTimeout = 5 * time.Minute // above librdkafka's message.timeout.ms default
	consumeTimeout = 2 * time.Minute
)

func newProducer(t *testing.T, bootstrap string, extra kafka.ConfigMap) *kafka.Producer {
	t.Helper()
	cfg := kafka.ConfigMap{"bootstrap.servers": bootstrap, "enable.idempotence": true}
	for k, v := range extra {
		cfg[k] = v
	}
	p, err := kafka.NewProducer(&cfg)
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// produce sends one record to partition 0 of topic and waits for its
// delivery report.
func produce(t *testing.T, p *kafka.Producer, topic, value string) {
	t.Helper()
	dr := make(chan kafka.Event, 1)
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0},
		Key:            []byte("k-" + value),
		Value:          []byte(value),
	}
	if err := p.Produce(msg, dr); err != nil {
		t.Fatalf("produce %q: %v", value, err)
	}
	select {
	case ev := <-dr:
		m, ok := ev.(*kafka.Message)
		if !ok {
			t.Fatalf("produce %q: delivery event %T: %v", value, ev, ev)
		}
		if m.TopicPartition.Error != nil {
			t.Fatalf("produce %q: delivery failed: %v", value, m.TopicPartition.Error)
		}
	case <-time.After(deliverTimeout):
		t.Fatalf("produce %q: no delivery report within %s", value, deliverTimeout)
	}
}

// txn runs one transaction writing values and commits it, or aborts it if
// commit is false.
func txn(t *testing.T, p *kafka.Producer, topic string, commit bool, values ...string) {
	t.Helper()
	if err := p.BeginTransaction(); err != nil {
		t.Fatalf("begin transaction: %v", err)
	}
	for _, v := range values {
		produce(t, p, topic, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if commit {
		if err := p.CommitTransaction(ctx); err != nil {
			t.Fatalf("commit transaction %v: %v", values, err)
		}
		return
	}
	if err := p.AbortTransaction(ctx); err != nil {
		t.Fatalf("abort transaction %v: %v", values, err)
	}
}

// consumeUntil reads partition 0 of topic from the beginning with the given
// isolation level until it has seen the value last, and returns every value
// read.
func consumeUntil(t *testing.T, bootstrap, topic, isolation, last string) []string {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  bootstrap,
		"group.id":           topic + "-" + isolation,
		"enable.auto.commit": false,
		"isolation.level":    isolation,
	})
	if err != nil {
		t.Fatalf("new consumer: %v", err)
	}
	defer c.Close()
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatalf("assign: %v", err)
	}
	var got []string
	deadline := time.Now().Add(consumeTimeout)
	for time.Now().Before(deadline) {
		m, err := c.ReadMessage(time.Second)
		if err != nil {
			var ke kafka.Error
			if errors.As(err, &ke) && (ke.IsTimeout() || !ke.IsFatal()) {
				continue
			}
			t.Fatalf("consume %s (%s): %v", topic, isolation, err)
		}
		got = append(got, string(m.Value))
		if string(m.Value) == last {
			return got
		}
	}
	t.Fatalf("consume %s (%s): %q not seen within %s; got %q", topic, isolation, last, consumeTimeout, got)
	return nil
}

func TestClusterInfo(t *testing.T) {
	c := broker.Shared()
	if got := c.Version(); got != broker.KafkaVersion {
		t.Errorf("Version() = %q, want %q", got, broker.KafkaVersion)
	}
	if got := c.NumBrokers(); got != 1 {
		t.Errorf("NumBrokers() = %d, want 1", got)
	}
	if _, err := os.Stat(c.LibsDir() + "/kafka-tools-" + broker.KafkaVersion + ".jar"); err != nil {
		t.Errorf("LibsDir() lacks kafka-tools: %v", err)
	}
	topic := broker.Topic(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := c.CreatePartitions(ctx, topic, 4); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTopic(ctx, topic, 1, nil); err == nil {
		t.Errorf("creating %s twice succeeded, want TOPIC_ALREADY_EXISTS", topic)
	}
	coord, err := c.TxnCoordinator(ctx, "weir-info")
	if err != nil {
		t.Fatal(err)
	}
	if coord != 0 {
		t.Errorf("TxnCoordinator = %d, want 0 on a 1-broker cluster", coord)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := broker.Start(ctx, broker.Options{}); err == nil || !strings.Contains(err.Error(), "Dir") {
		t.Errorf("Start without Dir: err = %v, want one naming Dir", err)
	}
	if _, err := broker.Start(ctx, broker.Options{Brokers: -1, Dir: t.TempDir()}); err == nil {
		t.Error("Start with Brokers = -1 succeeded")
	}
	// A bad server.properties value fails in the storage formatter, and the
	// error carries Kafka's own explanation.
	_, err := broker.Start(ctx, broker.Options{
		Dir:         t.TempDir(),
		ExtraConfig: map[string]string{"num.io.threads": "banana"},
	})
	if err == nil || !strings.Contains(err.Error(), "num.io.threads") {
		t.Errorf("Start with num.io.threads=banana: err = %v, want one naming num.io.threads", err)
	}
}

func TestProduceConsume(t *testing.T) {
	c := broker.Shared()
	topic := broker.Topic(t, 1)
	p := newProducer(t, c.Bootstrap(), nil)
	const n = 100
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("v-%03d", i))
	}
	dr := make(chan kafka.Event, n)
	for _, v := range want {
		if err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Value:          []byte(v),
		}, dr); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
	}
	for range n {
		select {
		case ev := <-dr:
			if m, ok := ev.(*kafka.Message); !ok || m.TopicPartition.Error != nil {
				t.Fatalf("delivery: %v", ev)
			}
		case <-time.After(deliverTimeout):
			t.Fatalf("no delivery report within %s", deliverTimeout)
		}
	}

	// Consume through a subscribed group, the path a real job takes.
	cons, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  c.Bootstrap(),
		"group.id":           topic,
		"auto.offset.reset":  "earliest",
		"enable.auto.commit": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	if err := cons.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}
	var got []string
	deadline := time.Now().Add(consumeTimeout)
	for len(got) < n && time.Now().Before(deadline) {
		m, err := cons.ReadMessage(time.Second)
		if err != nil {
			var ke kafka.Error
			if errors.As(err, &ke) && !ke.IsFatal() {
				continue
			}
			t.Fatal(err)
		}
		got = append(got, string(m.Value))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("consumed %d records %q..., want %d in order", len(got), head(got), n)
	}
}

func TestTransactionsReadCommitted(t *testing.T) {
	c := broker.Shared()
	topic := broker.Topic(t, 1)
	p := newProducer(t, c.Bootstrap(), kafka.ConfigMap{"transactional.id": topic + "-txn"})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatalf("init transactions: %v", err)
	}
	txn(t, p, topic, false, "aborted-1", "aborted-2")
	txn(t, p, topic, true, "committed-1", "committed-2")

	committed := consumeUntil(t, c.Bootstrap(), topic, "read_committed", "committed-2")
	if want := []string{"committed-1", "committed-2"}; !slices.Equal(committed, want) {
		t.Errorf("read_committed saw %q, want %q", committed, want)
	}
	all := consumeUntil(t, c.Bootstrap(), topic, "read_uncommitted", "committed-2")
	if want := []string{"aborted-1", "aborted-2", "committed-1", "committed-2"}; !slices.Equal(all, want) {
		t.Errorf("read_uncommitted saw %q, want %q", all, want)
	}
}

// TestCoordinatorKilled kills the broker that coordinates a transactional
// producer: a transaction commits through the new coordinator while it is
// down, and after it restarts an aborted and a committed transaction behave.
func TestCoordinatorKilled(t *testing.T) {
	c := broker.ForTest(t, 3)
	topic := c.Topic(t, 1)
	txnID := topic + "-txn"
	p := newProducer(t, c.Bootstrap(), kafka.ConfigMap{"transactional.id": txnID})
	ctx, cancel := context.WithTimeout(context.Background(), 5*opTimeout)
	defer cancel()
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatalf("init transactions: %v", err)
	}
	txn(t, p, topic, true, "before-kill")

	coord, err := c.TxnCoordinator(ctx, txnID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("transaction coordinator of %s is broker %d; killing it", txnID, coord)
	if err := c.KillBroker(coord); err != nil {
		t.Fatal(err)
	}
	txn(t, p, topic, true, "while-down")
	moved, err := c.TxnCoordinator(ctx, txnID)
	if err != nil {
		t.Fatal(err)
	}
	if moved == coord {
		t.Errorf("after committing with broker %d dead, coordinator is still %d", coord, moved)
	}

	if err := c.StartBroker(coord); err != nil {
		t.Fatal(err)
	}
	t.Logf("broker %d restarted; the coordinator had moved to broker %d", coord, moved)
	txn(t, p, topic, false, "aborted-after-restart")
	txn(t, p, topic, true, "after-restart")

	got := consumeUntil(t, c.Bootstrap(), topic, "read_committed", "after-restart")
	if want := []string{"before-kill", "while-down", "after-restart"}; !slices.Equal(got, want) {
		t.Errorf("read_committed saw %q, want %q", got, want)
	}
}

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}
