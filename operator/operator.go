package operator

import (
	"math"

	"github.com/cespare/xxhash/v2"
)

// KeyGroups is the fixed number of key groups. A key belongs to one key
// group forever; a subtask owns a contiguous range of key groups, so a
// later rescale moves whole key groups (Flink's max parallelism).
const KeyGroups = 128

// KeyGroup returns the key group of key.
func KeyGroup(key string) int {
	return int(xxhash.Sum64String(key) % KeyGroups)
}

// SubtaskForKeyGroup returns the subtask, of parallelism p, that owns key
// group kg (Flink's computeOperatorIndexForKeyGroup).
func SubtaskForKeyGroup(kg, p int) int {
	return kg * p / KeyGroups
}

// NoTimestamp is the event time of a record that has none.
const NoTimestamp = math.MinInt64

// Rec is one element of a typed stream: its event time in milliseconds
// since the Unix epoch (NoTimestamp when it has none), its key (set on a
// keyed stream, empty otherwise) and its value.
type Rec[T any] struct {
	TS  int64
	Key string
	V   T
}

// Entry is one changed entry of keyed state handed to the snapshot
// worker: Value nil deletes Key. With End set, the entry deletes every
// key in [Key, End) instead (a range deletion: one entry for what may be
// many keys, such as every key of a fired window in a key group), and
// Value is nil.
type Entry struct {
	Key, Value []byte
	End        []byte
}

// Capture is what an operator's synchronous snapshot hands over. Entries,
// when not nil, runs on the snapshot worker (another goroutine): it
// encodes the keyed state changed since the previous capture, which the
// capture froze (copy-on-write), so processing goes on meanwhile. OpState
// is the operator state beside the keyed state (small: watermarks,
// positions), nil for none.
type Capture struct {
	Entries func() ([]Entry, error)
	OpState []byte
}

// Iter reads a task's restored keyed state in key order (a Pebble
// iterator of the task's store).
type Iter interface {
	First() bool
	Valid() bool
	Next() bool
	Key() []byte
	Value() ([]byte, error)
	Error() error
}

// Operator is the contract between the logic of one operator subtask and
// the task actor that runs it (actors.Task). An operator is a plain
// struct: no goroutines, no clock of its own, no actors. The task calls
// its methods one at a time, from one goroutine, and owns everything
// around them: barrier alignment over the inputs, the combined
// watermark, credits, and the hand-off of snapshots to the disk.
//
// The operator writes its output through emitters it was built with;
// the task flushes them after every call.
type Operator interface {
	// Open is called once before anything else, with the state restored
	// from a checkpoint (restored is nil on a fresh start; opState is the
	// OpState of the restored Capture, nil for none).
	Open(restored Iter, opState []byte) error
	// Process handles one batch of input number input; data is the
	// []Rec[T] slice of that input's type. The slice is the operator's
	// to read; it must not keep it past the call.
	Process(input int, data any) error
	// Watermark tells that the combined watermark of the inputs reached ts:
	// no record with an event time <= ts will follow. Event-time timers up
	// to ts fire here. The task forwards the watermark after the call.
	Watermark(ts int64) error
	// ProcessingTime tells that the wall clock reached now (milliseconds):
	// processing-time timers up to now fire here.
	ProcessingTime(now int64) error
	// NextProcessingTimer is the time of the earliest processing-time timer
	// still pending; ok is false when there is none. The task asks after
	// every call and schedules a ProcessingTime call for it.
	NextProcessingTimer() (ts int64, ok bool)
	// EndOfInput tells that every input has ended: an operator that holds
	// records (timers, windows) emits what it must now.
	EndOfInput() error
	// Snapshot captures the operator's state for checkpoint id, in O(1)
	// on the task's goroutine (see Capture).
	Snapshot(id uint64) (Capture, error)
}
