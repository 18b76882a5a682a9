// Package barrier owns the checkpoint barrier types and the alignment state
// machine of an operator with one or more inputs (Flink's aligned
// checkpoints; DESIGN.md section 3).
//
// The Aligner is a pure core in the style of etcd-io/raft's RawNode: no
// goroutines, no clock, no I/O, and no knowledge of Kafka, Pebble or actors.
// Each event the operator receives is fed to one method (Data, Barrier,
// EndOfInput, Abort), which returns the actions to carry out. design.md
// next to this file has the state diagram.
//
// # Semantics
//
// Inputs are numbered 0..Inputs-1. In ExactlyOnce mode the first barrier N
// that arrives starts aligning N and blocks its input: later records from a
// blocked input are held, in arrival order, inside the Aligner. When every
// input that has not ended has delivered N, the Aligner emits Snapshot(N),
// ForwardBarrier(N), then Process for every held record in arrival order,
// and unblocks all inputs. So the state captured at Snapshot(N) reflects
// exactly the records that precede barrier N on every input. AtLeastOnce
// mode counts barriers the same way but never holds records.
//
// Only one checkpoint is aligned at a time:
//   - a barrier M > N while N is aligning gives N up (AbortCheckpoint(N,
//     "subsumed by M")), releases the held records, and starts aligning M
//     with the input that delivered M blocked;
//   - a barrier whose id is not above the last checkpoint completed, given
//     up or started is stale and ignored (Stats.IgnoredBarrier);
//   - holding a record past Config.MaxHeldBytes or Config.MaxHeldItems
//     gives N up (AbortCheckpoint(N, "alignment buffer full")) and releases
//     everything: no snapshot is taken for N, so exactly-once holds;
//   - Abort(N) from the coordinator stops aligning N and releases the held
//     records, emitting nothing else; barriers of an aborted checkpoint are
//     ignored, also when the abort arrives before them;
//   - an ended input counts as having delivered every barrier; when every
//     input has ended, AllEnded is emitted once.
//
// Protocol errors (an input out of range, anything on an input after its
// end, a barrier id not greater than the input's previous barrier, i.e. a
// duplicate or reordered barrier, a negative size) are returned as an Error
// action, alone, whose Err wraps a sentinel error (ErrInputRange,
// ErrInputEnded, ErrBarrierOrder, ErrNegativeSize). The rejected event does
// not change the Aligner.
//
// # Caller's duties
//
//  1. Create one Aligner per operator subtask with New, giving the number
//     of inputs, the mode and the hold limits. Own it from a single
//     goroutine (the operator actor); it is not safe for concurrent use.
//  2. Feed every event of every input in the order the subtask receives
//     them: Data for each record batch (with its size in bytes), Barrier
//     for each barrier, EndOfInput when an input finishes. Do not filter or
//     reorder; blocked inputs are handled by the Aligner, which holds their
//     records within the configured bounds.
//  3. Feed Abort(N) when the coordinator aborts checkpoint N.
//  4. Carry out the returned actions in order, before feeding the next
//     event: Process hands the item to the operator logic; Snapshot captures
//     the state for N synchronously (the heavy part may go on in the
//     background) and acks N to the coordinator; ForwardBarrier emits
//     barrier N on every output; AbortCheckpoint tells the coordinator that
//     N failed here; AllEnded forwards end of input downstream.
//  5. Treat an Error action as a broken stream: fail the task so the
//     supervisor restarts the job from the last complete checkpoint.
//  6. Copy anything needed from the returned slice before the next call;
//     the Aligner reuses it.
//  7. Never take a snapshot of N except on a Snapshot(N) action, and never
//     reorder Process actions around it.
package barrier
