package rdk

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Kind says what an Entry of a batch is.
type Kind int32

const (
	// Record is a fetched record.
	Record Kind = 0
	// EOF says that the partition's end was reached at Offset (with
	// enable.partition.eof).
	EOF Kind = 1
	// Error is an error of the client (Err).
	Error Kind = 2
	// Committed is the result of an offset commit (Err nil: it succeeded).
	Committed Kind = 3
)

// Entry is one entry of a consumed batch. Key and Value alias the batch's
// buffer, which is never reused (unless the Consumer reuses its buffer,
// see ReuseBuffer): they stay valid as long as they are held.
type Entry struct {
	Kind      Kind
	Partition int32
	Offset    int64
	// Timestamp is the record's timestamp in milliseconds; HasTimestamp
	// is false when the record has none.
	Timestamp    int64
	HasTimestamp bool
	Key, Value   []byte // nil when the record's is null
	// Err is the error of an Error entry, or of a failed commit.
	Err error
}

// Consumer reads batches from the queue of a confluent-kafka-go consumer.
// It must be used from one goroutine, and closed before the consumer is.
type Consumer struct {
	rk      *C.rd_kafka_t
	rkq     *C.rd_kafka_queue_t
	pending *C.rd_kafka_event_t
	pendMsg *C.rd_kafka_message_t
	recs    []C.weir_rec
	bufSize int
	// spare is the unused end of the last batch's buffer: nothing refers
	// to it, so the next batch fills it before a new buffer is made.
	spare []byte
	// reuse: every batch is read into own (ReuseBuffer).
	reuse bool
	own   []byte
	// fetchq is the queue the fetch queues of the partitions Route named
	// are forwarded to (nil before Route); routed are those fetch queues,
	// and held the messages taken from fetchq and not handed over yet.
	fetchq *C.rd_kafka_queue_t
	routed []*C.rd_kafka_queue_t
	held   *C.weir_held
}

// heldCap is how many messages one read of the routed fetch queue takes:
// no more than one call into C hands over.
const heldCap = consumeChunk

// Route sends the records of topic's partitions parts to a fetch queue of
// the Consumer's own, which Poll reads with librdkafka's batch consume:
// one poll bookkeeping per batch (two clock reads, about 50 ns) where the
// consumer queue's event poll does it per record. Everything else (commit
// results, client errors) still comes on the consumer queue, which Poll
// reads first without waiting, and again after the wait on the fetch
// queue, which an event on the consumer queue ends. Call it before the
// partitions are assigned: records fetched before are on the consumer
// queue, and a partition read from both queues could be read out of
// order.
func (c *Consumer) Route(topic string, parts []int32) error {
	if c.rkq == nil {
		return fmt.Errorf("rdk: route on a closed consumer")
	}
	if len(parts) == 0 {
		return nil
	}
	if c.fetchq == nil {
		c.fetchq = C.rd_kafka_queue_new(c.rk)
		if c.fetchq == nil {
			return fmt.Errorf("rdk: no fetch queue for the consumer")
		}
		c.held = (*C.weir_held)(C.calloc(1, C.size_t(unsafe.Sizeof(C.weir_held{}))))
		c.held.msgs = (**C.rd_kafka_message_t)(C.calloc(heldCap, C.size_t(unsafe.Sizeof((*C.rd_kafka_message_t)(nil)))))
		c.held.cap = heldCap
		C.weir_wake_on(c.rkq, c.fetchq)
	}
	ct := C.CString(topic)
	defer C.free(unsafe.Pointer(ct))
	for _, p := range parts {
		pq := C.rd_kafka_queue_get_partition(c.rk, ct, C.int32_t(p))
		if pq == nil {
			return fmt.Errorf("rdk: no fetch queue for %s[%d]", topic, p)
		}
		C.rd_kafka_queue_forward(pq, c.fetchq)
		c.routed = append(c.routed, pq)
	}
	return nil
}

// ReuseBuffer makes every Poll read into the same buffer: the Key and
// Value of a batch's entries are then valid only until the next Poll, and
// a caller that keeps one must copy it. It spares the allocation (and the
// collection) of a new buffer per batch, for a caller that copies what it
// keeps anyway.
func (c *Consumer) ReuseBuffer() { c.reuse = true }

// AttachConsumer attaches to c's consumer queue. Poll the consumer only
// through the returned Consumer while it is open (a kafka.Consumer's own
// Poll reads the same queue, so interleaving them is allowed but splits
// the events between them).
func AttachConsumer(c *kafka.Consumer) (*Consumer, error) {
	rk, err := handleOf(c)
	if err != nil {
		return nil, err
	}
	q := C.rd_kafka_queue_get_consumer(rk)
	if q == nil {
		return nil, fmt.Errorf("rdk: %s has no consumer queue", c)
	}
	return &Consumer{rk: rk, rkq: q, bufSize: 64 << 10}, nil
}

// Close releases the queue and an event held over; call it before the
// consumer's Close.
func (c *Consumer) Close() {
	if c.pending != nil {
		C.rd_kafka_event_destroy(c.pending)
		c.pending, c.pendMsg = nil, nil
	}
	if c.fetchq != nil {
		C.weir_wake_on(c.rkq, nil)
	}
	for _, pq := range c.routed {
		C.rd_kafka_queue_forward(pq, nil)
		C.rd_kafka_queue_destroy(pq)
	}
	c.routed = nil
	if c.held != nil {
		C.weir_held_free(c.held)
		C.free(unsafe.Pointer(c.held.msgs))
		C.free(unsafe.Pointer(c.held))
		c.held = nil
	}
	if c.fetchq != nil {
		C.rd_kafka_queue_destroy(c.fetchq)
		c.fetchq = nil
	}
	if c.rkq != nil {
		C.rd_kafka_queue_destroy(c.rkq)
		c.rkq = nil
	}
}

// events reads the consumer queue's entries into recs and buf from *used
// on, waiting at most ms for the first (weir_consume).
func (c *Consumer) events(ms C.int, recs []C.weir_rec, buf []byte, used, need *C.int64_t) int {
	return int(C.weir_consume(c.rkq, ms, &recs[0], C.int(len(recs)), (*C.char)(unsafe.Pointer(unsafe.SliceData(buf))),
		C.int64_t(len(buf)), used, need, &c.pending, &c.pendMsg))
}

// grow returns a new buffer of size bytes, for an entry that does not fit
// in an empty buffer of the usual size.
func (c *Consumer) grow(size int) []byte {
	buf := make([]byte, size)
	if c.reuse {
		c.own = buf
	}
	return buf
}

// consumeChunk bounds the entries one call into C takes from the fetch
// queue. To the Go scheduler a call into C is a system call: one that is
// still under way at the next tick of its monitor (every 20 µs while it
// is busy) may lose its P to another thread. Short calls give it less
// chance to; a crossing costs far less than the records it brings. (In
// Q1 runs the hand-offs counted were about as many with calls of 64, of
// 256 or unbounded: most come from waits in C elsewhere. See README,
// Performance.)
const consumeChunk = 256

// minSpare is the smallest end of a buffer worth filling.
const minSpare = 16 << 10

// maxBatchBytes bounds the buffer of one batch (a larger record gets a
// buffer of its own size).
const maxBatchBytes = 4 << 20

// Poll returns up to limit entries, appended to into: it waits at most
// timeout for the first one, then takes only what is already queued, and
// at most about the bytes the last batches needed.
func (c *Consumer) Poll(timeout time.Duration, limit int, into []Entry) ([]Entry, error) {
	if c.rkq == nil {
		return into, fmt.Errorf("rdk: poll on a closed consumer")
	}
	if limit <= 0 {
		return into, nil
	}
	if len(c.recs) < limit {
		c.recs = make([]C.weir_rec, limit)
	}
	buf := c.spare
	if c.reuse {
		if len(c.own) < c.bufSize {
			c.own = make([]byte, c.bufSize)
		}
		buf = c.own
	} else if len(buf) < minSpare {
		buf = make([]byte, c.bufSize)
	}
	var used, need C.int64_t
	ms := C.int(timeout.Milliseconds())
	n := 0
	// The consumer queue; with routed partitions it is read first and
	// without waiting, then the fetch queue waits (unless there is
	// something to hand over already).
	first := ms
	if c.fetchq != nil {
		first = 0
	}
	for {
		got := c.events(first, c.recs[:limit], buf, &used, &need)
		if got >= 0 {
			n = got
			break
		}
		// Not even one entry fits: a buffer of its size.
		buf, used = c.grow(int(need)), 0
		first = 0
	}
	if c.fetchq != nil && n < limit && c.pending == nil {
		if n > 0 {
			ms = 0
		}
		for n < limit {
			want := min(limit-n, consumeChunk)
			got := int(C.weir_consume_msgs(c.fetchq, ms, c.held, &c.recs[n], C.int(want), (*C.char)(unsafe.Pointer(unsafe.SliceData(buf))),
				C.int64_t(len(buf)), &used, &need))
			ms = 0
			if got >= 0 {
				n += got
				if got < want {
					break // the queue is empty or the buffer full
				}
				continue
			}
			if n > 0 {
				break // the buffer is full
			}
			buf, used = c.grow(int(need)), 0
		}
		// What ended the wait may be an event on the consumer queue.
		if n < limit && c.held.off == c.held.n {
			if got := c.events(0, c.recs[n:limit], buf, &used, &need); got > 0 {
				n += got
			}
		}
	}
	// Size the next buffer by this batch: grow when it was full, shrink
	// slowly when it was mostly empty.
	switch u := int(used); {
	case u*4 >= len(buf)*3 && c.bufSize < maxBatchBytes:
		c.bufSize = min(c.bufSize*2, maxBatchBytes)
	case u*4 < len(buf) && c.bufSize > 64<<10:
		c.bufSize = max(c.bufSize/2, 64<<10)
	}
	if !c.reuse {
		c.spare = buf[used:]
	}
	buf = buf[:used:used]
	for i := range n {
		r := &c.recs[i]
		e := Entry{Kind: Kind(r.kind), Partition: int32(r.partition), Offset: int64(r.offset)}
		switch e.Kind {
		case Record:
			if r.key_off >= 0 {
				e.Key = buf[r.key_off : r.key_off+C.int64_t(r.key_len) : r.key_off+C.int64_t(r.key_len)]
			}
			if r.val_off >= 0 {
				e.Value = buf[r.val_off : r.val_off+C.int64_t(r.val_len) : r.val_off+C.int64_t(r.val_len)]
			}
			if r.tstype != 0 {
				e.Timestamp, e.HasTimestamp = int64(r.ts), true
			}
		case Error, Committed:
			if r.err != 0 {
				msg := ""
				if r.key_off >= 0 {
					msg = string(buf[r.key_off : r.key_off+C.int64_t(r.key_len)])
				}
				e.Err = errorOf(C.int(r.err), msg, r.fatal != 0)
			}
		}
		into = append(into, e)
	}
	return into, nil
}
