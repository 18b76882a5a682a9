package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/snapshot"
	"github.com/weirstream/weir/supervisor/coordinator"
)

// CheckpointPlan turns checkpoints on for a job.
type CheckpointPlan struct {
	Interval, Timeout, MinPause time.Duration
	MaxConcurrent               int
	TolerableFailures           int
	// FS and Root: where checkpoints are written.
	FS   vfs.FS
	Root string
	// JobName and Fingerprint identify the job and its graph in metadata.
	JobName, Fingerprint string
	// Retain complete checkpoints. Retention (snapshot.Retain) runs on a
	// goroutine of its own after a checkpoint completes, never on the
	// supervisor's: a slow disk delays deletions, not checkpoints. The job
	// ends (Handle.Done) only after a retention in progress has finished,
	// bounded by retainStopTimeout.
	Retain int
	// After: checkpoint ids start after this one (the highest id found in
	// Root, complete or not, so no id is ever reused).
	After uint64
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnComplete, if set, is called (on the supervisor's goroutine) when a
	// checkpoint completes.
	OnComplete func(id uint64, savepoint bool)
	// OnEvent, if set, is told (on the supervisor's goroutine; it must
	// return quickly) when a checkpoint is triggered, completes, or ends
	// without completing.
	OnEvent func(CheckpointEvent)
	// CheckpointWhenSourcesFinish triggers a checkpoint as soon as every
	// source task has finished (bounded input read, or drained), instead of
	// waiting for the next periodic one: exactly-once sinks commit their
	// last epoch on it, so a bounded job ends right after its data.
	CheckpointWhenSourcesFinish bool
}

// CheckpointEvent is a step in a checkpoint's life (CheckpointPlan.OnEvent).
type CheckpointEvent struct {
	ID        uint64
	Savepoint bool
	// State is "in_progress" (triggered), "completed", "failed" (timed
	// out, declined by a task, metadata write failed) or "aborted"
	// (subsumed by a newer one, or the job stopped).
	State string
	// Triggered is when it was triggered; Duration, once it ended, how
	// long it took from then.
	Triggered time.Time
	Duration  time.Duration
	// SizeBytes is what the tasks wrote for it (completed only): the sum
	// of their snapshot handles' new bytes; files shared with earlier
	// checkpoints are not counted.
	SizeBytes int64
	// Reason says why it failed or was aborted.
	Reason string
}

type tick struct{}

// firstCheckpointDelay bounds the wait for the first checkpoint of a run.
const firstCheckpointDelay = 200 * time.Millisecond

type savepointRequest struct {
	reply chan SavepointResult
}

// SavepointResult is the outcome of Handle.Savepoint.
type SavepointResult struct {
	ID   uint64
	Path string
	Err  error
}

// Savepoint asks for a savepoint and returns a channel that receives its
// outcome once (when it completes or fails).
func (h *Handle) Savepoint() <-chan SavepointResult {
	reply := make(chan SavepointResult, 1)
	h.system.Root.Send(h.pid, &savepointRequest{reply: reply})
	return reply
}

// ckpt is the coordinator shell inside the job supervisor.
type ckpt struct {
	plan    *CheckpointPlan
	core    *coordinator.Core
	handles map[uint64]map[string]snapshot.Handle
	times   map[uint64]time.Time
	// lastAck is, per checkpoint in progress, the task that acked last
	// and when: what a slow checkpoint waited for (logged at completion).
	lastAck map[uint64]taskAck
	// waiting savepoint requests: before their trigger (queued) and by id.
	queuedSavepoints []chan SavepointResult
	savepoints       map[uint64][]chan SavepointResult
	stopTicker       chan struct{}
	// retainReq asks the retention goroutine for a pass (capacity 1: a
	// pass still waiting covers the later requests); closed by
	// stopCheckpoints. retainDone is closed when the goroutine has ended.
	retainReq  chan struct{}
	retainDone chan struct{}
	stopped    bool
}

// taskAck is one task's ack of a checkpoint.
type taskAck struct {
	task string
	at   time.Time
}

// retainStopTimeout bounds how long the end of a job waits for a
// retention pass in progress.
const retainStopTimeout = time.Minute

// retain runs snapshot.Retain once per request until req is closed.
func retain(fs vfs.FS, root string, keep int, log *slog.Logger, req <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for range req {
		if err := snapshot.Retain(fs, root, keep); err != nil {
			log.Warn("checkpoint retention", "err", err)
		}
	}
}

// firstBase is the period base that makes the first checkpoint after a
// (re)start due min(interval, firstCheckpointDelay) after now: a restarted
// exactly-once job commits its first epoch soon instead of a whole interval
// later.
func firstBase(now time.Time, interval time.Duration) time.Time {
	if interval > firstCheckpointDelay {
		return now.Add(firstCheckpointDelay - interval)
	}
	return now
}

func (j *jobSupervisor) startCheckpoints(ctx actor.Context, tasks []string) error {
	p := j.plan.Checkpoint
	if p.Now == nil {
		p.Now = time.Now
	}
	ids := make([]coordinator.TaskID, len(tasks))
	for i, t := range tasks {
		ids[i] = coordinator.TaskID(t)
	}
	core, err := coordinator.New(coordinator.Config{
		Interval: p.Interval, Timeout: p.Timeout, MinPause: p.MinPause,
		MaxConcurrent: p.MaxConcurrent, TolerableFailures: p.TolerableFailures, Tasks: ids,
	}, coordinator.CheckpointID(p.After), firstBase(p.Now(), p.Interval))
	if err != nil {
		return fmt.Errorf("supervisor: checkpoint coordinator: %w", err)
	}
	j.ck = &ckpt{plan: p, core: core, handles: map[uint64]map[string]snapshot.Handle{},
		times: map[uint64]time.Time{}, savepoints: map[uint64][]chan SavepointResult{}, stopTicker: make(chan struct{}),
		retainReq: make(chan struct{}, 1), retainDone: make(chan struct{})}
	go retain(p.FS, p.Root, p.Retain, j.log, j.ck.retainReq, j.ck.retainDone)
	period := p.Interval / 10
	period = max(5*time.Millisecond, min(period, 100*time.Millisecond))
	root, self, stop := ctx.ActorSystem().Root, ctx.Self(), j.ck.stopTicker
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				root.Send(self, &tick{})
			}
		}
	}()
	return nil
}

// checkpointMessage handles the coordinator's messages; false if m is not one.
func (j *jobSupervisor) checkpointMessage(ctx actor.Context, m any) bool {
	c := j.ck
	switch m := m.(type) {
	case *tick:
		if c != nil && !j.ended {
			now := c.plan.Now()
			if !j.running() {
				// The sinks or sources still start (an exactly-once sink
				// fences and replays first): the period starts once every
				// one is ready. A barrier now would wait behind their
				// start-up.
				c.core.Rebase(firstBase(now, c.plan.Interval))
			}
			j.act(ctx, c.core.Tick(now))
		}
	case *actors.CheckpointAck:
		if c != nil && !j.ended {
			hs := c.handles[m.ID]
			if hs == nil {
				hs = map[string]snapshot.Handle{}
				c.handles[m.ID] = hs
			}
			if _, dup := hs[m.Task]; !dup {
				hs[m.Task] = m.Handle
				if c.lastAck == nil {
					c.lastAck = map[uint64]taskAck{}
				}
				c.lastAck[m.ID] = taskAck{task: m.Task, at: c.plan.Now()}
			}
			j.act(ctx, c.core.Ack(c.plan.Now(), coordinator.TaskID(m.Task), coordinator.CheckpointID(m.ID), ""))
		}
	case *actors.CheckpointDecline:
		if c != nil && !j.ended {
			j.log.Warn("checkpoint declined", "checkpoint", m.ID, "task", m.Task, "reason", m.Reason)
			j.act(ctx, c.core.Decline(c.plan.Now(), coordinator.TaskID(m.Task), coordinator.CheckpointID(m.ID), m.Reason))
		}
	case *actors.SourceFinished:
		j.sourcesFinished[m.Task] = true
		if c != nil && !j.ended && c.plan.CheckpointWhenSourcesFinish && len(j.sourcesFinished) == len(j.sources) {
			j.log.Info("every source finished; triggering the final checkpoint")
			j.act(ctx, c.core.TriggerNow(c.plan.Now(), false))
		}
	case *savepointRequest:
		if c == nil {
			m.reply <- SavepointResult{Err: errors.New("supervisor: checkpoints are off; set checkpoint.interval and checkpoint.dir to take savepoints")}
			return true
		}
		if j.ended {
			m.reply <- SavepointResult{Err: errors.New("supervisor: the job is ending")}
			return true
		}
		c.queuedSavepoints = append(c.queuedSavepoints, m.reply)
		j.act(ctx, c.core.TriggerNow(c.plan.Now(), true))
	default:
		return false
	}
	return true
}

// act carries out the core's actions in order.
func (j *jobSupervisor) act(ctx actor.Context, acts []coordinator.Action) {
	c := j.ck
	for len(acts) > 0 {
		a := acts[0]
		acts = acts[1:]
		id := uint64(a.ID)
		switch a.Kind {
		case coordinator.KindTrigger:
			c.times[id] = c.plan.Now()
			c.event(CheckpointEvent{ID: id, Savepoint: a.Savepoint, State: "in_progress", Triggered: c.times[id]})
			if a.Savepoint && len(c.queuedSavepoints) > 0 {
				c.savepoints[id] = append(c.savepoints[id], c.queuedSavepoints...)
				c.queuedSavepoints = nil
			}
			// Sources start the checkpoint; the other tasks only use the
			// trigger once they have finished (no barrier reaches them then).
			for _, pid := range j.tasks {
				ctx.Send(pid, &actors.TriggerCheckpoint{ID: id, Savepoint: a.Savepoint})
			}
		case coordinator.KindWriteMetadata:
			m := snapshot.Metadata{
				JobName: c.plan.JobName, GraphFingerprint: c.plan.Fingerprint,
				ID: id, Time: c.times[id], Savepoint: a.Savepoint, Tasks: c.handles[id],
			}
			if err := snapshot.WriteMetadata(c.plan.FS, c.plan.Root, m); err != nil {
				j.log.Error("checkpoint metadata write failed", "checkpoint", id, "err", err)
				acts = append(acts, c.core.MetadataFailed(c.plan.Now(), a.ID, err.Error())...)
			} else {
				acts = append(acts, c.core.MetadataWritten(c.plan.Now(), a.ID)...)
			}
		case coordinator.KindNotifyComplete:
			var size int64
			for _, h := range c.handles[id] {
				size += h.NewBytes
			}
			took := c.plan.Now().Sub(c.times[id])
			last := c.lastAck[id]
			j.log.Info("checkpoint complete", "checkpoint", id, "savepoint", a.Savepoint,
				"took", took.Round(time.Millisecond), "new_bytes", size,
				"last_ack", last.task, "last_ack_after", last.at.Sub(c.times[id]).Round(time.Millisecond))
			c.event(CheckpointEvent{ID: id, Savepoint: a.Savepoint, State: "completed", Triggered: c.times[id], Duration: took, SizeBytes: size})
			for _, pid := range j.tasks {
				ctx.Send(pid, &actors.CheckpointComplete{ID: id})
			}
			for done := range c.handles {
				if done <= id {
					delete(c.handles, done)
					delete(c.times, done)
					delete(c.lastAck, done)
				}
			}
			for _, r := range c.savepoints[id] {
				r <- SavepointResult{ID: id, Path: snapshot.CheckpointDir(c.plan.FS, c.plan.Root, id)}
			}
			delete(c.savepoints, id)
			select {
			case c.retainReq <- struct{}{}:
			default: // a pass is already waiting to run
			}
			if c.plan.OnComplete != nil {
				c.plan.OnComplete(id, a.Savepoint)
			}
		case coordinator.KindNotifyAbort:
			j.log.Warn("checkpoint aborted", "checkpoint", id, "reason", a.Reason)
			state := "failed"
			if a.Cause == coordinator.CauseSubsumed || a.Cause == coordinator.CauseSuspended {
				state = "aborted"
			}
			if at, ok := c.times[id]; ok {
				c.event(CheckpointEvent{ID: id, Savepoint: a.Savepoint, State: state, Triggered: at, Duration: c.plan.Now().Sub(at), Reason: a.Reason})
			}
			for _, pid := range j.tasks {
				ctx.Send(pid, &actors.CheckpointAbort{ID: id, Reason: a.Reason})
			}
			delete(c.handles, id)
			delete(c.times, id)
			delete(c.lastAck, id)
			for _, r := range c.savepoints[id] {
				r <- SavepointResult{ID: id, Err: fmt.Errorf("supervisor: savepoint %d aborted: %s", id, a.Reason)}
			}
			delete(c.savepoints, id)
		case coordinator.KindFailJob:
			j.end(ctx, fmt.Errorf("supervisor: too many failed checkpoints in a row (checkpoint.tolerable_failures): %s", a.Reason))
			return
		case coordinator.KindIgnored, coordinator.KindQueued:
			j.log.Debug("checkpoint coordinator", "action", a.String())
		}
	}
}

// event tells the plan's OnEvent, if any.
func (c *ckpt) event(e CheckpointEvent) {
	if c.plan.OnEvent != nil {
		c.plan.OnEvent(e)
	}
}

func (j *jobSupervisor) stopCheckpoints() {
	if j.ck == nil {
		return
	}
	if !j.ck.stopped {
		j.ck.stopped = true
		close(j.ck.stopTicker)
		close(j.ck.retainReq)
	}
	fail := func(rs []chan SavepointResult) {
		for _, r := range rs {
			r <- SavepointResult{Err: errors.New("supervisor: the job ended before the savepoint completed")}
		}
	}
	fail(j.ck.queuedSavepoints)
	j.ck.queuedSavepoints = nil
	for id, rs := range j.ck.savepoints {
		fail(rs)
		delete(j.ck.savepoints, id)
	}
}

// retentionDone is closed when no retention runs any more (at once with
// checkpoints off); call it after stopCheckpoints.
func (j *jobSupervisor) retentionDone() <-chan struct{} {
	if j.ck == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	return j.ck.retainDone
}
