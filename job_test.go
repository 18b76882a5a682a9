package weir

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/operator"
	"github.com/weirstream/weir/operator/window"
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

// keyCache returns the key's string, never aliasing the bytes it was
// given, whatever it held before (collisions, more keys than slots), and
// holds at most keyCacheSlots keys.
func TestKeyCache(t *testing.T) {
	var c keyCache
	b := []byte("user-1")
	s := c.get(b)
	b[0] = 'X'
	if s != "user-1" || c.get([]byte("user-1")) != "user-1" || c.get(b) != "Xser-1" {
		t.Fatalf("got %q, %q, %q", s, c.get([]byte("user-1")), c.get(b))
	}
	for i := 0; i < 300_000; i++ {
		if k := fmt.Sprintf("k%d", (i*7919)%200_000); c.get([]byte(k)) != k {
			t.Fatalf("key %s", k)
		}
	}
	if len(c.slots) != keyCacheSlots {
		t.Fatalf("the cache has %d slots, not %d", len(c.slots), keyCacheSlots)
	}
	if s != "user-1" {
		t.Fatalf("an earlier key changed to %q", s)
	}
}

// A sink batch encoded into one arena holds exactly what Encode gives for
// each record, also across arenas and for a record larger than one.
func TestRawBatchArena(t *testing.T) {
	f := resultFormat{sizeMillis: 1000}
	var got []actors.RawRecord
	w := newRawBatch[window.Result](f, func(_ int, data any, _ int) { got = append(got, data.([]actors.RawRecord)...) }, 0, 300,
		func(err error) { t.Fatal(err) })
	if w.app == nil {
		t.Fatal("resultFormat is not used as an appendEncoder")
	}
	var want []window.Result
	for i := 0; i < 2000; i++ {
		key := fmt.Sprintf("user-%d", i)
		if i == 777 {
			key = strings.Repeat("k", 3*arenaSize) // larger than an arena
		}
		r := window.Result{Key: key, Start: int64(i) * 1000, Count: int64(i), Sum: float64(i) / 3}
		want = append(want, r)
		w.Emit(operator.Rec[window.Result]{V: r})
	}
	w.flush()
	if len(got) != len(want) {
		t.Fatalf("%d records sent, want %d", len(got), len(want))
	}
	for i, r := range want {
		k, v, _ := f.Encode(r)
		if string(got[i].Key) != string(k) || string(got[i].Value) != string(v) {
			t.Fatalf("record %d: %q=%q, want %q=%q", i, got[i].Key, got[i].Value, k, v)
		}
	}
}
