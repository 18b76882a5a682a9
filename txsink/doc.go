// Package txsink owns the two-phase-commit sink protocol: the contract
// (Sink over a Backend), the sink state kept in checkpoints (State), the
// Kafka backend on Kafka transactions (Kafka, through weir's own producer
// over the librdkafka that confluent-kafka-go bundles) and an
// in-memory backend for tests (MemSystem). See design.md for the protocol
// and its state diagram.
//
// An epoch is the records between barrier N-1 and barrier N. Records of
// epoch N are written in a transaction together with a progress marker
// (owner, N) and are also kept until N is committed: in the sink's
// checkpointed state, or with Config.SpillDir in a spill file that the
// state names (SpillRef); recovery never needs to resume a transaction, it
// fences, reads the markers, and replays what is missing.
//
// The caller (the sink actor) does, for each sink subtask:
//
//  1. Build the backend (NewKafka checks the topics and the transaction
//     timeout) and New(backend, Config{Owner: Owner(job, sink, subtask)}).
//  2. Before any record flows, call Recover with the sink states restored
//     for this subtask (none on a fresh start; after a parallelism change,
//     give each old subtask's state to exactly one new subtask, and list in
//     Config.FenceIDs the ids of subtasks that may have run since the
//     checkpoint but are not in any state). If Recover fails, fail the job:
//     the next attempt recovers again and never commits anything twice.
//     With Config.CheckCommitted and Config.Restored (the checkpoint whose
//     states these are, 0 for none), Recover refuses with a
//     *ReplayCommittedError when the markers show an epoch newer than
//     Restored committed (crash-matrix row 9): do not restart then, the
//     restart would restore the same checkpoint; tell the operator.
//  3. Write each batch of records (the sink keeps the slices; do not reuse
//     them). With Config.Routed a record may name another topic and carry
//     headers (Record.Topic, Record.Headers: a dead-letter topic) and is
//     written in the same transaction; its state and spill file keep them.
//  4. At barrier N, call PreCommit(N) and save the returned bytes as the
//     sink's operator state in checkpoint N before acking it. Checkpoint
//     ids must increase across restarts and never be reused.
//  5. On complete(N), call Commit(N); it commits every pending epoch <= N
//     in order, so a lost notification is made up by the next one. Ignore
//     checkpoint aborts: the pending epoch is committed with a later one.
//  6. On any error the sink is failed (Err): restart the job from the
//     latest complete checkpoint (step 2). ErrFenced means another instance
//     owns the transactional ids: stop this one.
//  7. When stopping, call Close: it aborts what is open (bounded) and
//     releases the producers even if the abort fails.
//
// All methods of Sink run on the caller's goroutine; every call to the
// backend is bounded by Config.OpTimeout and the caller's context.
package txsink
