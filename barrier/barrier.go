package barrier

import (
	"errors"
	"fmt"
	"strconv"
)

// CheckpointID identifies a checkpoint. The coordinator numbers checkpoints
// 1, 2, 3, … in the order it triggers them; 0 is not a valid id.
type CheckpointID uint64

// Mode is the checkpointing mode of an operator.
type Mode int

const (
	// ExactlyOnce aligns barriers: after an input delivers barrier N, its
	// later records are held until barrier N has arrived on every input.
	ExactlyOnce Mode = iota + 1
	// AtLeastOnce only counts barriers: records are never held, so the
	// snapshot of N may include records that follow barrier N on inputs that
	// delivered it early. After a restore those records are processed again.
	AtLeastOnce
)

// String returns "exactly-once" or "at-least-once".
func (m Mode) String() string {
	switch m {
	case ExactlyOnce:
		return "exactly-once"
	case AtLeastOnce:
		return "at-least-once"
	default:
		return "Mode(" + strconv.Itoa(int(m)) + ")"
	}
}

// ParseMode parses the String form of a Mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "exactly-once":
		return ExactlyOnce, nil
	case "at-least-once":
		return AtLeastOnce, nil
	default:
		return 0, fmt.Errorf("%w: mode %q: use exactly-once or at-least-once", ErrInvalidConfig, s)
	}
}

// ActionKind says what the caller must do with an Action.
type ActionKind int

const (
	// Process: hand Item (from Input) to the operator's logic now.
	Process ActionKind = iota + 1
	// Snapshot: capture the operator's state for checkpoint ID now, before
	// any Process action that follows it, and ack ID to the coordinator.
	Snapshot
	// ForwardBarrier: emit barrier ID on every output, after the records
	// produced so far and before those produced by the following actions.
	ForwardBarrier
	// AbortCheckpoint: this operator gave up checkpoint ID (Reason says
	// why); tell the coordinator so that it can abort ID early. No snapshot
	// of ID was or will be taken here.
	AbortCheckpoint
	// AllEnded: every input has ended; forward end of input downstream.
	// Emitted once.
	AllEnded
	// Error: the event broke the protocol (Err says how; Input names the
	// input when there is one). The event was rejected and the aligner's
	// state is unchanged. The caller should fail the task.
	Error
)

var actionKindNames = [...]string{
	Process:         "process",
	Snapshot:        "snapshot",
	ForwardBarrier:  "forward-barrier",
	AbortCheckpoint: "abort-checkpoint",
	AllEnded:        "all-ended",
	Error:           "error",
}

// String returns the kind's name, e.g. "forward-barrier".
func (k ActionKind) String() string {
	if k > 0 && int(k) < len(actionKindNames) {
		return actionKindNames[k]
	}
	return "ActionKind(" + strconv.Itoa(int(k)) + ")"
}

// Action is one thing the caller must do, in the order the actions were
// returned. Fields that do not apply to a kind hold their zero value, except
// Input, which is -1 when the action is not about one input.
type Action[T any] struct {
	Kind ActionKind
	// ID is the checkpoint of Snapshot, ForwardBarrier and AbortCheckpoint
	// (and of Error, when the error is about a barrier).
	ID CheckpointID
	// Input is the input that Item came from (Process) or that broke the
	// protocol (Error); -1 otherwise.
	Input int
	// Item is the record batch to process (Process only).
	Item T
	// Reason explains AbortCheckpoint and Error.
	Reason string
	// Err is the error of an Error action; it wraps one of the package's
	// sentinel errors (ErrInputRange, ErrInputEnded, ErrBarrierOrder,
	// ErrNegativeSize).
	Err error
}

// String formats the action for logs and test transcripts.
func (a Action[T]) String() string {
	switch a.Kind {
	case Process:
		return fmt.Sprintf("process in=%d item=%v", a.Input, a.Item)
	case Snapshot, ForwardBarrier:
		return fmt.Sprintf("%s ckpt=%d", a.Kind, a.ID)
	case AbortCheckpoint:
		return fmt.Sprintf("%s ckpt=%d reason=%q", a.Kind, a.ID, a.Reason)
	case AllEnded:
		return a.Kind.String()
	case Error:
		return fmt.Sprintf("error in=%d: %s", a.Input, a.Reason)
	default:
		return a.Kind.String()
	}
}

// Errors. Config errors are returned by New; the others arrive in Error
// actions.
var (
	// ErrInvalidConfig: New was given an unusable Config.
	ErrInvalidConfig = errors.New("barrier: invalid config")
	// ErrInputRange: an event named an input outside 0..Inputs-1.
	ErrInputRange = errors.New("barrier: input out of range")
	// ErrInputEnded: data, a barrier or a second end arrived on an input
	// after its end.
	ErrInputEnded = errors.New("barrier: input already ended")
	// ErrBarrierOrder: an input delivered a barrier whose id is not greater
	// than the last one it delivered (a duplicate, or out of order), or id 0.
	ErrBarrierOrder = errors.New("barrier: barrier out of order")
	// ErrNegativeSize: Data was given a negative size.
	ErrNegativeSize = errors.New("barrier: negative size")
)

// Reasons carried by AbortCheckpoint actions.
const (
	// ReasonBufferFull: holding one more record would have passed
	// MaxHeldBytes or MaxHeldItems.
	ReasonBufferFull = "alignment buffer full"
	// ReasonSubsumedPrefix starts the reason of a checkpoint given up because
	// a newer barrier arrived: "subsumed by 9".
	ReasonSubsumedPrefix = "subsumed by "
	// ReasonTooManyAborts: more coordinator aborts for checkpoints not yet
	// seen were pending than MaxPendingAborts.
	ReasonTooManyAborts = "too many pending aborts"
)
