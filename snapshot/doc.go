// Package snapshot is weir's state backend: each task's live keyed state in a
// Pebble database, snapshots of it taken at checkpoint barriers together with
// the task's operator state, the checkpoint directories and their metadata,
// verification, retention and restore. It knows nothing about Kafka or
// actors. All disk I/O goes through pebble's vfs.FS, so tests crash it
// (vfs.NewCrashableMem, CrashClone) and inject errors (vfs/errorfs).
//
// # Layout
//
// Under a job's checkpoint root:
//
//	chk-<N>/<task>/db/...      pebble checkpoint of the task's store
//	                           (sstables hard-linked, MANIFEST/OPTIONS copied);
//	                           absent while the store was never written
//	chk-<N>/<task>/opstate     the task's operator state, a framed, checksummed file
//	chk-<N>/_metadata          Metadata (framed, checksummed JSON), written last
//
// Checkpoint N exists from the moment chk-<N>/_metadata is durable, and not
// before. Each Handle lists its task's files with their sizes and CRC32C.
//
// # Caller's duties
//
//  1. Open one Store per task with OpenStore on the same vfs.FS as the
//     checkpoint root (hard links need one filesystem), or get it from
//     Restore. Keys are the engine's (key group prefix first); the store does
//     not interpret them. Writes are never synced and the live database
//     has no write-ahead log: a checkpoint is the durability point.
//  2. At barrier N call Store.Snapshot(TaskDir(fs, root, N, task), opState)
//     between two records, then keep processing at once. If it returns
//     ErrCaptureInProgress, decline checkpoint N.
//  3. Wait for the PendingSnapshot (Wait with a deadline) off the data path and
//     ack N to the coordinator with the Handle, or report the failure.
//  4. The coordinator, once every task has acked N, calls WriteMetadata with
//     every Handle. Only if it returns nil is N complete; then it may notify
//     the tasks and sinks. If any snapshot or WriteMetadata fails, N is
//     aborted: nothing else is needed, its leftovers are never taken for
//     complete and Retain removes them.
//  5. After a checkpoint completes, call Retain(fs, root, keep) (keep ≥ 1),
//     off the coordinator's goroutine if the disk may be slow (it may run
//     while checkpoints are taken). Keep savepoints' Metadata.Savepoint set;
//     retention never deletes them.
//  6. On start or restart call Latest(ctx, fs, root, job, fingerprint) with
//     the context that a shutdown cancels. Report every returned Problem
//     loudly (it is a checkpoint that was skipped). An error about another
//     job or graph is fatal configuration: do not start. ErrNoCheckpoint
//     means a fresh start. Latest reads only the candidates, newest first;
//     Check tells, cheaply, whether an older checkpoint is readable.
//  7. Restore each task (Restore(ctx, ...)) from the Metadata that Latest
//     returned (it verified every checksum) into the task's live directory;
//     that directory is scratch and is rebuilt on every restore. Do not
//     reuse a live directory across a crash without restoring: only
//     checkpoints are durable.
//  8. Close every iterator before Store.Close; Close waits (bounded) for
//     snapshots in flight.
//
// Everything the package creates is private to the user (directories 0700,
// files 0600, Pebble's included; see internal/privfs), and it opens only
// regular files: a named pipe in place of a checkpoint file is refused
// (NotRegularError), never opened. List verifies the newest complete
// checkpoint only and sizes directories without following symbolic links;
// ListVerified verifies every one.
//
// Caveats: checkpoints share sstable inodes with each other and with the live
// store (hard links), so media corruption of a shared sstable shows in every
// checkpoint holding it; Latest then falls back further, possibly to none.
// A failed fsync of a snapshot's files fails the snapshot (and the
// checkpoint); it is never retried.
//
// # Consistency
//
// Snapshot must capture the state at the barrier while the task keeps
// writing, and the heavy work must be asynchronous. Pebble's Checkpoint links
// the sstables and copies the MANIFEST and WAL of the database as it is when
// Checkpoint runs, not as it was at some earlier point, so it cannot run
// later on a database that kept changing. The store therefore freezes the
// database instead of the task: the synchronous part of Snapshot only swaps
// the write path to an in-memory indexed batch (the overlay). Until the
// capture ends, Commit appends to the overlay, and Get and NewIter read
// through it to the frozen database, so the task sees its own writes. Nothing
// else writes to the database, so every later point of the capture shows the
// database exactly at the capture point.
//
// The asynchronous part then (1) flushes the memtable (AsyncFlush, bounded by
// CaptureTimeout), so all state sits in immutable sstables; (2) runs
// pebble's Checkpoint into chk-N/<task>/db, which hard-links the sstables,
// copies the MANIFEST up to the current version and writes OPTIONS and the
// markers; (3) applies the overlay to the database in one batch and swaps the
// write path back (the capture ends here); (4) writes the operator state;
// (5) syncs every file of the task directory and the directories, up to 8
// fsyncs at a time, while it lists the files and checksums the ones that are
// new. Pebble itself never syncs (its file system skips syncs: the live
// directory is scratch), so step 5 is what makes the snapshot durable, and
// a journaling file system commits the concurrent fsyncs together instead
// of one after the other. An sstable with the same name and size as in the store's previous
// snapshot is the same immutable file (file numbers are never reused within a
// store's lineage, and Restore seeds the cache only from the checkpoint it
// restored), so its recorded CRC32C is reused. Flush-then-link rather than
// copying a WAL keeps each checkpoint incremental: it costs the sstables
// written since the previous one (flushes, compactions), a MANIFEST and the
// operator state; unchanged sstables are links. A store never written (a
// source's, a sink's) skips steps 1-3: its snapshot is the operator state
// alone, and Restore opens an empty store for it.
//
// The overlay is bounded (MaxDeferredBytes): at the bound Commit waits for
// the capture to end (bounded by DeferredWaitTimeout), which is backpressure,
// not unbounded memory. Iterators opened during the capture keep the overlay
// alive until they are closed; they see the store as of their creation.
//
// A task directory is written before the metadata and is fully synced (files
// and directories) before its Handle exists, and WriteMetadata checks that
// every file is present with its recorded size before publishing. The
// metadata is published with temp file, fsync (while the checkpoint
// directory's entry in the root is synced), rename, fsync of the directory, so after a crash at any step either the new metadata is durable
// and complete, or the checkpoint has no metadata and Latest falls back to
// the previous one (testdata/crash lists the steps and the outcome of a crash
// at each). If the final directory fsync fails, WriteMetadata removes the
// renamed _metadata again and reports the error, so the running process never
// treats the checkpoint as complete; if a crash nevertheless preserves the
// rename, the checkpoint is complete and verified, and restoring from it is
// safe because recovery replays a sink's epoch from state (DESIGN.md §4). Retain removes a checkpoint's _metadata durably before its files,
// so a crash mid-deletion leaves an incomplete checkpoint, never a complete
// one with missing files; hard links make the newer checkpoints independent
// of the deleted ones. Latest verifies sizes and checksums of every file of
// the checkpoint it returns, so a bit flip or truncation anywhere makes it
// fall back, with a Problem, to the previous complete checkpoint.
package snapshot
