// Package extest holds what the examples' tests share: an in-process Kafka
// broker (franz-go's kfake), producing and reading records, and a logger
// that writes to the test log.
package extest

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/integration/verify"
)

// StartKafka starts an in-process broker with topics of partitions
// partitions and returns its address; it stops with the test.
func StartKafka(t *testing.T, partitions int32, topics ...string) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// Produce writes recs, each to its partition, in slice order per partition.
func Produce(ctx context.Context, t *testing.T, brokers string, recs []*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// ReadJSON reads topic with read_committed and decodes every value.
func ReadJSON[T any](ctx context.Context, t *testing.T, brokers, topic string) []T {
	t.Helper()
	values, err := verify.ReadAll(ctx, brokers, topic, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]T, len(values))
	for i, v := range values {
		if err := json.Unmarshal(v, &out[i]); err != nil {
			t.Fatalf("%s record %d: %v: %q", topic, i, err, v)
		}
	}
	return out
}

// Logger sends a job's warnings and errors to the test log.
func Logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
