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

// rejectTimeout bounds the wait for a client's first error event on the
// secured listener; the clients below time out their sockets after 5 s.
const rejectTimeout = time.Minute

// securedConfig returns the librdkafka configuration of a client of c's
// secured listener, with extra on top.
func securedConfig(c *broker.Cluster, extra kafka.ConfigMap) kafka.ConfigMap {
	cfg := kafka.ConfigMap{"bootstrap.servers": c.SecuredBootstrap()}
	for k, v := range c.ClientProperties() {
		cfg[k] = v
	}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

// TestSecured starts one broker with a SASL_SSL (SCRAM-SHA-512) listener
// besides the plain one and runs every secured case against it.
func TestSecured(t *testing.T) {
	c := broker.SecuredForTest(t, 1)
	if !c.Secured() {
		t.Fatal("Secured() = false on a cluster from SecuredForTest")
	}
	if c.SecuredBootstrap() == "" || c.SecuredBootstrap() == c.Bootstrap() {
		t.Fatalf("SecuredBootstrap() = %q, Bootstrap() = %q: want a distinct secured address", c.SecuredBootstrap(), c.Bootstrap())
	}
	props := c.ClientProperties()
	for k, want := range map[string]string{
		"security.protocol": "SASL_SSL",
		"sasl.mechanisms":   "SCRAM-SHA-512",
		"sasl.username":     broker.SecuredUser,
		"sasl.password":     c.Password(broker.SecuredUser),
		"ssl.ca.location":   c.CAPath(),
	} {
		if props[k] != want || want == "" {
			t.Errorf("ClientProperties()[%q] = %q, want %q (non-empty)", k, props[k], want)
		}
	}
	for _, pem := range []string{c.CAPath(), c.UntrustedCAPath()} {
		data, err := os.ReadFile(pem)
		if err != nil || !strings.Contains(string(data), "BEGIN CERTIFICATE") {
			t.Fatalf("CA file %s: err %v, want a PEM certificate", pem, err)
		}
	}
	if c.Password(broker.BrokerUser) == "" || c.Password(broker.BrokerUser) == c.Password(broker.SecuredUser) {
		t.Errorf("broker user %q has no password of its own", broker.BrokerUser)
	}

	t.Run("ProduceConsume", func(t *testing.T) { testSecuredProduceConsume(t, c) })
	t.Run("WrongPassword", func(t *testing.T) { testSecuredWrongPassword(t, c) })
	t.Run("UntrustedCA", func(t *testing.T) { testSecuredUntrustedCA(t, c) })
	t.Run("Transactions", func(t *testing.T) { testSecuredTransactions(t, c) })
}

// testSecuredProduceConsume writes and reads over SASL_SSL; the records are
// the same on the plain listener.
func testSecuredProduceConsume(t *testing.T, c *broker.Cluster) {
	topic := c.Topic(t, 1)
	cfg := securedConfig(c, kafka.ConfigMap{"enable.idempotence": true})
	p, err := kafka.NewProducer(&cfg)
	if err != nil {
		t.Fatalf("new SASL_SSL producer: %v", err)
	}
	defer p.Close()
	var want []string
	for i := range 10 {
		v := fmt.Sprintf("secured-%02d", i)
		want = append(want, v)
		produce(t, p, topic, v)
	}
	got := consumeWith(t, securedConfig(c, nil), topic, "read_uncommitted", want[len(want)-1])
	if !slices.Equal(got, want) {
		t.Errorf("SASL_SSL consumer saw %q, want %q", got, want)
	}
	plain := consumeUntil(t, c.Bootstrap(), topic, "read_uncommitted", want[len(want)-1])
	if !slices.Equal(plain, want) {
		t.Errorf("PLAINTEXT consumer saw %q, want %q", plain, want)
	}
}

// testSecuredWrongPassword connects with the right user and CA but a wrong
// password: the client reports an authentication error and delivers nothing.
func testSecuredWrongPassword(t *testing.T, c *broker.Cluster) {
	wrong := c.Password(broker.SecuredUser) + "-wrong"
	err := firstError(t, c, kafka.ConfigMap{"sasl.password": wrong}, kafka.ErrAuthentication)
	if msg := err.Error(); !strings.Contains(msg, "SCRAM-SHA-512") && !strings.Contains(strings.ToLower(msg), "authentication") {
		t.Errorf("authentication error %q names neither SCRAM-SHA-512 nor authentication", msg)
	}
}

// testSecuredUntrustedCA trusts only a CA that did not sign the broker
// certificate: the TLS handshake fails with a certificate error.
func testSecuredUntrustedCA(t *testing.T, c *broker.Cluster) {
	err := firstError(t, c, kafka.ConfigMap{"ssl.ca.location": c.UntrustedCAPath()}, kafka.ErrSsl)
	if msg := err.Error(); !strings.Contains(msg, "certificate verify failed") {
		t.Errorf("SSL error %q does not say the certificate failed verification", msg)
	}
}

// firstError starts a producer with the secured configuration changed by
// extra, makes it connect by producing one record, and returns the first
// error event with code want. It fails the test if the record is delivered,
// or if no such error arrives within rejectTimeout.
func firstError(t *testing.T, c *broker.Cluster, extra kafka.ConfigMap, want kafka.ErrorCode) kafka.Error {
	t.Helper()
	topic := c.Topic(t, 1)
	base := kafka.ConfigMap{
		"socket.timeout.ms":                  5000,
		"socket.connection.setup.timeout.ms": 5000,
		"reconnect.backoff.ms":               100,
		"reconnect.backoff.max.ms":           1000,
		"message.timeout.ms":                 int(rejectTimeout / time.Millisecond),
	}
	for k, v := range extra {
		base[k] = v
	}
	cfg := securedConfig(c, base)
	p, err := kafka.NewProducer(&cfg)
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	defer func() {
		_ = p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking)
		p.Close()
	}()
	dr := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0},
		Value:          []byte("must-not-arrive"),
	}, dr); err != nil {
		t.Fatalf("produce: %v", err)
	}
	var seen []string
	deadline := time.NewTimer(rejectTimeout)
	defer deadline.Stop()
	for {
		select {
		case ev := <-p.Events():
			ke, ok := ev.(kafka.Error)
			if !ok {
				continue
			}
			if ke.Code() == want {
				t.Logf("client error (%v): %v", ke.Code(), ke)
				return ke
			}
			seen = append(seen, fmt.Sprintf("%v: %v", ke.Code(), ke))
		case ev := <-dr:
			if m, ok := ev.(*kafka.Message); ok && m.TopicPartition.Error == nil {
				t.Fatalf("record delivered at %v; want the broker to refuse the client", m.TopicPartition)
			}
			t.Fatalf("delivery report %v before a %v error (errors so far: %q)", ev, want, seen)
		case <-deadline.C:
			t.Fatalf("no %v error within %s (errors seen: %q)", want, rejectTimeout, seen)
		}
	}
}

// testSecuredTransactions runs transactions over SASL_SSL: an aborted one
// and a committed one; a read_committed consumer over SASL_SSL sees only the
// committed records.
func testSecuredTransactions(t *testing.T, c *broker.Cluster) {
	topic := c.Topic(t, 1)
	cfg := securedConfig(c, kafka.ConfigMap{"transactional.id": topic + "-txn", "enable.idempotence": true})
	p, err := kafka.NewProducer(&cfg)
	if err != nil {
		t.Fatalf("new transactional SASL_SSL producer: %v", err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatalf("init transactions over SASL_SSL: %v", err)
	}
	txn(t, p, topic, false, "secured-aborted")
	txn(t, p, topic, true, "secured-committed-1", "secured-committed-2")

	got := consumeWith(t, securedConfig(c, nil), topic, "read_committed", "secured-committed-2")
	if want := []string{"secured-committed-1", "secured-committed-2"}; !slices.Equal(got, want) {
		t.Errorf("read_committed over SASL_SSL saw %q, want %q", got, want)
	}
}

// consumeWith is consumeUntil for a consumer configured with cfg (which
// names the bootstrap servers).
func consumeWith(t *testing.T, cfg kafka.ConfigMap, topic, isolation, last string) []string {
	t.Helper()
	cfg["group.id"] = topic + "-" + isolation
	cfg["enable.auto.commit"] = false
	cfg["isolation.level"] = isolation
	cons, err := kafka.NewConsumer(&cfg)
	if err != nil {
		t.Fatalf("new consumer: %v", err)
	}
	defer cons.Close()
	if err := cons.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatalf("assign: %v", err)
	}
	var got []string
	deadline := time.Now().Add(consumeTimeout)
	for time.Now().Before(deadline) {
		m, err := cons.ReadMessage(time.Second)
		if err != nil {
			var ke kafka.Error
			if errors.As(err, &ke) && (ke.IsTimeout() || !ke.IsFatal()) {
				if !ke.IsTimeout() {
					t.Logf("consume %s (%s): %v", topic, isolation, ke)
				}
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
