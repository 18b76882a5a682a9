package verify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

const (
	// DefaultTimeout bounds Produce and ReadAll when ctx has no deadline.
	DefaultTimeout = 5 * time.Minute

	// inFlightMax bounds the records Produce has handed to the client
	// without a delivery report.
	inFlightMax = 10000

	// pollTimeout is how long one consumer or delivery wait blocks before
	// the context is checked again.
	pollTimeout = 100 * time.Millisecond

	// requestTimeout bounds one metadata or offsets request.
	requestTimeout = 10 * time.Second
)

// Isolation levels accepted by ReadAll.
const (
	ReadCommitted   = "read_committed"
	ReadUncommitted = "read_uncommitted"
)

// withDefaultTimeout returns ctx, given DefaultTimeout if it has no deadline.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// requestTimeoutMs returns the timeout for one request: requestTimeout,
// cut to what is left of ctx, at least 1 ms.
func requestTimeoutMs(ctx context.Context) int {
	d := requestTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return int(max(d.Milliseconds(), 1))
}

// Produce writes events to topic, event e to partition Partition(e,
// partitions) with key e.Key, value e.JSON() and timestamp e.TS, in slice
// order per partition. It uses an idempotent producer, so neither retries
// nor reordering within a partition can occur, keeps at most 10,000 records
// in flight, and returns only after every record has a delivery report. It
// returns the first delivery error, naming the record, or an error if the
// topic has fewer than partitions partitions or ctx (DefaultTimeout without
// a deadline) ends first.
func Produce(ctx context.Context, brokers, topic string, events []Event, partitions int) error {
	if partitions < 1 {
		return fmt.Errorf("verify: produce to %q: partitions %d, want >= 1", topic, partitions)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()

	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":   brokers,
		"enable.idempotence":  true,
		"acks":                "all",
		"linger.ms":           5,
		"client.id":           "weir-verify-producer",
		"enable.metrics.push": false,
	})
	if err != nil {
		return fmt.Errorf("verify: produce to %q: new producer: %w", topic, err)
	}
	// deliveries holds every report the client may send: at most
	// inFlightMax records are outstanding, so the client's poller never
	// blocks on it.
	deliveries := make(chan kafka.Event, inFlightMax)
	fatal := make(chan error, 1)
	eventsDone := make(chan struct{})
	go func() { // drain client events so the poller never blocks
		defer close(eventsDone)
		for ev := range p.Events() {
			if e, ok := ev.(kafka.Error); ok && e.IsFatal() {
				select {
				case fatal <- e:
				default:
				}
			}
		}
	}()
	defer func() {
		// On an early return, drop what is still queued; the client's
		// poller gives up a blocked report when closed.
		_ = p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking)
		p.Close()
		<-eventsDone
	}()

	md, err := p.GetMetadata(&topic, false, requestTimeoutMs(ctx))
	if err != nil {
		return fmt.Errorf("verify: produce to %q: metadata: %w", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() != kafka.ErrNoError {
		return fmt.Errorf("verify: produce to %q: topic metadata: %v", topic, tm.Error)
	}
	if len(tm.Partitions) < partitions {
		return fmt.Errorf("verify: produce to %q: topic has %d partitions, events are spread over %d", topic, len(tm.Partitions), partitions)
	}

	inFlight := 0
	var firstErr error
	// await handles one delivery report, waiting for it.
	await := func() error {
		select {
		case ev := <-deliveries:
			inFlight--
			m, ok := ev.(*kafka.Message)
			if !ok {
				return fmt.Errorf("verify: produce to %q: unexpected delivery event %v", topic, ev)
			}
			if m.TopicPartition.Error != nil && firstErr == nil {
				firstErr = fmt.Errorf("verify: produce to %q: deliver record key=%q partition %d: %w",
					topic, m.Key, m.TopicPartition.Partition, m.TopicPartition.Error)
			}
			return nil
		case err := <-fatal:
			return fmt.Errorf("verify: produce to %q: producer failed: %w", topic, err)
		case <-ctx.Done():
			return fmt.Errorf("verify: produce to %q: %d records without delivery report: %w", topic, inFlight, context.Cause(ctx))
		}
	}

	buf := make([]byte, 0, 1<<16)
	for i := 0; i < len(events) && firstErr == nil; i++ {
		e := events[i]
		if len(buf)+128+len(e.Key) > cap(buf) {
			buf = make([]byte, 0, 1<<16)
		}
		start := len(buf)
		buf = e.AppendJSON(buf)
		msg := &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: Partition(e, partitions)},
			Key:            []byte(e.Key),
			Value:          buf[start:len(buf):len(buf)],
			Timestamp:      time.UnixMilli(e.TS),
		}
		for inFlight >= inFlightMax {
			if err := await(); err != nil {
				return err
			}
		}
		for {
			err := p.Produce(msg, deliveries)
			if err == nil {
				inFlight++
				break
			}
			var kerr kafka.Error
			if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull || inFlight == 0 {
				return fmt.Errorf("verify: produce to %q: record %d (seq %d): %w", topic, i, e.Seq, err)
			}
			if err := await(); err != nil {
				return err
			}
		}
	}
	for inFlight > 0 {
		if err := await(); err != nil {
			return err
		}
	}
	return firstErr
}

// record is one Kafka record read by readAll.
type record struct {
	partition int32
	offset    int64
	key       []byte
	value     []byte
	headers   map[string]string
}

// ReadAll returns the values of every record of topic, partition by
// partition in offset order, from the beginning of each partition to its
// end as of the call. isolation is ReadCommitted or ReadUncommitted.
//
// With ReadCommitted the end of a partition is its last stable offset as
// of the call: records of aborted transactions are skipped, and a
// transaction still open at the call is not waited for; it and everything
// after it are not read (so a lingering transaction shows up as missing
// output, not as a hang). A partition whose last offsets are transaction
// markers or aborted records still counts as fully read: the end is
// recognized from the consumer's position, not from the last record.
//
// It assigns the partitions
// itself (no group membership, no offset commits) and returns an error if
// ctx (DefaultTimeout without a deadline) ends before every partition is
// read, naming the partitions not read to the end.
func ReadAll(ctx context.Context, brokers, topic, isolation string) ([][]byte, error) {
	recs, err := readAll(ctx, brokers, topic, isolation)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = r.value
	}
	return out, nil
}

// Record is one Kafka record as ReadRecords returns it.
type Record struct {
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	// Headers are the record's headers by key (nil for none).
	Headers map[string]string
}

// ReadRecords reads topic as ReadAll does and returns every record with
// its partition, offset and key, partition by partition in offset order.
func ReadRecords(ctx context.Context, brokers, topic, isolation string) ([]Record, error) {
	recs, err := readAll(ctx, brokers, topic, isolation)
	if err != nil {
		return nil, err
	}
	out := make([]Record, len(recs))
	for i, r := range recs {
		out[i] = Record{Partition: r.partition, Offset: r.offset, Key: r.key, Value: r.value, Headers: r.headers}
	}
	return out, nil
}

// ReadResults reads topic with ReadAll and parses every value with
// ParseResult. It fails on the first record that does not parse or whose
// record key is not the result's key, naming its partition and offset.
func ReadResults(ctx context.Context, brokers, topic, isolation string) ([]Result, error) {
	recs, err := readAll(ctx, brokers, topic, isolation)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(recs))
	for _, rec := range recs {
		r, err := ParseResult(rec.value)
		if err != nil {
			return nil, fmt.Errorf("verify: read results %q partition %d offset %d: %w", topic, rec.partition, rec.offset, err)
		}
		if !bytes.Equal(rec.key, []byte(r.Key)) {
			return nil, fmt.Errorf("verify: read results %q partition %d offset %d: record key %s, result key %q",
				topic, rec.partition, rec.offset, quoteShort(rec.key), r.Key)
		}
		out = append(out, r)
	}
	return out, nil
}

// partState tracks reading one partition.
type partState struct {
	low, end int64 // offsets to read: [low, end)
	done     bool
	next     int64 // offset after the last record or EOF seen
	recs     []record
}

func readAll(ctx context.Context, brokers, topic, isolation string) ([]record, error) {
	if isolation != ReadCommitted && isolation != ReadUncommitted {
		return nil, fmt.Errorf("verify: read %q: isolation %q, want %q or %q", topic, isolation, ReadCommitted, ReadUncommitted)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()

	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":        brokers,
		"group.id":                 "weir-verify-" + hex.EncodeToString(rnd[:]),
		"client.id":                "weir-verify-reader",
		"enable.auto.commit":       false,
		"enable.auto.offset.store": false,
		"auto.offset.reset":        "earliest",
		"isolation.level":          isolation,
		"enable.partition.eof":     true,
		"enable.metrics.push":      false,
	})
	if err != nil {
		return nil, fmt.Errorf("verify: read %q: new consumer: %w", topic, err)
	}
	defer c.Close()

	md, err := c.GetMetadata(&topic, false, requestTimeoutMs(ctx))
	if err != nil {
		return nil, fmt.Errorf("verify: read %q: metadata: %w", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() != kafka.ErrNoError {
		return nil, fmt.Errorf("verify: read %q: topic metadata: %v", topic, tm.Error)
	}
	if len(tm.Partitions) == 0 {
		return nil, fmt.Errorf("verify: read %q: topic has no partitions", topic)
	}

	parts := make(map[int32]*partState, len(tm.Partitions))
	var assign []kafka.TopicPartition
	for _, pm := range tm.Partitions {
		// With read_committed the end offset is the last stable offset:
		// the client lists offsets at the consumer's isolation level.
		low, high, err := watermarks(ctx, c, topic, pm.ID)
		if err != nil {
			return nil, fmt.Errorf("verify: read %q partition %d: watermark offsets: %w", topic, pm.ID, err)
		}
		ps := &partState{low: low, end: high, next: low, done: high <= low}
		parts[pm.ID] = ps
		if !ps.done {
			assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: pm.ID, Offset: kafka.Offset(low)})
		}
	}
	if len(assign) > 0 {
		if err := c.Assign(assign); err != nil {
			return nil, fmt.Errorf("verify: read %q: assign: %w", topic, err)
		}
	}

	remaining := len(assign)
	// finish records that partition p has been read up to next.
	finish := func(p int32, next int64) {
		ps := parts[p]
		if ps == nil || ps.done {
			return
		}
		ps.next = max(ps.next, next)
		if ps.next >= ps.end {
			ps.done = true
			remaining--
		}
	}
	var lastErr error
	for remaining > 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("verify: read %q (%s): %s not read to the end (last client error: %v): %w",
				topic, isolation, describeUnread(parts), lastErr, context.Cause(ctx))
		}
		switch ev := c.Poll(int(pollTimeout.Milliseconds())).(type) {
		case nil:
			// Idle: the end may have been reached without an EOF event
			// (e.g. only control markers were left); ask for the position.
			if err := checkPositions(c, topic, parts, finish); err != nil {
				lastErr = err
			}
		case *kafka.Message:
			tp := ev.TopicPartition
			if tp.Error != nil {
				return nil, fmt.Errorf("verify: read %q partition %d: %w", topic, tp.Partition, tp.Error)
			}
			ps := parts[tp.Partition]
			off := int64(tp.Offset)
			if ps == nil || ps.done || off >= ps.end {
				continue // written after the call, or a partition already read
			}
			r := record{partition: tp.Partition, offset: off, key: ev.Key, value: ev.Value}
			for _, h := range ev.Headers {
				if r.headers == nil {
					r.headers = map[string]string{}
				}
				r.headers[h.Key] = string(h.Value)
			}
			ps.recs = append(ps.recs, r)
			finish(tp.Partition, off+1)
		case kafka.PartitionEOF:
			finish(ev.Partition, int64(ev.Offset))
		case kafka.Error:
			if ev.IsFatal() {
				return nil, fmt.Errorf("verify: read %q: consumer failed: %w", topic, ev)
			}
			lastErr = ev
		}
	}

	ids := make([]int32, 0, len(parts))
	n := 0
	for id, ps := range parts {
		ids = append(ids, id)
		n += len(ps.recs)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	out := make([]record, 0, n)
	for _, id := range ids {
		out = append(out, parts[id].recs...)
	}
	return out, nil
}

// watermarks queries a partition's offsets, retrying (bounded by ctx)
// while the broker answers with a retriable error, such as "not leader"
// for a partition of a topic created a moment ago.
func watermarks(ctx context.Context, c *kafka.Consumer, topic string, p int32) (int64, int64, error) {
	for {
		low, high, err := c.QueryWatermarkOffsets(topic, p, requestTimeoutMs(ctx))
		var ke kafka.Error
		if err == nil || !errors.As(err, &ke) || !ke.IsRetriable() && ke.Code() != kafka.ErrNotLeaderForPartition && ke.Code() != kafka.ErrLeaderNotAvailable {
			return low, high, err
		}
		select {
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("%w (retried until %v)", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkPositions marks partitions whose consumer position has reached their
// end offset as read.
func checkPositions(c *kafka.Consumer, topic string, parts map[int32]*partState, finish func(int32, int64)) error {
	var q []kafka.TopicPartition
	for id, ps := range parts {
		if !ps.done {
			q = append(q, kafka.TopicPartition{Topic: &topic, Partition: id})
		}
	}
	pos, err := c.Position(q)
	if err != nil {
		return fmt.Errorf("verify: read %q: position: %w", topic, err)
	}
	for _, tp := range pos {
		if tp.Offset >= 0 {
			finish(tp.Partition, int64(tp.Offset))
		}
	}
	return nil
}

// describeUnread names the partitions not yet read to their end.
func describeUnread(parts map[int32]*partState) string {
	ids := make([]int32, 0, len(parts))
	for id, ps := range parts {
		if !ps.done {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var b bytes.Buffer
	b.WriteString("partitions")
	for _, id := range ids {
		ps := parts[id]
		fmt.Fprintf(&b, " %d (at %d of [%d,%d))", id, ps.next, ps.low, ps.end)
	}
	return b.String()
}
