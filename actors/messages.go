package actors

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirstream/weir/snapshot"
	"github.com/weirstream/weir/txsink"
)

// RawRecord is a record as a sink writes it: its key (nil for none) and
// value. Batches to a sink carry []RawRecord.
type RawRecord struct {
	Key, Value []byte
	// Topic, when set, is where the sink writes the record instead of its
	// topic (a dead letter), with Headers.
	Topic   string
	Headers []txsink.Header
}

// Batch carries records from one sender to one receiver. In is the index of
// the sender on the receiver's input side. Batches are the unit of flow
// control: each one costs the sender one credit.
type Batch struct {
	In   int
	Out  int        // the receiver's index among the sender's targets; echoed in the Credit
	From *actor.PID // where to return the credit
	// Data holds N records: a []operator.Rec[T], T being the type of the
	// stream on this edge, or []RawRecord on the edge to a sink.
	Data any
	N    int
}

// Len is the number of records in the batch.
func (b *Batch) Len() int { return b.N }

// Watermark says that no record with an event time <= TS will follow on the
// input In (Flink semantics: records with ts <= watermark are late).
type Watermark struct {
	In int
	TS int64
}

// Idle says that input In has nothing to send for now (for example a source
// subtask without partitions); it stops holding back the combined watermark
// until its next Watermark.
type Idle struct {
	In int
}

// EndOfInput says that input In is finished: no message follows on it.
type EndOfInput struct {
	In int
}

// Credit returns N credits to the sender for its output Out.
type Credit struct {
	Out int
	N   int
}

// Failed is sent by a task to its parent when it cannot continue.
type Failed struct {
	Task string
	Err  error
}

func (f *Failed) String() string { return fmt.Sprintf("task %s failed: %v", f.Task, f.Err) }

// Finished is sent by a sink task to its parent when all of its inputs ended
// and everything it wrote is acknowledged.
type Finished struct {
	Task string
}

// SourceFinished is sent by a source task to its parent when it has read
// all of its (bounded or drained) input and ended its output: once every
// source has finished, a checkpoint taken then is the job's last, and the
// exactly-once sinks commit their final epoch on it.
type SourceFinished struct {
	Task string
}

// SinkReady is sent by a sink task to its parent once it has started: its
// producer is up and, with exactly-once delivery, every pending epoch of
// the restored checkpoint has been replayed and committed.
type SinkReady struct {
	Task string
}

// SourceReady is sent by a source task to its parent once it has started:
// its partitions and their start positions are resolved and assigned.
type SourceReady struct {
	Task string
}

// StartOutput releases a source task that waits for the sinks
// (SourceConfig.HoldUntilStarted): it starts reading. The supervisor sends
// it once every sink and every source is ready: the records a sink replays
// on recovery reach Kafka before any new record of the same source
// partition, whichever sink subtask writes it after a rescale, and every
// source subtask has resolved its partitions before any reads (a partition
// created after that is discovered, and read from its earliest offset,
// whichever subtask owns it).
type StartOutput struct{}

// Drain asks a source task to stop at the current end of its partitions and
// then end its output (stop with drain: every window fires).
type Drain struct{}

// Barrier N travels in band, in order with the records: everything a task
// emitted before it belongs to checkpoint N.
type Barrier struct {
	In int
	ID uint64
}

// TriggerCheckpoint is sent by the coordinator to every source task: record
// the positions, snapshot, and emit barrier ID.
type TriggerCheckpoint struct {
	ID        uint64
	Savepoint bool
}

// CheckpointAck is a task's report that its snapshot for ID is durable.
type CheckpointAck struct {
	Task   string
	ID     uint64
	Handle snapshot.Handle
}

// CheckpointDecline is a task's report that it cannot snapshot ID.
type CheckpointDecline struct {
	Task   string
	ID     uint64
	Reason string
}

// CheckpointComplete tells every task that checkpoint ID exists. It is
// subsuming: it covers every checkpoint up to ID. It may be lost.
type CheckpointComplete struct {
	ID uint64
}

// CheckpointAbort tells every task that checkpoint ID will never complete.
type CheckpointAbort struct {
	ID     uint64
	Reason string
}
