package actors

import (
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir/internal/rdk"
)

// reader is how the poller reads its consumer: batches of entries
// (records, partition ends, client errors, commit results).
type reader interface {
	// Poll appends up to limit entries to into, waiting at most timeout
	// for the first.
	Poll(timeout time.Duration, limit int, into []rdk.Entry) ([]rdk.Entry, error)
	// Route has the records of the topic's partitions parts read the
	// reader's fastest way; call it before they are assigned.
	Route(topic string, parts []int32) error
	// Close releases what the reader holds of the consumer; it comes
	// before the consumer's Close.
	Close()
}

// newReader reads cons through the batch shim (internal/rdk), many
// records per cgo crossing, or, when the shim cannot attach to this
// client, through the client's Poll, one event per crossing.
func newReader(cons *kafka.Consumer) (reader, error) {
	r, err := rdk.AttachConsumer(cons)
	if err != nil {
		return clientReader{cons}, err
	}
	return r, nil
}

// clientReader reads through the client's own Poll.
type clientReader struct{ cons *kafka.Consumer }

func (r clientReader) Close() {}

// Route: the client's Poll reads every partition the same way.
func (r clientReader) Route(string, []int32) error { return nil }

func (r clientReader) Poll(timeout time.Duration, limit int, into []rdk.Entry) ([]rdk.Entry, error) {
	ms := int(timeout.Milliseconds())
	for n := 0; n < limit; {
		ev := r.cons.Poll(ms)
		if ev == nil {
			break
		}
		ms = 0
		var e rdk.Entry
		switch ev := ev.(type) {
		case *kafka.Message:
			e = rdk.Entry{Kind: rdk.Record, Partition: ev.TopicPartition.Partition, Offset: int64(ev.TopicPartition.Offset),
				Key: ev.Key, Value: ev.Value}
			if err := ev.TopicPartition.Error; err != nil {
				e = rdk.Entry{Kind: rdk.Error, Partition: e.Partition, Offset: e.Offset, Err: err}
			} else if ev.TimestampType != kafka.TimestampNotAvailable {
				e.Timestamp, e.HasTimestamp = ev.Timestamp.UnixMilli(), true
			}
		case kafka.PartitionEOF:
			e = rdk.Entry{Kind: rdk.EOF, Partition: ev.Partition, Offset: int64(ev.Offset)}
		case kafka.OffsetsCommitted:
			e = rdk.Entry{Kind: rdk.Committed, Partition: -1, Err: ev.Error}
			if e.Err == nil {
				for _, tp := range ev.Offsets {
					if tp.Error != nil {
						e.Partition, e.Err = tp.Partition, tp.Error
						break
					}
				}
			}
		case kafka.Error:
			e = rdk.Entry{Kind: rdk.Error, Err: ev}
		default:
			continue
		}
		into = append(into, e)
		n++
	}
	return into, nil
}
