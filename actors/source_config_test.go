package actors

import (
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TestConsumerPrefetchDefaults: the consumer's prefetch is bounded by the
// engine's defaults (in records and in bytes), a job's properties override
// them, and librdkafka accepts every combination.
func TestConsumerPrefetchDefaults(t *testing.T) {
	for _, tc := range []struct {
		name             string
		props            map[string]string
		queue, fmb, msgs any // want; nil: not set by the engine
	}{
		{"defaults", nil, DefaultQueuedMaxKBytes, DefaultFetchMaxBytes, DefaultQueuedMinMessages},
		{"queue set", map[string]string{"queued.max.messages.kbytes": "65536"}, "65536", nil, DefaultQueuedMinMessages},
		{"fetch set", map[string]string{"fetch.max.bytes": "52428800"}, DefaultQueuedMaxKBytes, "52428800", DefaultQueuedMinMessages},
		{"both set", map[string]string{"queued.max.messages.kbytes": "4096", "fetch.max.bytes": "2000000"}, "4096", "2000000", DefaultQueuedMinMessages},
		{"records set", map[string]string{"queued.min.messages": "100000"}, DefaultQueuedMaxKBytes, DefaultFetchMaxBytes, "100000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := consumerConfig(SourceConfig{Brokers: "127.0.0.1:1", Group: "g", Isolation: "read_committed", Properties: tc.props})
			if got := conf["queued.max.messages.kbytes"]; got != tc.queue {
				t.Errorf("queued.max.messages.kbytes = %v, want %v", got, tc.queue)
			}
			if got := conf["queued.min.messages"]; got != tc.msgs {
				t.Errorf("queued.min.messages = %v, want %v", got, tc.msgs)
			}
			if got := conf["fetch.max.bytes"]; got != tc.fmb {
				t.Errorf("fetch.max.bytes = %v, want %v", got, tc.fmb)
			}
			c, err := kafka.NewConsumer(&conf)
			if err != nil {
				t.Fatalf("librdkafka refused the configuration %v: %v", conf, err)
			}
			c.Close()
		})
	}
}
