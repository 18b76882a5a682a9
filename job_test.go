package weir

import (
	"context"
	"fmt"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// A set-up failure ends the job at once only when it is the configuration's
// fault; Kafka being unreachable goes through the restart strategy.
func TestKafkaConfigError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("sink s: progress topic: metadata from x: %w", kafka.NewError(kafka.ErrTransport, "Local: Broker transport failure", false)), false},
		{fmt.Errorf("metadata: %w", kafka.NewError(kafka.ErrAllBrokersDown, "Local: All broker connections are down", false)), false},
		{fmt.Errorf("metadata: %w", kafka.NewError(kafka.ErrTimedOut, "Local: Timed out", false)), false},
		{fmt.Errorf("progress topic: %w", context.DeadlineExceeded), false},
		{fmt.Errorf("kafka admin client: %w", kafka.NewError(kafka.ErrInvalidArg, `No such configuration property: "sasl.pasword"`, false)), true},
		{fmt.Errorf("metadata: %w", kafka.NewError(kafka.ErrAuthentication, "SASL authentication error", false)), true},
		{fmt.Errorf("create: %w", kafka.NewError(kafka.ErrTopicAuthorizationFailed, "not authorized", false)), true},
		{fmt.Errorf("create: %w", kafka.NewError(kafka.ErrPolicyViolation, "policy", false)), true},
	} {
		if got := kafkaConfigError(tc.err); got != tc.want {
			t.Errorf("kafkaConfigError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
