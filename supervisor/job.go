package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirstream/weir/actors"
)

// Stage is one operator of a job graph with its parallelism.
type Stage struct {
	// Name is the operator's name; subtask i is the task TaskName(Name, i).
	Name        string
	Parallelism int
	// Source marks the stages that read from outside (they are told to
	// drain); Sink marks the stages whose Finished ends the job.
	Source, Sink bool
	// Downstream names the stages this one sends to, in order. Nil means
	// the next stage of the plan (a linear graph); a sink has none.
	Downstream []string
	// Producer builds subtask index given the PIDs of the downstream
	// stages' subtasks: every subtask of Downstream[0], then of
	// Downstream[1], and so on (nil for a sink).
	Producer func(index int, targets []*actor.PID) actor.Producer
}

// Plan is a job graph: stages in data-flow order (every stage comes before
// the stages it sends to).
type Plan struct {
	Name   string
	Stages []Stage
	// Checkpoint is nil when checkpoints are off.
	Checkpoint *CheckpointPlan
}

// Validate checks the plan's shape.
func (p Plan) Validate() error {
	if len(p.Stages) == 0 {
		return errors.New("supervisor: plan has no stages")
	}
	sinks := 0
	at := map[string]int{}
	for i, s := range p.Stages {
		if _, dup := at[s.Name]; dup {
			return fmt.Errorf("supervisor: two stages are named %q", s.Name)
		}
		at[s.Name] = i
	}
	for i, s := range p.Stages {
		if s.Parallelism < 1 {
			return fmt.Errorf("supervisor: stage %q: parallelism %d < 1", s.Name, s.Parallelism)
		}
		if s.Producer == nil {
			return fmt.Errorf("supervisor: stage %q has no producer", s.Name)
		}
		for _, d := range p.downstream(i) {
			k, ok := at[d]
			if !ok {
				return fmt.Errorf("supervisor: stage %q sends to %q, which is not in the plan", s.Name, d)
			}
			if k <= i {
				return fmt.Errorf("supervisor: stage %q sends to %q, which comes before it", s.Name, d)
			}
		}
		if s.Sink {
			sinks++
			if len(s.Downstream) > 0 {
				return fmt.Errorf("supervisor: sink stage %q sends to other stages", s.Name)
			}
		}
	}
	if sinks == 0 {
		return errors.New("supervisor: plan has no sink stage")
	}
	return nil
}

// downstream is the names of the stages that stage i sends to.
func (p Plan) downstream(i int) []string {
	s := p.Stages[i]
	if s.Downstream != nil || s.Sink || i == len(p.Stages)-1 {
		return s.Downstream
	}
	return []string{p.Stages[i+1].Name}
}

// Handle is a running job.
type Handle struct {
	system *actor.ActorSystem
	pid    *actor.PID
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

type drainJob struct{}
type stopJob struct{ err error }

// Start spawns the job supervisor, which spawns every task of plan as its
// child. Done is closed when the job ends: all sinks finished, a task
// failed, or Stop was called.
func Start(system *actor.ActorSystem, plan Plan, log *slog.Logger) (*Handle, error) {
	if err := plan.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	h := &Handle{system: system, done: make(chan struct{})}
	js := &jobSupervisor{plan: plan, h: h, log: log}
	props := actor.PropsFromProducer(func() actor.Actor { return js },
		actor.WithSupervisor(actor.NewOneForOneStrategy(0, 0, js.decide)))
	pid, err := system.Root.SpawnNamed(props, "job-"+plan.Name)
	if err != nil {
		return nil, fmt.Errorf("supervisor: spawn job %s: %w", plan.Name, err)
	}
	h.pid = pid
	js.self = pid
	return h, nil
}

// Done is closed when the job has ended; Err then says why.
func (h *Handle) Done() <-chan struct{} { return h.done }

// Err is nil when the job finished (drained), else the first failure.
func (h *Handle) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func (h *Handle) finish(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.done:
		return
	default:
	}
	h.err = err
	close(h.done)
}

// Drain asks the sources to stop at the current end of their input; the
// job then fires every window, flushes the sinks and finishes.
func (h *Handle) Drain() { h.system.Root.Send(h.pid, &drainJob{}) }

// Stop ends the job now with err (nil for a cancel).
func (h *Handle) Stop(err error) { h.system.Root.Send(h.pid, &stopJob{err: err}) }

// PID of the job supervisor.
func (h *Handle) PID() *actor.PID { return h.pid }

type jobSupervisor struct {
	plan     Plan
	h        *Handle
	log      *slog.Logger
	self     *actor.PID
	sources  []*actor.PID
	tasks    map[string]*actor.PID
	names    map[string]string // PID id -> task name
	sinks    int
	finished map[string]bool
	// sourcesFinished holds the source tasks that reported SourceFinished.
	sourcesFinished map[string]bool
	// sinksReady and sourcesReady hold the sink and source tasks that
	// reported SinkReady and SourceReady; released: StartOutput was sent.
	sinksReady   map[string]bool
	sourcesReady map[string]bool
	released     bool
	ended        bool
	ck           *ckpt
}

// decide turns a panic in a task into a job failure: the task is stopped
// and the supervisor is told, so the whole job stops (a restart from the
// last checkpoint comes with checkpoints).
func (j *jobSupervisor) decide(reason any) actor.Directive {
	j.h.system.Root.Send(j.self, &actors.Failed{Task: "?", Err: fmt.Errorf("task panicked: %v", reason)})
	return actor.StopDirective
}

func (j *jobSupervisor) Receive(ctx actor.Context) {
	if j.checkpointMessage(ctx, ctx.Message()) {
		return
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		j.spawn(ctx)
	case *actors.Finished:
		j.finished[m.Task] = true
		j.log.Info("task finished", "task", m.Task)
		if len(j.finished) == j.sinks {
			j.end(ctx, nil)
		}
	case *actors.SinkReady:
		j.sinksReady[m.Task] = true
		j.release(ctx)
	case *actors.SourceReady:
		j.sourcesReady[m.Task] = true
		j.release(ctx)
	case *actors.Failed:
		j.log.Error("task failed", "task", m.Task, "err", m.Err)
		j.end(ctx, m.Err)
	case *drainJob:
		for _, s := range j.sources {
			ctx.Send(s, &actors.Drain{})
		}
	case *stopJob:
		j.end(ctx, m.err)
	case *actor.Stopping:
		j.stopCheckpoints()
	case *actor.Stopped:
		j.stopCheckpoints()
		// The job has ended once a retention pass in progress has too, so
		// a restart never reads checkpoints that are being deleted.
		done, h, log := j.retentionDone(), j.h, j.log
		go func() {
			t := time.NewTimer(retainStopTimeout)
			defer t.Stop()
			select {
			case <-done:
			case <-t.C:
				log.Warn("checkpoint retention still runs; the job ends without waiting for it", "waited", retainStopTimeout)
			}
			h.finish(h.Err())
		}()
	}
}

// running tells whether every sink and every source has started.
func (j *jobSupervisor) running() bool {
	return len(j.sinksReady) == j.sinks && len(j.sourcesReady) == len(j.sources)
}

// release lets the sources read once every task at the job's edges has
// started: a sink's recovery (replaying pending epochs) must reach Kafka
// before new records, and every source subtask must have resolved its
// partitions, so that one created after the job started is discovered
// (and read from its earliest offset) whichever subtask owns it.
func (j *jobSupervisor) release(ctx actor.Context) {
	if j.released || !j.running() {
		return
	}
	j.released = true
	for _, s := range j.sources {
		ctx.Send(s, &actors.StartOutput{})
	}
}

func (j *jobSupervisor) spawn(ctx actor.Context) {
	j.tasks = map[string]*actor.PID{}
	j.finished = map[string]bool{}
	j.sourcesFinished = map[string]bool{}
	j.sinksReady = map[string]bool{}
	j.sourcesReady = map[string]bool{}
	spawned := map[string][]*actor.PID{}
	for si := len(j.plan.Stages) - 1; si >= 0; si-- {
		st := j.plan.Stages[si]
		var next []*actor.PID
		for _, d := range j.plan.downstream(si) {
			next = append(next, spawned[d]...)
		}
		pids := make([]*actor.PID, st.Parallelism)
		for i := 0; i < st.Parallelism; i++ {
			name := TaskName(st.Name, i)
			props := actor.PropsFromProducer(st.Producer(i, next))
			pid, err := ctx.SpawnNamed(props, fmt.Sprintf("%s-%d", st.Name, i))
			if err != nil {
				j.end(ctx, fmt.Errorf("supervisor: spawn %s: %w", name, err))
				return
			}
			pids[i] = pid
			j.tasks[name] = pid
		}
		if st.Sink {
			j.sinks += st.Parallelism
		}
		if st.Source {
			j.sources = append(j.sources, pids...)
		}
		spawned[st.Name] = pids
	}
	if j.plan.Checkpoint != nil {
		names := make([]string, 0, len(j.tasks))
		for n := range j.tasks {
			names = append(names, n)
		}
		if err := j.startCheckpoints(ctx, names); err != nil {
			j.end(ctx, err)
		}
	}
}

// TaskName is the name of subtask i of stage: "window-1". It names the
// task's directory in a checkpoint.
func TaskName(stage string, i int) string { return fmt.Sprintf("%s-%d", stage, i) }

// end stops every task and then the supervisor; the first cause wins.
func (j *jobSupervisor) end(ctx actor.Context, err error) {
	if j.ended {
		return
	}
	j.ended = true
	j.h.mu.Lock()
	j.h.err = err
	j.h.mu.Unlock()
	ctx.Stop(ctx.Self())
}
