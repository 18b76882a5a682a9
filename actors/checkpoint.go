package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/operator"
	"github.com/weirstream/weir/snapshot"
)

// Checkpointing is what a task needs to take part in checkpoints. The job
// opens (or restores) the task's Store before the task starts; the task
// owns it from then on and closes it when it stops.
//
// A task's snapshot has two parts. The synchronous part runs on the task's
// actor and only captures what changed (a copy of the changed entries and
// the operator state). The rest — writing the entries to the store, the
// store's snapshot (flush, hard links, checksums) and the ack — runs on the
// task's snapshot worker, one checkpoint after the other, so processing
// never waits for the disk.
type Checkpointing struct {
	FS   vfs.FS
	Root string
	// Store is the task's state store; nil when checkpoints are off.
	Store *snapshot.Store
	// OpState is the operator state restored from a checkpoint, nil on a
	// fresh start.
	OpState []byte
	// OpStates are further operator states to restore (a sink subtask that
	// takes over the pending transactions of several old subtasks after a
	// rescale); OpState, when set, is restored too.
	OpStates [][]byte
	// FenceIDs are transactional ids of old sink subtasks this one takes
	// over after a rescale and must fence.
	FenceIDs []string
	// RestoredFrom is the id of the checkpoint restored, 0 for none.
	RestoredFrom uint64
	// ExactlyOnce aligns barriers; otherwise records are never held.
	ExactlyOnce bool
	// MaxHeldBytes bounds what alignment holds (exactly-once).
	MaxHeldBytes int64
	// SnapshotTimeout bounds the asynchronous part of a snapshot.
	SnapshotTimeout time.Duration
	// Failpoint, when set, is called at "after-snapshot-before-ack".
	Failpoint func(name string)

	once   sync.Once
	jobs   chan snapshotJob
	exited chan struct{}
}

// StateEntry is one changed entry of keyed state: Value nil deletes Key.
type StateEntry = operator.Entry

type snapshotJob struct {
	task    string
	id      uint64
	entries func() ([]StateEntry, error)
	opState []byte
	root    *actor.RootContext
	parent  *actor.PID
}

// snapshotQueue bounds the snapshots a task may have waiting for its
// worker; one more is declined.
const snapshotQueue = 4

// stateBatchEntries bounds the entries written in one store batch.
const stateBatchEntries = 64 << 10

// Enabled reports whether checkpoints are on.
func (c *Checkpointing) Enabled() bool { return c != nil && c.Store != nil }

// snapshot hands checkpoint id of task to the snapshot worker: entries
// (nil for a task without keyed state) returns, on the worker, the keyed
// state changed since the previous snapshot; opState is the operator state.
// The ack or decline goes to the task's parent, the job supervisor.
func (c *Checkpointing) snapshot(ctx actor.Context, task string, id uint64, entries func() ([]StateEntry, error), opState []byte) {
	c.once.Do(func() {
		c.jobs = make(chan snapshotJob, snapshotQueue)
		c.exited = make(chan struct{})
		go c.worker()
	})
	job := snapshotJob{task: task, id: id, entries: entries, opState: opState, root: ctx.ActorSystem().Root, parent: ctx.Parent()}
	select {
	case c.jobs <- job:
	default:
		ctx.Send(ctx.Parent(), &CheckpointDecline{Task: task, ID: id,
			Reason: fmt.Sprintf("%d snapshots already wait for the disk", snapshotQueue)})
	}
}

func (c *Checkpointing) worker() {
	defer close(c.exited)
	for j := range c.jobs {
		h, err := c.write(j.task, j.id, j.entries, j.opState)
		if err != nil {
			j.root.Send(j.parent, &CheckpointDecline{Task: j.task, ID: j.id, Reason: err.Error()})
			continue
		}
		if c.Failpoint != nil {
			c.Failpoint("after-snapshot-before-ack")
		}
		j.root.Send(j.parent, &CheckpointAck{Task: j.task, ID: j.id, Handle: h})
	}
}

// write applies the changed entries to the store and takes its snapshot for
// checkpoint id, waiting (bounded) until it is durable.
func (c *Checkpointing) write(task string, id uint64, changed func() ([]StateEntry, error), opState []byte) (snapshot.Handle, error) {
	var entries []StateEntry
	if changed != nil {
		var err error
		if entries, err = changed(); err != nil {
			return snapshot.Handle{}, fmt.Errorf("encode state of task %s: %w", task, err)
		}
	}
	b := c.Store.NewBatch()
	defer b.Close()
	for i, e := range entries {
		var err error
		switch {
		case e.End != nil:
			err = b.DeleteRange(e.Key, e.End)
		case e.Value == nil:
			err = b.Delete(e.Key)
		default:
			err = b.Set(e.Key, e.Value)
		}
		if err == nil && (i+1)%stateBatchEntries == 0 {
			err = b.Commit()
		}
		if err != nil {
			return snapshot.Handle{}, fmt.Errorf("write state of task %s: %w", task, err)
		}
	}
	if err := b.Commit(); err != nil {
		return snapshot.Handle{}, fmt.Errorf("write state of task %s: %w", task, err)
	}
	p, err := c.Store.Snapshot(snapshot.TaskDir(c.FS, c.Root, id, task), opState)
	if err != nil {
		return snapshot.Handle{}, err
	}
	timeout := c.SnapshotTimeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	wctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Wait(wctx)
}

// errWorkerStuck is returned by close when the worker does not finish.
var errWorkerStuck = errors.New("actors: snapshot worker did not finish in time")

// close stops the snapshot worker (bounded) and closes the task's store.
func (c *Checkpointing) close() error {
	if !c.Enabled() {
		return nil
	}
	if c.jobs != nil {
		close(c.jobs)
		select {
		case <-c.exited:
		case <-time.After(time.Minute):
			return errWorkerStuck
		}
	}
	return c.Store.Close()
}
