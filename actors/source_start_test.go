package actors

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirstream/weir/internal/kfakeresp"
)

// listerOn returns an offset lister of topic "in" (3 partitions) on an
// embedded broker whose ListOffsets answers are made here: partition 1
// ends at offset 5, the others at 0, every partition starts at 0; fault
// then rewrites each answer.
func listerOn(t *testing.T, timeout time.Duration, fault func(*kmsg.ListOffsetsResponse)) offsetLister {
	t.Helper()
	const topic = "in"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()[0]
	c.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		resp := kfakeresp.ListOffsets(req.(*kmsg.ListOffsetsRequest), func(rp *kmsg.ListOffsetsRequestTopicPartition, sp *kmsg.ListOffsetsResponseTopicPartition) {
			sp.LeaderEpoch, sp.Timestamp, sp.Offset = 0, -1, 0
			if rp.Timestamp == -1 && rp.Partition == 1 { // latest
				sp.Offset = 5
			}
		})
		fault(resp)
		return resp, nil, true
	})
	cons, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": brokers, "group.id": "g", "enable.metrics.push": false})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cons.Close() })
	admin, err := kafka.NewAdminClientFromConsumer(cons)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	return offsetLister{cons: cons, admin: admin, topic: topic, timeout: timeout}
}

// failPartition sets code on partition part of r.
func failPartition(r *kmsg.ListOffsetsResponse, part int32, code int16) {
	for i := range r.Topics {
		for j := range r.Topics[i].Partitions {
			if p := &r.Topics[i].Partitions[j]; p.Partition == part {
				p.ErrorCode, p.Offset = code, -1
			}
		}
	}
}

// TestListRetriesPartitionWithoutLeader: a partition just created has no
// leader for a moment and ListOffsets answers NOT_LEADER_OR_FOLLOWER for
// it; the lister asks again for that partition and returns every offset,
// instead of failing the job's start (or its partition discovery).
func TestListRetriesPartitionWithoutLeader(t *testing.T) {
	var faults atomic.Int64
	o := listerOn(t, time.Minute, func(r *kmsg.ListOffsetsResponse) {
		if faults.Load() < 3 {
			faults.Add(1)
			failPartition(r, 1, kerr.NotLeaderForPartition.Code)
		}
	})
	got, err := o.list([]int32{0, 1, 2}, kafka.LatestOffsetSpec)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if faults.Load() != 3 {
		t.Fatalf("the fault was hit %d times, want 3", faults.Load())
	}
	if want := map[int32]int64{0: 0, 1: 5, 2: 0}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("offsets %v, want %v", got, want)
	}
}

// TestListFailsOnLastingOrFatalError: a partition that stays without a
// leader fails the list once the timeout has passed, naming the partition
// and the error; an error that does not clear by itself (authorization)
// fails it at once.
func TestListFailsOnLastingOrFatalError(t *testing.T) {
	o := listerOn(t, 500*time.Millisecond, func(r *kmsg.ListOffsetsResponse) {
		failPartition(r, 2, kerr.LeaderNotAvailable.Code)
	})
	_, err := o.list([]int32{0, 1, 2}, kafka.EarliestOffsetSpec)
	var ke kafka.Error
	if err == nil || !errors.As(err, &ke) || ke.Code() != kafka.ErrLeaderNotAvailable || !strings.Contains(err.Error(), "in/2") {
		t.Fatalf("list with partition 2 never led: %v, want LEADER_NOT_AVAILABLE naming in/2", err)
	}

	var calls atomic.Int64
	o = listerOn(t, time.Minute, func(r *kmsg.ListOffsetsResponse) {
		calls.Add(1)
		failPartition(r, 0, kerr.TopicAuthorizationFailed.Code)
	})
	_, err = o.list([]int32{0, 1}, kafka.EarliestOffsetSpec)
	if err == nil || !errors.As(err, &ke) || ke.Code() != kafka.ErrTopicAuthorizationFailed {
		t.Fatalf("list with partition 0 not authorized: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("ListOffsets asked %d times, want 1 (no retry of an authorization error)", calls.Load())
	}
}
