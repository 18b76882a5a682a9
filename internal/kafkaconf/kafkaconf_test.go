package kafkaconf

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TestConfigLayers: defaults, then the job's properties, then what the
// engine manages; bootstrap.servers always from brokers.
func TestConfigLayers(t *testing.T) {
	conf := Config("b:9092",
		kafka.ConfigMap{"linger.ms": 5, "acks": "all"},
		map[string]string{"linger.ms": "20", "security.protocol": "SASL_SSL", "bootstrap.servers": "user:1"},
		kafka.ConfigMap{"acks": "1", "transactional.id": "t"})
	want := map[string]any{"linger.ms": "20", "acks": "1", "security.protocol": "SASL_SSL",
		"transactional.id": "t", "bootstrap.servers": "b:9092", "log_level": logLevel, "go.logs.channel.enable": true}
	if conf["go.logs.channel"] != clientLogs {
		t.Errorf("go.logs.channel = %v, want the redacting channel", conf["go.logs.channel"])
	}
	delete(conf, "go.logs.channel")
	if len(conf) != len(want) {
		t.Fatalf("config %v, want %v", conf, want)
	}
	for k, v := range want {
		if conf[k] != v {
			t.Errorf("%s = %v, want %v", k, conf[k], v)
		}
	}
}

// TestProducerQueueBounds: every producer's queue is bounded by default,
// below the caller's defaults and the job's properties, which can raise
// it; librdkafka accepts each combination.
func TestProducerQueueBounds(t *testing.T) {
	for _, tc := range []struct {
		name         string
		defaults     kafka.ConfigMap
		props        map[string]string
		msgs, kbytes any
	}{
		{"bounded by default", nil, nil, ProducerQueueMaxMessages, ProducerQueueMaxKBytes},
		{"caller's defaults win", kafka.ConfigMap{"queue.buffering.max.messages": 500}, nil, 500, ProducerQueueMaxKBytes},
		{"job's properties win", kafka.ConfigMap{"queue.buffering.max.messages": 500},
			map[string]string{"queue.buffering.max.messages": "100000", "queue.buffering.max.kbytes": "1048576"}, "100000", "1048576"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := ProducerConfig("127.0.0.1:1", tc.defaults, tc.props, kafka.ConfigMap{"acks": "all"})
			if got := conf["queue.buffering.max.messages"]; got != tc.msgs {
				t.Errorf("queue.buffering.max.messages = %v, want %v", got, tc.msgs)
			}
			if got := conf["queue.buffering.max.kbytes"]; got != tc.kbytes {
				t.Errorf("queue.buffering.max.kbytes = %v, want %v", got, tc.kbytes)
			}
			if conf["acks"] != "all" || conf["bootstrap.servers"] != "127.0.0.1:1" {
				t.Errorf("the other layers are lost: %v", conf)
			}
			p, err := kafka.NewProducer(&conf)
			if err != nil {
				t.Fatalf("librdkafka refused %v: %v", conf, err)
			}
			p.Close()
		})
	}
	// The bound reaches the client: a producer made with no defaults
	// refuses the record after ProducerQueueMaxMessages (its broker is
	// unreachable, so nothing leaves the queue).
	p, err := NewProducer("127.0.0.1:1", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	topic := "t"
	for i := 0; i <= ProducerQueueMaxMessages; i++ {
		err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Value: []byte("v")}, nil)
		var ke kafka.Error
		switch {
		case i < ProducerQueueMaxMessages && err != nil:
			t.Fatalf("record %d: %v", i+1, err)
		case i == ProducerQueueMaxMessages && (!errors.As(err, &ke) || ke.Code() != kafka.ErrQueueFull):
			t.Fatalf("record %d into a queue of %d: %v, want queue full", i+1, ProducerQueueMaxMessages, err)
		}
	}
	_ = p.Purge(kafka.PurgeQueue | kafka.PurgeNonBlocking)
}

// TestClientsOfAnotherKind: a client given properties of another kind of
// client (a producer's to an admin client and a consumer) is still made.
func TestClientsOfAnotherKind(t *testing.T) {
	props := map[string]string{"linger.ms": "20", "security.protocol": "plaintext", "fetch.max.bytes": "1048576"}
	a, err := NewAdmin("127.0.0.1:1", props)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	c, err := NewConsumer("127.0.0.1:1", nil, props, kafka.ConfigMap{"group.id": "g"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	p, err := NewProducer("127.0.0.1:1", nil, props, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
}

// TestEveryClientGoesThroughHere: outside this package, no engine code
// (tests, benchmarks and the integration harness aside) makes a Kafka
// client itself: every consumer, producer and admin client is made by
// NewConsumer, NewProducer or NewAdmin, or from a client that was (an
// admin client from a consumer), so the job's security settings reach it.
func TestEveryClientGoesThroughHere(t *testing.T) {
	root := filepath.Join("..", "..")
	banned := map[string]bool{"NewConsumer": true, "NewProducer": true, "NewAdminClient": true}
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch rel {
			case ".git", ".cache", "bench", "integration", filepath.Join("internal", "kafkaconf"), "examples":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "kafka" && banned[sel.Sel.Name] {
				t.Errorf("%s: kafka.%s: make Kafka clients with internal/kafkaconf, so the job's security settings reach them", rel, sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("only %d files checked; is the walk at the repository root?", checked)
	}
}
