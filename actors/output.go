package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Flow-control defaults.
const (
	// DefaultCredits is how many batches a sender may have in flight to one
	// receiver before it must wait for a Credit.
	DefaultCredits = 4
	// DefaultBatchRecords is how many records fill a batch.
	DefaultBatchRecords = 1024
)

// Output is the sending side of one task: a buffer per downstream target,
// credits per target and a queue per target of what waits for a credit.
// Data and control messages to a target leave in the order they were
// emitted. Only batches cost credits; control messages (watermarks,
// barriers, end of input) wait behind the batches queued before them.
//
// An Output is owned by one actor and is not safe for concurrent use.
type Output struct {
	targets []*actor.PID
	self    int
	selfIn  []int // per target, when the index differs by target
	selfPID *actor.PID
	credits []int
	queue   [][]any
	sent    int64
	// stats counts what leaves (per batch) and the time spent waiting
	// for credits; never nil.
	stats *TaskStats
	now   func() time.Time
}

// NewOutput returns an output to targets; self is this task's index on each
// target's input side and selfPID where credits come back to.
func NewOutput(targets []*actor.PID, self int, selfPID *actor.PID, credits int) *Output {
	if credits <= 0 {
		credits = DefaultCredits
	}
	o := &Output{
		targets: targets,
		self:    self,
		selfPID: selfPID,
		credits: make([]int, len(targets)),
		queue:   make([][]any, len(targets)),
		stats:   NewTaskStats(),
		now:     time.Now,
	}
	for i := range o.credits {
		o.credits[i] = credits
	}
	o.stats.QueueCap.Store(int64(credits * len(targets)))
	return o
}

// SetStats makes the output count into s (nil: into nothing anyone reads):
// records, batches and batches in flight out, and the time spent waiting
// for credits.
func (o *Output) SetStats(s *TaskStats) {
	if s == nil {
		return
	}
	total := int64(0)
	for _, c := range o.credits {
		total += int64(c)
	}
	s.QueueCap.Store(total)
	s.InFlight.Store(0)
	s.blockEnd(o.now())
	o.stats = s
}

// SetInputIndexes sets this task's index on each target's input side,
// when it is not the same on every target (a task that feeds several
// operators, each with inputs from several upstream operators).
func (o *Output) SetInputIndexes(in []int) { o.selfIn = in }

func (o *Output) in(t int) int {
	if o.selfIn != nil {
		return o.selfIn[t]
	}
	return o.self
}

// Targets is the number of downstream targets.
func (o *Output) Targets() int { return len(o.targets) }

// EmitData sends a typed batch (see Batch.Data) of n records to target t,
// behind anything emitted before. The caller must not reuse data.
func (o *Output) EmitData(ctx actor.SenderContext, t int, data any, n int) {
	if n == 0 {
		return
	}
	o.queue[t] = append(o.queue[t], &Batch{In: o.in(t), Out: t, From: o.selfPID, Data: data, N: n})
	o.pump(ctx, t)
}

// Broadcast queues the control message m (built per target by mk, which
// receives this task's input index on the target) behind the batches sent
// to each target.
func (o *Output) Broadcast(ctx actor.SenderContext, mk func(in int) any) {
	for t := range o.targets {
		o.queue[t] = append(o.queue[t], mk(o.in(t)))
		o.pump(ctx, t)
	}
}

// OnCredit adds credits for target c.Out and sends what waited for them.
func (o *Output) OnCredit(ctx actor.SenderContext, c *Credit) {
	if c.Out < 0 || c.Out >= len(o.targets) {
		return
	}
	o.credits[c.Out] += c.N
	o.stats.InFlight.Add(-int64(c.N))
	o.pump(ctx, c.Out)
	if o.stats.blockedSince.Load() != 0 && !o.Blocked() {
		o.stats.blockEnd(o.now())
	}
}

func (o *Output) pump(ctx actor.SenderContext, t int) {
	q := o.queue[t]
	i := 0
	var recs, batches int64
	for ; i < len(q); i++ {
		if b, ok := q[i].(*Batch); ok {
			if o.credits[t] <= 0 {
				break
			}
			o.credits[t]--
			recs += int64(b.Len())
			batches++
		}
		ctx.Send(o.targets[t], q[i])
		q[i] = nil
	}
	if batches > 0 {
		o.sent += recs
		o.stats.RecordsOut.Add(recs)
		o.stats.BatchesOut.Add(batches)
		o.stats.InFlight.Add(batches)
	}
	if i == len(q) {
		o.queue[t] = q[:0]
	} else {
		o.queue[t] = q[i:]
		if o.stats.blockedSince.Load() == 0 {
			o.stats.blockStart(o.now())
		}
	}
}

// Blocked reports whether some target has batches waiting for credit. A
// task whose output is blocked stops taking input, which is how
// backpressure travels upstream.
func (o *Output) Blocked() bool {
	for _, q := range o.queue {
		if len(q) > 0 {
			return true
		}
	}
	return false
}

// Sent is the number of records sent so far.
func (o *Output) Sent() int64 { return o.sent }
