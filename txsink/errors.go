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
