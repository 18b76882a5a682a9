package txsink

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps one of these
// (or a context error) with what was being done, so callers test with
// errors.Is and log the full message.
var (
	// ErrConfig: a required setting is missing or out of range.
	ErrConfig = errors.New("txsink: invalid configuration")
	// ErrTransactionTimeout: transaction.timeout.ms does not fit between the
	// checkpoint interval plus timeout and the broker's
	// transaction.max.timeout.ms.
	ErrTransactionTimeout = errors.New("txsink: transaction timeout does not fit the checkpoint timeout and the broker maximum")
	// ErrFenced: a newer instance with the same transactional id took over;
	// this instance must stop writing.
	ErrFenced = errors.New("txsink: producer fenced")
	// ErrCommit: a commit failed; its outcome may be unknown. The caller
	// restarts from the latest complete checkpoint and Recover commits
	// exactly what is missing.
	ErrCommit = errors.New("txsink: commit failed")
	// ErrFailed: an earlier call failed; the sink accepts no more calls but
	// Abort and Close.
	ErrFailed = errors.New("txsink: sink failed earlier")
	// ErrNotRecovered: Write, PreCommit or Commit before Recover, or Recover
	// called twice.
	ErrNotRecovered = errors.New("txsink: Recover must run once, before data flows")
	// ErrEpochOrder: PreCommit with an epoch not above the previous one.
	ErrEpochOrder = errors.New("txsink: epochs must increase")
	// ErrPendingFull: the records held for uncommitted epochs exceed
	// Config.MaxPendingBytes (see PendingFullError).
	ErrPendingFull = errors.New("txsink: pending records over the limit")
	// ErrState: checkpointed sink state that does not decode.
	ErrState = errors.New("txsink: corrupt sink state")
	// ErrProgress: the progress topic could not be read to its end.
	ErrProgress = errors.New("txsink: progress not readable to its end")
	// ErrClosed: the sink was aborted or closed.
	ErrClosed = errors.New("txsink: sink closed")
)

// PendingFullError is returned by Write when the records held for the open
// epoch and the pre-committed ones would exceed Config.MaxPendingBytes: the
// epoch is too large for the limit, which a larger limit or shorter epochs
// (more frequent checkpoints) fix. It wraps ErrPendingFull. Sizes are
// counted as the sink state encodes them.
type PendingFullError struct {
	Owner  string
	Held   int64 // bytes held before the write: the open epoch and the pre-committed ones
	Open   int64 // of which the open epoch's
	Adding int64 // bytes the write adds
	Limit  int64 // Config.MaxPendingBytes
}

func (e *PendingFullError) Error() string {
	return fmt.Sprintf("txsink: write %s: the open epoch would hold %d bytes of records (%d with the pre-committed epochs), over the pending limit of %d bytes",
		e.Owner, e.Open+e.Adding, e.Held+e.Adding, e.Limit)
}

func (e *PendingFullError) Unwrap() error { return ErrPendingFull }

// ErrReplayCommitted: Recover found an epoch committed that is newer than
// the checkpoint restored (see ReplayCommittedError).
var ErrReplayCommitted = errors.New("txsink: the restored checkpoint is older than what is committed")

// ReplayCommittedError is returned by Recover with Config.CheckCommitted
// when the progress markers show an epoch committed after the checkpoint
// being restored (crash-matrix row 9: an older checkpoint restored, or a
// fresh start over markers of an earlier run): the records of the epochs
// after Checkpoint are committed already, and the job would write them
// again. It wraps ErrReplayCommitted.
type ReplayCommittedError struct {
	Owner      string
	Checkpoint uint64 // the checkpoint restored, 0 for none (a fresh start)
	Committed  uint64 // the newest epoch of Owner committed
	Progress   string // where the markers are (the progress topic), "" if unknown
}

func (e *ReplayCommittedError) Error() string {
	where := "the sink"
	if e.Progress != "" {
		where = fmt.Sprintf("the sink (progress topic %s, owner %s)", e.Progress, e.Owner)
	} else {
		where = fmt.Sprintf("the sink (owner %s)", e.Owner)
	}
	if e.Checkpoint == 0 {
		return fmt.Sprintf("no checkpoint is restored (a fresh start) but epoch %d is already committed to %s by an earlier run of the job: "+
			"starting over would emit committed results again; restore checkpoint %d or newer (--from-savepoint), or pass --allow-replay-committed to accept duplicates",
			e.Committed, where, e.Committed)
	}
	return fmt.Sprintf("checkpoint %d is older than epoch %d already committed to %s: restoring it would emit committed results again; "+
		"restore checkpoint %d or newer, or pass --allow-replay-committed to accept duplicates",
		e.Checkpoint, e.Committed, where, e.Committed)
}

func (e *ReplayCommittedError) Unwrap() error { return ErrReplayCommitted }
