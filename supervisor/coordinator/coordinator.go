package coordinator

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// TaskID names one subtask that takes part in checkpoints, e.g. "window/1".
type TaskID string

// CheckpointID numbers checkpoints. IDs handed out by one Core strictly
// increase; 0 means "no checkpoint".
type CheckpointID uint64

// MaxConcurrentLimit bounds Config.MaxConcurrent, and so the number of
// pending checkpoints a Core holds.
const MaxConcurrentLimit = 64

// maxTasks bounds Config.Tasks, and so the size of one checkpoint's handles.
const maxTasks = 1 << 16

// ErrInvalidConfig is wrapped by every error New returns for a bad Config.
var ErrInvalidConfig = errors.New("coordinator: invalid config")

// Config holds the checkpoint policy (Flink's names and meanings).
type Config struct {
	// Interval is the time between two periodic triggers. Must be > 0.
	Interval time.Duration
	// Timeout aborts a checkpoint that has not been acked by every task
	// this long after its trigger. Must be > 0.
	Timeout time.Duration
	// MinPause is the least time between the end (completion or abort) of
	// one checkpoint and the next periodic trigger. Must be >= 0.
	MinPause time.Duration
	// MaxConcurrent is the most checkpoints pending at once, counting those
	// whose metadata write is in flight. 1..MaxConcurrentLimit.
	MaxConcurrent int
	// TolerableFailures is how many consecutive counted checkpoint failures
	// (timeouts, declines, failed metadata writes of checkpoints, not of
	// savepoints) are tolerated; one more fails the job. Must be >= 0.
	TolerableFailures int
	// Tasks lists every subtask that must ack a checkpoint: sources,
	// operators and sinks. Non-empty, no duplicates, no empty names.
	Tasks []TaskID
}

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("%w: interval %v must be > 0", ErrInvalidConfig, c.Interval)
	case c.Timeout <= 0:
		return fmt.Errorf("%w: timeout %v must be > 0", ErrInvalidConfig, c.Timeout)
	case c.MinPause < 0:
		return fmt.Errorf("%w: min pause %v must be >= 0", ErrInvalidConfig, c.MinPause)
	case c.MaxConcurrent < 1 || c.MaxConcurrent > MaxConcurrentLimit:
		return fmt.Errorf("%w: max concurrent %d must be in 1..%d",
			ErrInvalidConfig, c.MaxConcurrent, MaxConcurrentLimit)
	case c.TolerableFailures < 0:
		return fmt.Errorf("%w: tolerable failures %d must be >= 0", ErrInvalidConfig, c.TolerableFailures)
	case len(c.Tasks) == 0:
		return fmt.Errorf("%w: no tasks: at least one subtask must ack checkpoints", ErrInvalidConfig)
	case len(c.Tasks) > maxTasks:
		return fmt.Errorf("%w: %d tasks exceed the limit of %d", ErrInvalidConfig, len(c.Tasks), maxTasks)
	}
	seen := make(map[TaskID]struct{}, len(c.Tasks))
	for i, t := range c.Tasks {
		if t == "" {
			return fmt.Errorf("%w: task %d has an empty id", ErrInvalidConfig, i)
		}
		if _, dup := seen[t]; dup {
			return fmt.Errorf("%w: task %q listed twice", ErrInvalidConfig, t)
		}
		seen[t] = struct{}{}
	}
	return nil
}

type phase uint8

const (
	// phaseAcking: waiting for acks; can time out or be declined.
	phaseAcking phase = iota
	// phaseWriting: every task acked, WriteMetadata emitted, waiting for the
	// shell's MetadataWritten or MetadataFailed. Never timed out by the core:
	// once the metadata is durable the checkpoint exists, so only the shell
	// can say how the write ended.
	phaseWriting
)

type pendingCheckpoint struct {
	id          CheckpointID
	savepoint   bool
	triggeredAt time.Time
	handles     map[TaskID]string
	phase       phase
}

type runState uint8

const (
	stateActive runState = iota
	stateSuspended
	stateStopped
)

func (s runState) String() string {
	switch s {
	case stateActive:
		return "active"
	case stateSuspended:
		return "suspended"
	default:
		return "stopped"
	}
}

// Core is the checkpoint coordinator's decision logic. It is a plain
// single-threaded value: no goroutines, no clock, no I/O. Every input takes
// the current time and returns the actions the caller must carry out, in
// order. A Core is not safe for concurrent use.
type Core struct {
	cfg   Config
	tasks map[TaskID]struct{}

	lastCompleted CheckpointID
	lastTriggered CheckpointID         // highest id handed out
	pending       []*pendingCheckpoint // ascending ids; len <= cfg.MaxConcurrent

	periodBase time.Time // the interval is measured from here (last trigger, New or Resume)
	lastFinish time.Time // last completion or abort
	finished   bool      // lastFinish is set

	failures int // consecutive counted failures

	queued          bool // a TriggerNow request waits for a free slot
	queuedSavepoint bool

	state runState
}

// New returns a Core for a job whose last completed checkpoint is
// lastCompleted (0 for a fresh job). Checkpoint ids continue after it. The
// first periodic trigger is due Interval after now.
func New(cfg Config, lastCompleted CheckpointID, now time.Time) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if lastCompleted == math.MaxUint64 {
		return nil, fmt.Errorf("coordinator: last completed checkpoint %d leaves no id to trigger", lastCompleted)
	}
	cfg.Tasks = append([]TaskID(nil), cfg.Tasks...)
	tasks := make(map[TaskID]struct{}, len(cfg.Tasks))
	for _, t := range cfg.Tasks {
		tasks[t] = struct{}{}
	}
	return &Core{
		cfg:           cfg,
		tasks:         tasks,
		lastCompleted: lastCompleted,
		lastTriggered: lastCompleted,
		pending:       make([]*pendingCheckpoint, 0, cfg.MaxConcurrent),
		periodBase:    now,
	}, nil
}

// Rebase restarts the period at now: the next periodic trigger is due
// Interval after now. A job that is still starting calls it until its tasks
// are ready, so that its first checkpoint does not wait behind their
// start-up (Flink likewise triggers only once every task runs).
func (c *Core) Rebase(now time.Time) { c.periodBase = now }

// Config returns the configuration the Core runs with.
func (c *Core) Config() Config {
	cfg := c.cfg
	cfg.Tasks = append([]TaskID(nil), c.cfg.Tasks...)
	return cfg
}

// LastCompleted returns the id of the newest completed checkpoint (the one
// passed to New until a checkpoint completes).
func (c *Core) LastCompleted() CheckpointID { return c.lastCompleted }

// Pending returns the ids of the pending checkpoints, ascending, including
// those whose metadata write is in flight.
func (c *Core) Pending() []CheckpointID {
	ids := make([]CheckpointID, len(c.pending))
	for i, p := range c.pending {
		ids[i] = p.id
	}
	return ids
}

// Failures returns the number of consecutive counted checkpoint failures.
func (c *Core) Failures() int { return c.failures }

// Suspended reports whether triggering is off (after Suspend, Stop or a
// FailJob action).
func (c *Core) Suspended() bool { return c.state != stateActive }

// NextTriggerAt returns the earliest time at which Tick would trigger a
// periodic checkpoint, or the zero time if no trigger is possible until
// another input arrives (suspended, or MaxConcurrent checkpoints pending).
// The returned time may lie in the past: a trigger is due now.
func (c *Core) NextTriggerAt() time.Time {
	if !c.canTrigger() {
		return time.Time{}
	}
	at := c.periodBase.Add(c.cfg.Interval)
	if c.finished {
		if p := c.lastFinish.Add(c.cfg.MinPause); p.After(at) {
			at = p
		}
	}
	return at
}

// NextTickAt returns when the caller should call Tick next: the earlier of
// NextTriggerAt and the timeout deadline of the oldest checkpoint still
// collecting acks. It is the zero time if Tick has nothing to do until
// another input arrives. Callers must use this one, not NextTriggerAt, to
// schedule ticks: when MaxConcurrent checkpoints are pending only a tick can
// time them out.
func (c *Core) NextTickAt() time.Time {
	at := c.NextTriggerAt()
	if c.state != stateActive {
		return at
	}
	for _, p := range c.pending {
		if p.phase != phaseAcking {
			continue
		}
		if d := p.triggeredAt.Add(c.cfg.Timeout); at.IsZero() || d.Before(at) {
			at = d
		}
	}
	return at
}

// Tick advances time: it aborts checkpoints that have collected acks for
// longer than Timeout, then triggers a periodic checkpoint if Interval has
// passed since the last trigger, MinPause since the last completion or
// abort, fewer than MaxConcurrent checkpoints are pending and the Core is not
// suspended.
func (c *Core) Tick(now time.Time) []Action {
	if c.state != stateActive {
		return nil
	}
	var acts []Action
	var expired []CheckpointID
	for _, p := range c.pending {
		if p.phase == phaseAcking && !now.Before(p.triggeredAt.Add(c.cfg.Timeout)) {
			expired = append(expired, p.id)
		}
	}
	for _, id := range expired {
		if c.find(id) == nil || c.state != stateActive {
			// Aborted by a FailJob that suspended the Core meanwhile.
			continue
		}
		acts = c.abort(acts, now, id, CauseTimeout, fmt.Sprintf("not acked by every task within %v", c.cfg.Timeout))
	}
	acts = c.fireQueued(acts, now)
	if c.periodicDue(now) {
		acts = c.trigger(acts, now, false)
	}
	return acts
}

// TriggerNow requests a checkpoint (or a savepoint) outside the period. It
// ignores Interval and MinPause but respects MaxConcurrent: when the
// pending checkpoints fill every slot the request is queued (a Queued
// action) and triggered as soon as one ends. Queued requests merge: at most
// one waits, and it is a savepoint if any merged request was one. A
// suspended or stopped Core refuses the request (an Ignored action).
func (c *Core) TriggerNow(now time.Time, savepoint bool) []Action {
	what := kindName(savepoint)
	if c.state != stateActive {
		return []Action{{Kind: KindIgnored, Savepoint: savepoint,
			Reason: fmt.Sprintf("%s request refused: coordinator %s", what, c.state)}}
	}
	if c.lastTriggered == math.MaxUint64 {
		return []Action{{Kind: KindIgnored, Savepoint: savepoint,
			Reason: fmt.Sprintf("%s request refused: checkpoint ids exhausted", what)}}
	}
	if len(c.pending) < c.cfg.MaxConcurrent {
		return c.trigger(nil, now, savepoint)
	}
	reason := fmt.Sprintf("%d of %d checkpoints pending", len(c.pending), c.cfg.MaxConcurrent)
	if c.queued {
		reason = "merged with the queued request; " + reason
	}
	c.queued = true
	c.queuedSavepoint = c.queuedSavepoint || savepoint
	return []Action{{Kind: KindQueued, Savepoint: c.queuedSavepoint, Reason: reason}}
}

// Ack records that task finished its snapshot for checkpoint id; handle is
// an opaque reference to that state. When every task has acked, the Core
// emits WriteMetadata. Acks from unknown tasks, for checkpoints that are not
// pending (never triggered, aborted, completed, subsumed) and duplicates are
// ignored (an Ignored action says why); a duplicate never replaces the first
// handle.
func (c *Core) Ack(now time.Time, task TaskID, id CheckpointID, handle string) []Action {
	if _, ok := c.tasks[task]; !ok {
		return ignored(task, id, "ack from a task that is not part of the job")
	}
	p := c.find(id)
	if p == nil {
		return ignored(task, id, "ack for "+c.whyNotPending(id))
	}
	if p.phase != phaseAcking {
		return ignored(task, id, "duplicate ack: every task acked, metadata write in flight")
	}
	if _, dup := p.handles[task]; dup {
		return ignored(task, id, "duplicate ack from this task")
	}
	p.handles[task] = handle
	if len(p.handles) < len(c.tasks) {
		return nil
	}
	p.phase = phaseWriting
	handles := make(map[TaskID]string, len(p.handles))
	for t, h := range p.handles {
		handles[t] = h
	}
	return []Action{{Kind: KindWriteMetadata, ID: id, Savepoint: p.savepoint, Handles: handles}}
}

// Decline records that task failed its snapshot for checkpoint id: the
// checkpoint is aborted (and counted as a failure unless it is a savepoint).
// A decline for a checkpoint that is not pending, or whose metadata write is
// already in flight, is ignored.
func (c *Core) Decline(now time.Time, task TaskID, id CheckpointID, reason string) []Action {
	if _, ok := c.tasks[task]; !ok {
		return ignored(task, id, "decline from a task that is not part of the job")
	}
	p := c.find(id)
	if p == nil {
		return ignored(task, id, "decline for "+c.whyNotPending(id))
	}
	if p.phase != phaseAcking {
		return ignored(task, id, "decline after every task acked: metadata write in flight")
	}
	acts := c.abort(nil, now, id, CauseDeclined, fmt.Sprintf("declined by %s: %s", task, reason))
	return c.fireQueued(acts, now)
}

// MetadataWritten reports that the metadata of checkpoint id is durable: the
// checkpoint now exists. The Core emits NotifyComplete for it, then
// NotifyAbort (cause subsumed) for every pending checkpoint with a smaller
// id; those never complete later.
func (c *Core) MetadataWritten(now time.Time, id CheckpointID) []Action {
	p := c.find(id)
	if p == nil {
		return ignored("", id, "metadata written for "+c.whyNotPending(id))
	}
	if p.phase != phaseWriting {
		return ignored("", id, "metadata written reported before every task acked")
	}
	c.remove(id)
	c.lastCompleted = id
	c.failures = 0
	c.lastFinish, c.finished = now, true
	acts := []Action{{Kind: KindNotifyComplete, ID: id, Savepoint: p.savepoint}}
	for len(c.pending) > 0 && c.pending[0].id < id {
		old := c.pending[0]
		c.pending = c.pending[1:]
		acts = append(acts, Action{Kind: KindNotifyAbort, ID: old.id, Savepoint: old.savepoint,
			Cause: CauseSubsumed, Reason: fmt.Sprintf("subsumed by checkpoint %d", id)})
	}
	return c.fireQueued(acts, now)
}

// MetadataFailed reports that writing the metadata of checkpoint id failed:
// the checkpoint is aborted and counted as a failure (unless a savepoint).
func (c *Core) MetadataFailed(now time.Time, id CheckpointID, err string) []Action {
	p := c.find(id)
	if p == nil {
		return ignored("", id, "metadata failure for "+c.whyNotPending(id))
	}
	if p.phase != phaseWriting {
		return ignored("", id, "metadata failure reported before every task acked")
	}
	acts := c.abort(nil, now, id, CauseMetadataFailed, "metadata write failed: "+err)
	return c.fireQueued(acts, now)
}

// Suspend stops triggering (for a job restart): every checkpoint still
// collecting acks is aborted (cause suspended, not counted) and a queued
// trigger request is dropped. A checkpoint whose metadata write is in
// flight stays pending and may still complete: once its metadata is durable
// it exists. Suspending a suspended Core does nothing.
func (c *Core) Suspend(now time.Time, reason string) []Action {
	if c.state != stateActive {
		return nil
	}
	return c.suspend(nil, now, stateSuspended, "coordinator suspended: "+reason)
}

// Resume turns triggering back on after Suspend or FailJob; the next
// periodic trigger is due Interval after now. Resuming a stopped Core is
// refused (an Ignored action).
func (c *Core) Resume(now time.Time) []Action {
	switch c.state {
	case stateStopped:
		return ignored("", 0, "resume refused: coordinator stopped")
	case stateActive:
		return nil
	}
	c.state = stateActive
	c.periodBase = now
	return c.fireQueued(nil, now)
}

// Stop ends triggering for good, like Suspend, but Resume cannot undo it.
// Metadata writes in flight may still complete.
func (c *Core) Stop(now time.Time) []Action {
	switch c.state {
	case stateStopped:
		return nil
	case stateSuspended:
		c.state = stateStopped
		return nil
	}
	return c.suspend(nil, now, stateStopped, "coordinator stopped")
}

func (c *Core) suspend(acts []Action, now time.Time, to runState, reason string) []Action {
	c.state = to
	var victims []CheckpointID
	for _, p := range c.pending {
		if p.phase == phaseAcking {
			victims = append(victims, p.id)
		}
	}
	for _, id := range victims {
		acts = c.abort(acts, now, id, CauseSuspended, reason)
	}
	if c.queued {
		acts = append(acts, Action{Kind: KindIgnored, Savepoint: c.queuedSavepoint,
			Reason: fmt.Sprintf("queued %s request dropped: %s", kindName(c.queuedSavepoint), reason)})
		c.queued, c.queuedSavepoint = false, false
	}
	return acts
}

// abort removes pending checkpoint id, reports it, and counts the failure.
func (c *Core) abort(acts []Action, now time.Time, id CheckpointID, cause AbortCause, reason string) []Action {
	p := c.remove(id)
	acts = append(acts, Action{Kind: KindNotifyAbort, ID: id, Savepoint: p.savepoint, Cause: cause, Reason: reason})
	c.lastFinish, c.finished = now, true
	if !cause.counted() || p.savepoint || c.state != stateActive {
		return acts
	}
	c.failures++
	if c.failures <= c.cfg.TolerableFailures {
		return acts
	}
	acts = append(acts, Action{Kind: KindFailJob, ID: id, Reason: fmt.Sprintf(
		"%d consecutive checkpoint failures exceed the %d tolerated; last: checkpoint %d %s: %s",
		c.failures, c.cfg.TolerableFailures, id, cause, reason)})
	c.failures = 0
	return c.suspend(acts, now, stateSuspended, "job failing")
}

func (c *Core) canTrigger() bool {
	return c.state == stateActive && len(c.pending) < c.cfg.MaxConcurrent && c.lastTriggered < math.MaxUint64
}

func (c *Core) periodicDue(now time.Time) bool {
	if !c.canTrigger() || now.Before(c.periodBase.Add(c.cfg.Interval)) {
		return false
	}
	return !c.finished || !now.Before(c.lastFinish.Add(c.cfg.MinPause))
}

func (c *Core) fireQueued(acts []Action, now time.Time) []Action {
	if !c.queued || !c.canTrigger() {
		return acts
	}
	savepoint := c.queuedSavepoint
	c.queued, c.queuedSavepoint = false, false
	return c.trigger(acts, now, savepoint)
}

func (c *Core) trigger(acts []Action, now time.Time, savepoint bool) []Action {
	c.lastTriggered++
	id := c.lastTriggered
	c.pending = append(c.pending, &pendingCheckpoint{
		id:          id,
		savepoint:   savepoint,
		triggeredAt: now,
		handles:     make(map[TaskID]string, len(c.tasks)),
	})
	c.periodBase = now
	return append(acts, Action{Kind: KindTrigger, ID: id, Savepoint: savepoint})
}

func (c *Core) find(id CheckpointID) *pendingCheckpoint {
	for _, p := range c.pending {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (c *Core) remove(id CheckpointID) *pendingCheckpoint {
	for i, p := range c.pending {
		if p.id == id {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			return p
		}
	}
	panic(fmt.Sprintf("coordinator: invariant broken: removing checkpoint %d, which is not pending", id))
}

func (c *Core) whyNotPending(id CheckpointID) string {
	switch {
	case id == 0:
		return "checkpoint 0, which never exists"
	case id > c.lastTriggered:
		return fmt.Sprintf("checkpoint %d, which was never triggered", id)
	case id == c.lastCompleted:
		return fmt.Sprintf("checkpoint %d, which already completed", id)
	case id < c.lastCompleted:
		return fmt.Sprintf("checkpoint %d, which is subsumed by completed checkpoint %d", id, c.lastCompleted)
	default:
		return fmt.Sprintf("checkpoint %d, which was aborted", id)
	}
}

func ignored(task TaskID, id CheckpointID, reason string) []Action {
	return []Action{{Kind: KindIgnored, ID: id, Task: task, Reason: reason}}
}

func kindName(savepoint bool) string {
	if savepoint {
		return "savepoint"
	}
	return "checkpoint"
}
