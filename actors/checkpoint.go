package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/snapshot"
)

// Checkpointing is what a task needs to take part in checkpoints. The job
// opens (or restores) the task's Store before the task starts; the task
// owns it from then on and closes it when it stops.
type Checkpointing struct {
	FS   vfs.FS
	Root string
	// Store is the task's state store; nil when checkpoints are off.
	Store *snapshot.Store
	// OpState is the operator state restored from a checkpoint, nil on a
	// fresh start.
	OpState []byte
	// RestoredFrom is the id of the checkpoint restored, 0 for none.
	RestoredFrom uint64
	// ExactlyOnce aligns barriers; otherwise records are never held.
	ExactlyOnce bool
	// MaxHeldBytes bounds what alignment holds (exactly-once).
	MaxHeldBytes int64
	// SnapshotTimeout bounds the asynchronous part of a snapshot.
	SnapshotTimeout time.Duration
}

// Enabled reports whether checkpoints are on.
func (c *Checkpointing) Enabled() bool { return c != nil && c.Store != nil }

// snapshot takes the task's snapshot for checkpoint id: the synchronous
// capture now, the rest in the background; the ack (or decline) goes to the
// task's parent, the job supervisor.
func (c *Checkpointing) snapshot(ctx actor.Context, task string, id uint64, opState []byte) {
	parent := ctx.Parent()
	p, err := c.Store.Snapshot(snapshot.TaskDir(c.FS, c.Root, id, task), opState)
	if err != nil {
		ctx.Send(parent, &CheckpointDecline{Task: task, ID: id, Reason: err.Error()})
		return
	}
	root := ctx.ActorSystem().Root
	timeout := c.SnapshotTimeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	go func() {
		wctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		h, err := p.Wait(wctx)
		if err != nil {
			root.Send(parent, &CheckpointDecline{Task: task, ID: id, Reason: fmt.Sprintf("snapshot: %v", err)})
			return
		}
		root.Send(parent, &CheckpointAck{Task: task, ID: id, Handle: h})
	}()
}

// close closes the task's store.
func (c *Checkpointing) close() error {
	if !c.Enabled() {
		return nil
	}
	return c.Store.Close()
}
