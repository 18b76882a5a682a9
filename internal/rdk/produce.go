package rdk

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Topic produces to one topic through a confluent-kafka-go producer, many
// records per cgo crossing. It must be used from one goroutine at a time,
// and closed before the producer is.
type Topic struct {
	rkt   *C.rd_kafka_topic_t
	name  string
	buf   []byte
	koff  []int64
	klen  []int32
	vlen  []int32
	chunk int
	// tag is the opaque of every record produced: non-nil marks them
	// for a Producer's count of delivered results (nil on a
	// confluent-kafka-go producer, whose poller reads the opaque).
	tag unsafe.Pointer
}

// AttachTopic returns a handle to produce to topic through p. The records
// go through p's queue, partitioner and transaction like those of
// p.Produce.
func AttachTopic(p *kafka.Producer, topic string) (*Topic, error) {
	rk, err := handleOf(p)
	if err != nil {
		return nil, err
	}
	return newTopic(rk, p.String(), topic)
}

// newTopic returns a handle to produce to topic through rk (named client).
func newTopic(rk *C.rd_kafka_t, client, topic string) (*Topic, error) {
	cs := C.CString(topic)
	defer C.free(unsafe.Pointer(cs))
	rkt := C.rd_kafka_topic_new(rk, cs, nil)
	if rkt == nil {
		code := C.rd_kafka_last_error()
		return nil, fmt.Errorf("rdk: topic %q on %s: %w", topic, client, errorOf(C.int(code), "", false))
	}
	return &Topic{rkt: rkt, name: topic, chunk: 256 << 10}, nil
}

// Close releases the topic handle; call it before the producer's Close.
func (t *Topic) Close() {
	if t.rkt != nil {
		C.rd_kafka_topic_destroy(t.rkt)
		t.rkt = nil
	}
}

// Produce produces records rec(0) .. rec(n-1) in order to partition (-1:
// the topic's partitioner), copied (librdkafka keeps its own copy). It
// stops at the first record librdkafka refuses and returns how many it
// produced, and the refusal as a kafka.Error (ErrQueueFull: wait for the
// queue to drain and produce the rest).
func (t *Topic) Produce(partition int32, n int, rec func(i int) (key, value []byte)) (int, error) {
	if t.rkt == nil {
		return 0, fmt.Errorf("rdk: produce to %q after Close", t.name)
	}
	done := 0
	for done < n {
		// One crossing per chunk of about t.chunk bytes (at least one
		// record).
		t.buf, t.koff, t.klen, t.vlen = t.buf[:0], t.koff[:0], t.klen[:0], t.vlen[:0]
		for i := done; i < n && (i == done || len(t.buf) < t.chunk); i++ {
			k, v := rec(i)
			t.koff = append(t.koff, int64(len(t.buf)))
			kl, vl := int32(len(k)), int32(len(v))
			if k == nil {
				kl = -1
			}
			if v == nil {
				vl = -1
			}
			t.klen, t.vlen = append(t.klen, kl), append(t.vlen, vl)
			t.buf = append(append(t.buf, k...), v...)
		}
		m := len(t.koff)
		var code C.int
		var base *C.char
		if len(t.buf) > 0 {
			base = (*C.char)(unsafe.Pointer(unsafe.SliceData(t.buf)))
		} else {
			// Every record empty: any valid address.
			t.buf = append(t.buf, 0)
			base = (*C.char)(unsafe.Pointer(unsafe.SliceData(t.buf)))
		}
		got := int(C.weir_produce(t.rkt, C.int32_t(partition), base,
			(*C.int64_t)(unsafe.Pointer(&t.koff[0])), (*C.int32_t)(unsafe.Pointer(&t.klen[0])),
			(*C.int32_t)(unsafe.Pointer(&t.vlen[0])), C.int(m), t.tag, &code))
		done += got
		if got < m {
			return done, errorOf(code, "", false)
		}
	}
	return done, nil
}

// ProduceAll produces records rec(0) .. rec(n-1) in order to partition (-1:
// the topic's partitioner), like Produce; when the producer's queue is
// full it calls room with that error, which waits for room and returns nil
// to go on, or returns the error that ends ProduceAll. Any other refusal
// ends it at once.
func (t *Topic) ProduceAll(partition int32, n int, rec func(i int) (key, value []byte), room func(full error) error) error {
	for done := 0; done < n; {
		k, err := t.Produce(partition, n-done, func(i int) ([]byte, []byte) { return rec(done + i) })
		done += k
		if err == nil {
			continue
		}
		var ke kafka.Error
		if !errors.As(err, &ke) || ke.Code() != kafka.ErrQueueFull {
			return err
		}
		if err := room(err); err != nil {
			return err
		}
	}
	return nil
}
