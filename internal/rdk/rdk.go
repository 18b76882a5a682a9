// Package rdk is weir's batch boundary to librdkafka: a small cgo shim over
// the librdkafka that confluent-kafka-go bundles, so that the source reads
// and the sink writes many records per cgo crossing instead of one.
//
// Why a shim: confluent-kafka-go crosses into C several times per record.
// A consumer's Poll returns one event: one crossing to poll, one to destroy
// the previous event, one for the headers and one for the leader epoch,
// plus a Go Message with its own copies of key, value and topic name. A
// producer's Produce is one crossing per record, and librdkafka looks the
// topic up by name each time. Measured on the Q0 passthrough workload
// (bench/, 2*10^6 events, exactly-once, profiles of weirbench -cpuprofile),
// runtime.cgocall alone took 34% of the job's CPU. The client offers no
// batch call: its channel-based consumer is deprecated and still one event
// per record. The shim
// calls librdkafka's event API in a loop inside one crossing and copies
// what the engine needs (partition, offset, timestamp, key, value) into
// one Go buffer per batch; produce calls rd_kafka_produce in a loop with a
// topic handle looked up once. The at-least-once sink's producer is the
// package's own (Producer, producer.go): it needs every delivery failure,
// and the client hands each delivery report to Go as a Message.
//
// The shim works on the client handles confluent-kafka-go creates (their
// configuration, security settings and the rest of their API stay in
// use): Attach finds the librdkafka handle inside a *kafka.Consumer or
// *kafka.Producer and checks that it is the one the client names; when it
// cannot (another version of the client laid out differently), Attach
// fails and callers keep the client's own per-record calls.
//
// The declarations below are librdkafka's public, stable ABI (rdkafka.h),
// written out here because the header is not on this package's include
// path.
package rdk

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ErrUnsupported says that the shim cannot find the librdkafka handle
// inside the client (another version of confluent-kafka-go).
var ErrUnsupported = errors.New("rdk: the librdkafka handle of this confluent-kafka-go client cannot be found")

// handleOf returns the rd_kafka_t of a confluent-kafka-go client (a
// *kafka.Consumer or *kafka.Producer), checked against the name the client
// gives it.
func handleOf(client interface{ String() string }) (*C.rd_kafka_t, error) {
	rv := reflect.ValueOf(client)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, ErrUnsupported
	}
	h := rv.Elem()
	if h.Kind() != reflect.Struct {
		return nil, ErrUnsupported
	}
	h = h.FieldByName("handle")
	if !h.IsValid() || h.Kind() != reflect.Struct {
		return nil, ErrUnsupported
	}
	rk := h.FieldByName("rk")
	if !rk.IsValid() || rk.Kind() != reflect.Pointer || rk.IsNil() {
		return nil, ErrUnsupported
	}
	p := (*C.rd_kafka_t)(rk.UnsafePointer())
	if name := C.GoString(C.rd_kafka_name(p)); name != client.String() {
		return nil, fmt.Errorf("%w (the handle found is named %q, the client %q)", ErrUnsupported, name, client.String())
	}
	return p, nil
}

// errorOf turns a librdkafka error code into the client's Error.
func errorOf(code C.int, msg string, fatal bool) kafka.Error {
	if msg == "" {
		msg = C.GoString(C.rd_kafka_err2str(C.rd_kafka_resp_err_t(code)))
	}
	return kafka.NewError(kafka.ErrorCode(code), msg, fatal)
}
