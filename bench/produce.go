package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir/integration/verify"
)

// appendEvent appends e's wire form padded to about size bytes with a
// "pad" field the jobs ignore:
// {"user":"u17","ts":...,"amount":17,"seq":42,"pad":"xxxx"}.
func appendEvent(dst []byte, e verify.Event, size int) []byte {
	start := len(dst)
	dst = e.AppendJSON(dst)
	dst = dst[:len(dst)-1] // drop '}'
	n := size - (len(dst) - start) - len(`,"pad":""}`)
	dst = append(dst, `,"pad":"`...)
	for i := 0; i < n; i++ {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

// produceEvents writes n events of gen (or, when events is not nil, those
// events) to topic, event e to partition verify.Partition(e, partitions),
// key e.Key, timestamp e.TS, in generated order per partition (idempotent
// producer). It returns once every record is acknowledged, or the first
// delivery error.
func produceEvents(ctx context.Context, brokers, topic string, partitions, size int, n int, next func() verify.Event) error {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":            brokers,
		"enable.idempotence":           true,
		"acks":                         "all",
		"linger.ms":                    20,
		"batch.size":                   1 << 20,
		"batch.num.messages":           100_000,
		"queue.buffering.max.messages": 500_000,
		"queue.buffering.max.kbytes":   256 << 10,
		"go.delivery.report.fields":    "none",
		"client.id":                    "weirbench-producer",
		"enable.metrics.push":          false,
	})
	if err != nil {
		return fmt.Errorf("bench: produce to %q: %w", topic, err)
	}
	var (
		delivered atomic.Int64
		errMu     sync.Mutex
		firstErr  error
	)
	eventsDone := make(chan struct{})
	go func() {
		defer close(eventsDone)
		for ev := range p.Events() {
			switch m := ev.(type) {
			case *kafka.Message:
				if m.TopicPartition.Error != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("bench: produce to %q partition %d: %w", topic, m.TopicPartition.Partition, m.TopicPartition.Error)
					}
					errMu.Unlock()
				}
				delivered.Add(1)
			case kafka.Error:
				if m.IsFatal() {
					errMu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("bench: produce to %q: %w", topic, m)
					}
					errMu.Unlock()
				}
			}
		}
	}()
	defer func() {
		_ = p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking)
		p.Close()
		<-eventsDone
	}()
	failed := func() error {
		errMu.Lock()
		defer errMu.Unlock()
		return firstErr
	}

	buf := make([]byte, 0, 1<<16)
	for i := 0; i < n; i++ {
		if i%4096 == 0 {
			if err := failed(); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("bench: produce to %q: %w", topic, err)
			}
		}
		e := next()
		if len(buf)+size+len(e.Key)+128 > cap(buf) {
			buf = make([]byte, 0, 1<<16)
		}
		s := len(buf)
		buf = appendEvent(buf, e, size)
		msg := &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: verify.Partition(e, partitions)},
			Key:            []byte(e.Key),
			Value:          buf[s:len(buf):len(buf)],
			Timestamp:      time.UnixMilli(e.TS),
		}
		for {
			err := p.Produce(msg, nil)
			if err == nil {
				break
			}
			var kerr kafka.Error
			if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
				return fmt.Errorf("bench: produce to %q: record %d: %w", topic, i, err)
			}
			time.Sleep(2 * time.Millisecond) // the queue is full: let it drain
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("bench: produce to %q: %w", topic, err)
			}
		}
	}
	for delivered.Load() < int64(n) {
		if err := failed(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bench: produce to %q: %d of %d records without delivery report: %w", topic, int64(n)-delivered.Load(), n, err)
		}
		p.Flush(100)
	}
	return failed()
}
