package coordinator

import (
	"fmt"
	"sort"
	"strings"
)

// Kind says what an Action asks the caller to do.
type Kind uint8

const (
	// KindTrigger: inject barrier ID (a savepoint if Savepoint) at every
	// source subtask.
	KindTrigger Kind = iota + 1
	// KindWriteMetadata: every task acked ID; write its metadata (Handles,
	// Savepoint) durably, then call MetadataWritten or MetadataFailed.
	KindWriteMetadata
	// KindNotifyComplete: checkpoint ID exists; tell every task. Subsuming:
	// it covers every checkpoint <= ID.
	KindNotifyComplete
	// KindNotifyAbort: checkpoint ID ended without completing (Cause,
	// Reason); tell every task. Best effort, like every notification.
	KindNotifyAbort
	// KindFailJob: too many consecutive checkpoint failures (Reason). The
	// Core has suspended itself; restart the job and call Resume.
	KindFailJob
	// KindIgnored: an input had no effect (Task, ID, Reason); log it.
	KindIgnored
	// KindQueued: a TriggerNow request waits for a free slot (Reason); it
	// becomes a Trigger action of a later call.
	KindQueued
)

func (k Kind) String() string {
	switch k {
	case KindTrigger:
		return "trigger"
	case KindWriteMetadata:
		return "write-metadata"
	case KindNotifyComplete:
		return "notify-complete"
	case KindNotifyAbort:
		return "notify-abort"
	case KindFailJob:
		return "fail-job"
	case KindIgnored:
		return "ignored"
	case KindQueued:
		return "queued"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

// AbortCause says why a checkpoint was aborted.
type AbortCause uint8

const (
	// CauseNone: not an abort.
	CauseNone AbortCause = iota
	// CauseTimeout: not acked by every task within Config.Timeout. Counted.
	CauseTimeout
	// CauseDeclined: a task declined (failed its snapshot). Counted.
	CauseDeclined
	// CauseMetadataFailed: the durable metadata write failed. Counted.
	CauseMetadataFailed
	// CauseSubsumed: a newer checkpoint completed first. Not counted.
	CauseSubsumed
	// CauseSuspended: Suspend, Stop or FailJob. Not counted.
	CauseSuspended
)

func (c AbortCause) String() string {
	switch c {
	case CauseNone:
		return "none"
	case CauseTimeout:
		return "timeout"
	case CauseDeclined:
		return "declined"
	case CauseMetadataFailed:
		return "metadata-failed"
	case CauseSubsumed:
		return "subsumed"
	case CauseSuspended:
		return "suspended"
	default:
		return fmt.Sprintf("cause(%d)", uint8(c))
	}
}

// counted reports whether an abort with this cause counts towards
// Config.TolerableFailures (as Flink counts expiry, declines and
// finalization failures, not subsumption or coordinator suspension).
func (c AbortCause) counted() bool {
	return c == CauseTimeout || c == CauseDeclined || c == CauseMetadataFailed
}

// Action is one thing the caller must do. Kind says which fields are set.
type Action struct {
	Kind Kind
	// ID: the checkpoint (Trigger, WriteMetadata, NotifyComplete,
	// NotifyAbort; FailJob: the failure that tipped it; Ignored: the id in
	// the ignored input, if any).
	ID CheckpointID
	// Savepoint: the checkpoint is a savepoint (Trigger, WriteMetadata,
	// NotifyComplete, NotifyAbort, Queued).
	Savepoint bool
	// Handles: each task's state handle (WriteMetadata only). The map is the
	// caller's.
	Handles map[TaskID]string
	// Task: the task whose input was ignored (Ignored), if any.
	Task TaskID
	// Cause: why a checkpoint was aborted (NotifyAbort).
	Cause AbortCause
	// Reason: human-readable explanation (NotifyAbort, FailJob, Ignored,
	// Queued).
	Reason string
}

// String renders a one-line description for logs and test transcripts.
func (a Action) String() string {
	var b strings.Builder
	b.WriteString(a.Kind.String())
	if a.ID != 0 {
		fmt.Fprintf(&b, " ckpt=%d", a.ID)
	}
	if a.Task != "" {
		fmt.Fprintf(&b, " task=%s", a.Task)
	}
	if a.Savepoint {
		b.WriteString(" savepoint")
	}
	if a.Kind == KindWriteMetadata {
		tasks := make([]string, 0, len(a.Handles))
		for t := range a.Handles {
			tasks = append(tasks, string(t))
		}
		sort.Strings(tasks)
		b.WriteString(" handles=(")
		for i, t := range tasks {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%s", t, a.Handles[TaskID(t)])
		}
		b.WriteByte(')')
	}
	if a.Cause != CauseNone {
		fmt.Fprintf(&b, " cause=%s", a.Cause)
	}
	if a.Reason != "" {
		fmt.Fprintf(&b, ": %s", a.Reason)
	}
	return b.String()
}
