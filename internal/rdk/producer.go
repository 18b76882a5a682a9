package rdk

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Producer is a producer of our own over the librdkafka that
// confluent-kafka-go bundles, for the at-least-once sinks: its delivery
// reports are read in C and counted, not handed to Go one by one.
//
// Why: a confluent-kafka-go producer turns every delivery report into a
// Go Message (and a channel send when reports are forwarded), even with
// go.delivery.report.fields=none, and it refuses
// delivery.report.only.error ("not currently supported by the Go
// client"). A sink that must learn of every failed delivery therefore paid
// for one Go object per record it wrote: on the Q0 passthrough (bench/,
// at-least-once, 3*10^6 events) the client's event poller took 39% of the
// job's sampled CPU. Here one cgo crossing serves up to a thousand
// events; a delivery report only adds to a count unless it failed.
//
// The client's own log goes to the go.logs.channel of the configuration
// (as with confluent-kafka-go); its errors are reported to Events.Failed
// when fatal, and dropped otherwise (librdkafka retries them itself, as it
// does for a confluent-kafka-go producer whose Events nobody reads).
type Producer struct {
	rk   *C.rd_kafka_t
	q    *C.rd_kafka_queue_t
	name string
	ev   ProducerEvents
	logs chan kafka.LogEvent

	mu     sync.Mutex
	topics map[string]*Topic // dead-letter topics, by name
	hbuf   []byte
	hkl    []int32
	hvl    []int32

	// tick is closed and replaced at the end of every serving crossing,
	// once its reports are handed to ev. Flush waits on it: an empty queue
	// does not mean its last reports were counted.
	smu  sync.Mutex
	tick chan struct{}

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// ProducerEvents receives what a Producer's delivery reports say. Both are
// called from the Producer's serving goroutine and must not block.
type ProducerEvents struct {
	// Delivered is called with the number of records produced through a
	// Result topic that the brokers acknowledged since the last call.
	Delivered func(n int64)
	// Failed is called once, with the first failed delivery (naming the
	// topic) or the first fatal error of the producer (unless Fatal is
	// set).
	Failed func(err error)
	// Fatal, when set, is called once with the producer's first fatal
	// error, which then does not go to Failed.
	Fatal func(err error)
}

// NewProducer makes a producer with the configuration conf (a
// confluent-kafka-go ConfigMap: its go.* keys other than go.logs.channel
// and go.logs.channel.enable are ignored). A property librdkafka does not
// know, or a value it refuses, is an error naming it.
func NewProducer(conf kafka.ConfigMap, ev ProducerEvents) (*Producer, error) {
	c := C.rd_kafka_conf_new()
	errstr := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errstr))
	var logs chan kafka.LogEvent
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same error for the same configuration
	set := func(k, v string) error {
		ck, cv := C.CString(k), C.CString(v)
		defer C.free(unsafe.Pointer(ck))
		defer C.free(unsafe.Pointer(cv))
		if C.rd_kafka_conf_set(c, ck, cv, errstr, 512) != C.WEIR_CONF_OK {
			return kafka.NewError(kafka.ErrInvalidArg, C.GoString(errstr), false)
		}
		return nil
	}
	for _, k := range keys {
		v := conf[k]
		if k == "go.logs.channel" {
			ch, ok := v.(chan kafka.LogEvent)
			if !ok && v != nil {
				C.rd_kafka_conf_destroy(c)
				return nil, kafka.NewError(kafka.ErrInvalidArg, fmt.Sprintf("go.logs.channel: a chan kafka.LogEvent, not %T", v), false)
			}
			logs = ch
			continue
		}
		if strings.HasPrefix(k, "go.") {
			continue
		}
		s, err := confString(k, v)
		if err == nil {
			err = set(strings.TrimPrefix(k, "{topic}."), s)
		}
		if err != nil {
			C.rd_kafka_conf_destroy(c)
			return nil, err
		}
	}
	if logs != nil {
		if err := set("log.queue", "true"); err != nil {
			C.rd_kafka_conf_destroy(c)
			return nil, err
		}
	}
	C.rd_kafka_conf_set_events(c, C.WEIR_EVENT_DR|C.WEIR_EVENT_ERROR|C.WEIR_EVENT_LOG)
	rk := C.rd_kafka_new(C.WEIR_RD_KAFKA_PRODUCER, c, errstr, 512) // takes c over on success
	if rk == nil {
		C.rd_kafka_conf_destroy(c)
		return nil, kafka.NewError(kafka.ErrInvalidArg, C.GoString(errstr), false)
	}
	p := &Producer{rk: rk, q: C.rd_kafka_queue_get_main(rk), name: C.GoString(C.rd_kafka_name(rk)), ev: ev,
		logs: logs, topics: map[string]*Topic{}, tick: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	if logs != nil {
		C.rd_kafka_set_log_queue(rk, nil) // the main queue, which serve reads
	}
	go p.serve()
	return p, nil
}

// confString is librdkafka's text for a configuration value.
func confString(k string, v kafka.ConfigValue) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case fmt.Stringer:
		return x.String(), nil
	}
	return "", kafka.NewError(kafka.ErrInvalidArg, fmt.Sprintf("%s: invalid value type %T", k, v), false)
}

// String is the client's name (rd_kafka_name).
func (p *Producer) String() string { return p.name }

// Serving: notes per crossing, their text buffer, events per crossing and
// the longest wait of one crossing (Close waits for it).
const (
	serveNotes  = 64
	serveEvents = 1000
	serveWaitMs = 100
)

// serve reads the main queue until Close.
func (p *Producer) serve() {
	defer close(p.done)
	notes := make([]C.weir_note, serveNotes)
	buf := make([]byte, serveNotes*2048)
	base := (*C.char)(unsafe.Pointer(unsafe.SliceData(buf)))
	failed, fatal := false, false
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		var counts C.weir_counts
		n := int(C.weir_serve(p.q, serveWaitMs, serveEvents, &notes[0], serveNotes, base, C.int64_t(len(buf)), &counts))
		if counts.tagged > 0 && p.ev.Delivered != nil {
			p.ev.Delivered(int64(counts.tagged))
		}
		for i := 0; i < n; i++ {
			o := &notes[i]
			text := string(buf[o.text_off : o.text_off+C.int64_t(o.text_len)])
			tag := string(buf[o.tag_off : o.tag_off+C.int64_t(o.tag_len)])
			switch o.kind {
			case C.WEIR_NOTE_LOG:
				p.log(kafka.LogEvent{Name: p.name, Tag: tag, Message: text, Level: int(o.level), Timestamp: time.Now()})
			case C.WEIR_NOTE_FAILED:
				if !failed && p.ev.Failed != nil {
					failed = true
					p.ev.Failed(fmt.Errorf("write to %s: %w", tag, errorOf(C.int(o.err), text, false)))
				}
			case C.WEIR_NOTE_ERR:
				if o.fatal == 0 {
					break
				}
				err := fmt.Errorf("fatal producer error: %w", p.fatalError(C.int(o.err), text))
				if p.ev.Fatal != nil {
					if !fatal {
						fatal = true
						p.ev.Fatal(err)
					}
				} else if !failed && p.ev.Failed != nil {
					failed = true
					p.ev.Failed(err)
				}
			}
		}
		p.smu.Lock()
		close(p.tick)
		p.tick = make(chan struct{})
		p.smu.Unlock()
	}
}

// fatalError is the error that made the producer fail: the event of a
// fatal error carries a generic code (_FATAL), rd_kafka_fatal_error the
// original one (_FENCED for a producer fenced by a newer one, say).
func (p *Producer) fatalError(code C.int, text string) kafka.Error {
	buf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(buf))
	if c := C.rd_kafka_fatal_error(p.rk, buf, 512); c != 0 {
		return errorOf(C.int(c), C.GoString(buf), true)
	}
	return errorOf(code, text, true)
}

// log hands a log line to the logs channel, unless Close has begun.
func (p *Producer) log(ev kafka.LogEvent) {
	if p.logs == nil {
		return
	}
	select {
	case p.logs <- ev:
	case <-p.stop:
	}
}

// Result returns a handle to produce results to topic: the Producer counts
// their deliveries (Events.Delivered). Close it before the Producer.
func (p *Producer) Result(topic string) (*Topic, error) {
	t, err := newTopic(p.rk, p.name, topic)
	if err != nil {
		return nil, err
	}
	t.tag = unsafe.Pointer(p.q) // any non-nil address that outlives the records
	return t, nil
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte // nil: null
}

// ProduceOne produces one record with headers to topic (any partition),
// copied, counted in Events.Delivered when result is true. An error is a
// kafka.Error (ErrQueueFull: wait for the queue to drain and produce it
// again).
func (p *Producer) ProduceOne(topic string, key, value []byte, headers []Header, result bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.topics[topic]
	if t == nil {
		var err error
		if t, err = newTopic(p.rk, p.name, topic); err != nil {
			return err
		}
		p.topics[topic] = t
	}
	p.hbuf, p.hkl, p.hvl = p.hbuf[:0], p.hkl[:0], p.hvl[:0]
	for _, h := range headers {
		p.hbuf = append(append(p.hbuf, h.Key...), h.Value...)
		p.hkl = append(p.hkl, int32(len(h.Key)))
		vl := int32(len(h.Value))
		if h.Value == nil {
			vl = -1
		}
		p.hvl = append(p.hvl, vl)
	}
	p.hbuf = append(p.hbuf, 0) // a valid address when all are empty
	p.hkl, p.hvl = append(p.hkl, 0), append(p.hvl, 0)
	var kp, vp unsafe.Pointer
	if len(key) > 0 {
		kp = unsafe.Pointer(unsafe.SliceData(key))
	}
	if len(value) > 0 {
		vp = unsafe.Pointer(unsafe.SliceData(value))
	}
	var tag unsafe.Pointer
	if result {
		tag = unsafe.Pointer(p.q)
	}
	knull, vnull := C.int(0), C.int(0)
	if key == nil {
		knull = 1
	}
	if value == nil {
		vnull = 1
	}
	code := C.weir_produce_headers(p.rk, t.rkt, C.int32_t(kafka.PartitionAny), kp, C.size_t(len(key)), knull,
		vp, C.size_t(len(value)), vnull, (*C.char)(unsafe.Pointer(unsafe.SliceData(p.hbuf))),
		(*C.int32_t)(unsafe.Pointer(&p.hkl[0])), (*C.int32_t)(unsafe.Pointer(&p.hvl[0])), C.int(len(headers)), tag)
	if code != 0 {
		return errorOf(code, "", false)
	}
	return nil
}

// Flush waits up to timeoutMs for every record produced to be delivered
// or failed, and for its report to be handed to Events, and returns how
// many records are still queued (1 when none is but reports taken off the
// queue are not handed over yet). When it returns 0, Events.Delivered has
// counted and Events.Failed has been told of every record produced before.
func (p *Producer) Flush(timeoutMs int) int {
	deadline := time.Now().Add(time.Duration(timeoutMs) * time.Millisecond)
	C.rd_kafka_flush(p.rk, C.int(timeoutMs))
	if left := p.Len(); left > 0 {
		return left
	}
	// The queue is empty, but the serving goroutine may hold reports it
	// took off it: the end of its current crossing is the fence. A
	// crossing waiting on the empty queue is woken (rd_kafka_queue_yield
	// also makes the next wait return at once).
	p.smu.Lock()
	tick := p.tick
	p.smu.Unlock()
	C.rd_kafka_queue_yield(p.q)
	wait := time.Until(deadline)
	if wait < time.Millisecond {
		wait = time.Millisecond // one crossing of an idle producer, woken
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-tick:
	case <-p.done:
	case <-t.C:
		return 1
	}
	return p.Len()
}

// Len is the number of records not yet delivered or failed, and of events
// not yet served.
func (p *Producer) Len() int { return int(C.rd_kafka_outq_len(p.rk)) }

// Close stops serving and destroys the producer; records still queued are
// dropped (Flush first). Result topics must be closed before.
func (p *Producer) Close() {
	p.once.Do(func() {
		close(p.stop)
		<-p.done // at most one serving crossing, serveWaitMs
		p.mu.Lock()
		for _, t := range p.topics {
			t.Close()
		}
		p.topics = nil
		p.mu.Unlock()
		C.rd_kafka_queue_destroy(p.q)
		C.rd_kafka_destroy(p.rk)
	})
}
