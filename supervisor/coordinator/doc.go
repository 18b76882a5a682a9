// Package coordinator is the checkpoint coordinator's pure decision core:
// when to trigger a checkpoint, when every subtask has acked it, when it
// exists, when it has failed, and when failures are too many. It follows
// Flink's CheckpointCoordinator (interval, timeout, min pause, max
// concurrent, tolerable consecutive failures, subsuming completion).
//
// It owns the policy and the bookkeeping of pending checkpoints. It does not
// own time, messages or storage: Core has no goroutines, no clock and no
// I/O. Each input takes the current time and returns the Actions to carry
// out, in order. An actor shell (in supervisor/) feeds it and executes the
// actions.
//
// A checkpoint's life:
//
//	Tick / TriggerNow ──► Trigger(N) ──► Ack × every task ──► WriteMetadata(N)
//	     │                       │                               │
//	     │      Timeout / Decline ──► NotifyAbort(N)              ├─ MetadataWritten ──► NotifyComplete(N)
//	     │                                                        │      (+ NotifyAbort(N'<N), subsumed)
//	     │                                                        └─ MetadataFailed ──► NotifyAbort(N)
//	     └─ at MaxConcurrent pending, TriggerNow is Queued until a slot frees.
//
// Counted failures (timeout, decline, failed metadata write; never of a
// savepoint, never while suspended) beyond Config.TolerableFailures in a row
// produce FailJob; a completed checkpoint resets the count.
//
// The caller's duties:
//
//  1. Build the Core with New, passing the job's last completed checkpoint
//     (0 for a fresh job) and the time. Checkpoint ids continue after it.
//     Before starting a restored job, delete (or never reuse) the remnants
//     of checkpoints above that id from the previous run, or pass the
//     highest id the previous run may have used: ids are reused otherwise.
//  2. Feed every input in the order it happened, with the current time from
//     a monotonic clock: Tick, TriggerNow, Ack and Decline from tasks,
//     MetadataWritten or MetadataFailed from your own metadata writer,
//     Suspend, Resume and Stop from the job supervisor. Use one goroutine
//     (the actor); a Core is not safe for concurrent use.
//  3. Execute the returned actions in order, before feeding the next input:
//     Trigger: inject barrier ID at every source subtask. WriteMetadata:
//     write the metadata durably (temp file, fsync, rename, fsync the
//     directory), off the actor's goroutine if it is slow, then feed
//     MetadataWritten or MetadataFailed. NotifyComplete / NotifyAbort: send
//     to every task, best effort (completion is subsuming, a lost
//     notification is covered by the next). FailJob: fail and restart the
//     job; the Core has already suspended itself. Ignored and Queued: log.
//  4. Schedule the next Tick at NextTickAt (not NextTriggerAt: only a tick
//     times out pending checkpoints); when it is the zero time, no tick is
//     needed until another input. Re-read it after every input.
//  5. Bound every metadata write with a timeout of your own and report its
//     end: the Core never times out a checkpoint whose metadata write is in
//     flight, because only the writer knows whether it became durable.
//  6. To restart the job in place: Suspend (checkpoints collecting acks are
//     aborted), wait until no metadata write is in flight (Pending is empty
//     or the writes reported), restore from LastCompleted, then Resume. The
//     same Core keeps ids increasing, so acks from the previous incarnation
//     are ignored.
//  7. On shutdown, Stop, and still report metadata writes in flight.
package coordinator
