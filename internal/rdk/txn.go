package rdk

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"math"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TxnError is the error of a transactional call: librdkafka's code and
// text (Err, a kafka.Error, which errors.As finds) and what librdkafka
// says to do about it.
type TxnError struct {
	Err kafka.Error
	// Retriable: the same call may be made again.
	Retriable bool
	// RequiresAbort: the transaction can only be aborted.
	RequiresAbort bool
}

func (e *TxnError) Error() string { return e.Err.Error() }

// Unwrap returns the kafka.Error.
func (e *TxnError) Unwrap() error { return e.Err }

// IsRetriable says whether the call may be made again.
func (e *TxnError) IsRetriable() bool { return e.Retriable }

// TxnRequiresAbort says whether the transaction can only be aborted.
func (e *TxnError) TxnRequiresAbort() bool { return e.RequiresAbort }

// IsFatal says whether the producer can no longer be used.
func (e *TxnError) IsFatal() bool { return e.Err.IsFatal() }

// txnError turns a librdkafka error object into a *TxnError (nil: nil) and
// destroys it.
func txnError(e *C.rd_kafka_error_t) error {
	if e == nil {
		return nil
	}
	defer C.rd_kafka_error_destroy(e)
	return &TxnError{
		Err:           kafka.NewError(kafka.ErrorCode(C.rd_kafka_error_code(e)), C.GoString(C.rd_kafka_error_string(e)), C.rd_kafka_error_is_fatal(e) != 0),
		Retriable:     C.rd_kafka_error_is_retriable(e) != 0,
		RequiresAbort: C.rd_kafka_error_txn_requires_abort(e) != 0,
	}
}

// timeoutOf is the time left before ctx's deadline in milliseconds for a
// blocking librdkafka call: -1 (none) without a deadline, 0 when it has
// passed.
func timeoutOf(ctx context.Context) C.int {
	dl, ok := ctx.Deadline()
	if !ok {
		return -1
	}
	left := time.Until(dl)
	if left <= 0 {
		return 0
	}
	ms := left.Milliseconds()
	if ms > math.MaxInt32 {
		return -1
	}
	return C.int(max(ms, 1))
}

// InitTransactions registers the producer's transactional.id with its
// transaction coordinator (fencing an earlier producer of the id, whose
// open transaction is aborted), waiting until ctx's deadline at most.
func (p *Producer) InitTransactions(ctx context.Context) error {
	return txnError(C.rd_kafka_init_transactions(p.rk, timeoutOf(ctx)))
}

// BeginTransaction starts a transaction: the records produced until it
// is committed or aborted belong to it.
func (p *Producer) BeginTransaction() error {
	return txnError(C.rd_kafka_begin_transaction(p.rk))
}

// CommitTransaction flushes the transaction's records and commits it,
// waiting until ctx's deadline at most.
func (p *Producer) CommitTransaction(ctx context.Context) error {
	return txnError(C.rd_kafka_commit_transaction(p.rk, timeoutOf(ctx)))
}

// AbortTransaction drops the transaction's queued records and aborts it,
// waiting until ctx's deadline at most.
func (p *Producer) AbortTransaction(ctx context.Context) error {
	return txnError(C.rd_kafka_abort_transaction(p.rk, timeoutOf(ctx)))
}

// Purge drops every record not yet delivered, queued or in flight,
// without waiting for in-flight requests (their reports say so).
func (p *Producer) Purge() error {
	if code := C.rd_kafka_purge(p.rk, C.WEIR_PURGE_F_QUEUE|C.WEIR_PURGE_F_INFLIGHT|C.WEIR_PURGE_F_NON_BLOCKING); code != 0 {
		return errorOf(C.int(code), "", false)
	}
	return nil
}

// Topic returns a handle to produce records to topic whose deliveries are
// not counted (see Result). Close it before the Producer.
func (p *Producer) Topic(topic string) (*Topic, error) {
	return newTopic(p.rk, p.name, topic)
}
