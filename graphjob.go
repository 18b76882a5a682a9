package weir

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/operator"
	"github.com/weirstream/weir/snapshot"
	"github.com/weirstream/weir/supervisor"
	"github.com/weirstream/weir/txsink"
)

// dataflowPlan turns the graph of a job built with NewEnv into the
// supervisor's stages: a source stage per FromKafka, a task stage per
// chain of operators, a sink stage per ToKafka.
func (j *Job) dataflowPlan(closed *sync.WaitGroup, state *stateSetup) supervisor.Plan {
	g, s, p := j.graph, j.spec, j.spec.Parallelism
	log := j.opts.log.With("job", s.Name)
	stages := map[string]supervisor.Stage{}
	for _, n := range g.sources {
		stages[n.uid] = j.sourceStage(n, closed, state)
	}
	for _, t := range g.tasks {
		if !t.head.relay {
			stages[t.name()] = j.taskStage(t, state)
		}
	}
	for _, n := range g.sinks {
		n := n
		sk := n.sink.spec
		if s.Delivery == ExactlyOnce && state != nil {
			for i := range p {
				state.spillOwners = append(state.spillOwners, txsink.Owner(s.Name, n.uid, i))
			}
		}
		stages[n.uid] = supervisor.Stage{
			Name: n.uid, Parallelism: p, Sink: true, Downstream: []string{},
			Producer: func(i int, _ []*actor.PID) actor.Producer {
				task := supervisor.TaskName(n.uid, i)
				if n.sink.pg != nil {
					return actors.NewSink(actors.SinkConfig{
						Task: task, Index: i, Inputs: 1,
						Postgres: j.postgresConfig(n, i), PostgresExactlyOnce: s.Delivery == ExactlyOnce,
						Failpoint: j.opts.failpoint, MaxPendingBytes: sk.MaxPendingBytes,
						Checkpoint: state.checkpointing(task),
						Metrics:    &j.metrics, Stats: j.obs.stats(n.uid, i), Done: closed, Log: log,
					})
				}
				var tx *txsink.KafkaConfig
				dl := g.deadLetterTopics(n)
				if s.Delivery == ExactlyOnce {
					tx = &txsink.KafkaConfig{
						Brokers: s.Brokers, Topic: sk.Topic, ProgressTopic: sk.ProgressTopic, DeadLetterTopics: dl,
						TransactionalIDPrefix: sk.TransactionalIDPrefix, Job: s.Name, Sink: n.uid, Subtask: i,
						TransactionTimeout: sk.TransactionTimeout,
						CheckpointInterval: s.Checkpoint.Interval, CheckpointTimeout: s.Checkpoint.Timeout,
						Properties: merge(s.Kafka, sk.Properties), Failpoint: j.opts.failpoint,
					}
				}
				return actors.NewSink(actors.SinkConfig{
					Task: task, Index: i, Inputs: 1 + len(g.dlInputsOf(n)), DeadLetterTopics: dl,
					Transactional: tx, Failpoint: j.opts.failpoint, MaxPendingBytes: sk.MaxPendingBytes,
					AllowReplayCommitted: j.opts.allowReplayCommitted || (j.opts.allowFreshStart && (state == nil || state.restored == nil)),
					Checkpoint:           state.checkpointing(task),
					Brokers:              s.Brokers, Topic: sk.Topic, Properties: merge(s.Kafka, sk.Properties),
					Metrics: &j.metrics, Stats: j.obs.stats(n.uid, i), Done: closed, Log: log,
				})
			},
		}
	}
	plan := supervisor.Plan{Name: s.Name, Checkpoint: j.checkpointPlan(state)}
	for _, name := range g.order {
		plan.Stages = append(plan.Stages, stages[name])
	}
	return plan
}

func (j *Job) sourceStage(n *node, closed *sync.WaitGroup, state *stateSetup) supervisor.Stage {
	s, p, src := j.spec, j.spec.Parallelism, n.source
	sp := src.spec
	start := actors.StartPosition{Mode: string(sp.Start.Mode), AutoOffsetReset: sp.Start.AutoOffsetReset, Offsets: sp.Start.Offsets}
	if !sp.Start.Timestamp.IsZero() {
		start.TimestampMillis = sp.Start.Timestamp.UnixMilli()
	}
	stop := actors.StopPosition{Mode: string(sp.Bounded), Offsets: sp.BoundedOffsets}
	if !sp.BoundedTimestamp.IsZero() {
		stop.TimestampMillis = sp.BoundedTimestamp.UnixMilli()
	}
	discovery := sp.PartitionDiscoveryInterval
	if sp.Bounded != Unbounded {
		discovery = 0
	}
	// The operators behind the source run in its actor (source chaining):
	// the source sends where its relay task would.
	relay := j.graph.taskOf[n.ports[0].consumers[0].to]
	downstream := j.graph.downstream(relay)
	dlIn, dlOK := j.graph.dlInput[n]
	if dlOK {
		// Dead letters go straight to subtask i of the sink that writes
		// them, on an input of their own.
		downstream = append(downstream, j.graph.dlSink.uid)
	}
	return supervisor.Stage{
		Name: n.uid, Parallelism: p, Source: true, Downstream: downstream,
		Producer: func(i int, all []*actor.PID) actor.Producer {
			task := supervisor.TaskName(n.uid, i)
			pids, inIdx, targets := j.graph.subtaskOutputs(relay, i, all, p)
			dlTarget, dlTopic := -1, ""
			if dlOK {
				dlTarget, dlTopic = len(pids), src.deadLetter
				pids = append(pids, all[len(relay.out)*p+i])
				inIdx = append(inIdx, dlIn)
			}
			batch := j.opts.batchRecords
			if batch <= 0 {
				batch = actors.DefaultBatchRecords
			}
			return actors.NewSource(actors.SourceConfig{
				Task: task, Index: i, Parallelism: p,
				Checkpoint: state.checkpointing(task),
				Brokers:    s.Brokers, Topic: sp.Topic, Group: sp.Group,
				Start: start, Stop: stop, Isolation: string(sp.Isolation),
				CommitOnCheckpoint: !sp.DisableOffsetCommit, DiscoveryInterval: discovery,
				Properties: merge(s.Kafka, sp.Properties),
				NewDecoder: src.decoder, EventTime: src.eventTime, BadRecordHint: src.badHint,
				DeadLetterTopic: dlTopic, DeadLetterTarget: dlTarget,
				OutOfOrderness: src.bound, IdleTimeout: src.idle,
				MaxFuture: src.maxFutureBound(), MaxFutureSetting: src.maxFutureSetting,
				Targets: pids, InputIndexes: inIdx, Credits: j.opts.credits,
				Chain: func(send func(int, any, int)) (operator.Operator, func(), error) {
					// Stateless: no checkpoints, no clock.
					b := &buildCtx{index: i, parallelism: p, wm: math.MinInt64, now: func() int64 { return time.Now().UnixMilli() }}
					return wireTask(relay, b, targets, send, batch)
				},
				Metrics: &j.metrics, Stats: j.obs.stats(n.uid, i), Done: closed, Log: j.opts.log.With("job", s.Name),
				HoldUntilStarted: true,
			})
		},
	}
}

// dlInputsOf returns the sources whose dead letters sink n writes.
func (g *graphPlan) dlInputsOf(n *node) []*node {
	if g.dlSink != n {
		return nil
	}
	var out []*node
	for _, src := range g.sources {
		if _, ok := g.dlInput[src]; ok {
			out = append(out, src)
		}
	}
	return out
}

// downstream names the stages t sends to, one per out edge.
func (g *graphPlan) downstream(t *task) []string {
	d := make([]string, len(t.out))
	for k, e := range t.out {
		d[k] = g.stageOf(e)
	}
	return d
}

// subtaskOutputs picks subtask i's targets of task t out of all, the
// subtasks of t's downstream stages in order: forward edges go to
// subtask i alone, hash edges to every subtask. It returns them with the
// sender's input index on each, and the indexes each out edge sends to.
func (g *graphPlan) subtaskOutputs(t *task, i int, all []*actor.PID, p int) (pids []*actor.PID, inIdx []int, targets map[*edge][]int) {
	targets = map[*edge][]int{}
	for k, e := range t.out {
		group := all[k*p : (k+1)*p]
		base := g.receiverBase(e, p)
		if e.hash() {
			for r := 0; r < p; r++ {
				targets[e] = append(targets[e], len(pids))
				pids = append(pids, group[r])
				inIdx = append(inIdx, base+i)
			}
			continue
		}
		targets[e] = []int{len(pids)}
		pids = append(pids, group[i])
		inIdx = append(inIdx, base)
	}
	return pids, inIdx, targets
}

// receiverBase is the first input channel of edge e at its receiver.
func (g *graphPlan) receiverBase(e *edge, p int) int {
	if e.to.sink != nil {
		return 0
	}
	base, _ := inputLayout(g.taskOf[e.to].head.ins, p)
	return base[e]
}

func (j *Job) taskStage(t *task, state *stateSetup) supervisor.Stage {
	g, p := j.graph, j.spec.Parallelism
	_, inputOf := inputLayout(t.head.ins, p)
	return supervisor.Stage{
		Name: t.name(), Parallelism: p, Downstream: g.downstream(t),
		Producer: func(i int, all []*actor.PID) actor.Producer {
			pids, inIdx, targets := g.subtaskOutputs(t, i, all, p)
			task := supervisor.TaskName(t.name(), i)
			cp := state.checkpointing(task)
			batch := j.opts.batchRecords
			if batch <= 0 {
				batch = actors.DefaultBatchRecords
			}
			return actors.NewTask(actors.TaskConfig{
				Task: task, Index: i, Inputs: len(inputOf), InputOf: inputOf,
				Targets: pids, InputIndexes: inIdx, Credits: j.opts.credits,
				Checkpoint: cp, Metrics: &j.metrics, Stats: j.obs.stats(t.name(), i), Log: j.opts.log.With("job", j.spec.Name),
				NewOperator: func(send func(int, any, int)) (operator.Operator, func(), error) {
					b := &buildCtx{index: i, parallelism: p, checkpoints: cp.Enabled(), metrics: &j.metrics, wm: math.MinInt64, now: func() int64 { return time.Now().UnixMilli() }}
					return wireTask(t, b, targets, send, batch)
				},
			})
		},
	}
}

// wireTask builds the operators of one subtask of t, from the head down
// the chain, and returns the operator the task actor runs and the flush
// of its output edges.
func wireTask(t *task, b *buildCtx, targets map[*edge][]int, send func(int, any, int), batch int) (operator.Operator, func(), error) {
	var (
		flushers []func()
		life     lifecycle
	)
	var wire func(n *node) (any, error)
	wire = func(n *node) (any, error) {
		outs := make([]any, len(n.ports))
		for pi, pt := range n.ports {
			var ems []any
			for _, e := range pt.consumers {
				switch {
				case t.in[e.to]:
					em, err := wire(e.to)
					if err != nil {
						return nil, err
					}
					ems = append(ems, em)
				case e.to.sink != nil:
					sinkID := e.to.uid
					em, fl := e.to.sink.writer(send, targets[e][0], func(err error) {
						b.fail(fmt.Errorf("encode a record for sink %s: %w", sinkID, err))
					})
					flushers = append(flushers, fl)
					ems = append(ems, em)
				default:
					em, fl := pt.exchange(send, targets[e], e.key, batch)
					flushers = append(flushers, fl)
					ems = append(ems, em)
				}
			}
			if len(ems) == 1 {
				outs[pi] = ems[0]
			} else {
				outs[pi] = pt.fanout(ems)
			}
		}
		in, l, err := n.build(b, outs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.uid, err)
		}
		if l != nil {
			life = l
		}
		return in, nil
	}
	in, err := wire(t.head)
	if err != nil {
		return nil, nil, err
	}
	op := &chainOp{b: b, life: life}
	for _, e := range t.head.ins {
		op.push = append(op.push, e.from.ports[e.port].input(in))
	}
	flush := func() {
		for _, f := range flushers {
			f()
		}
	}
	return op, flush, nil
}

// chainOp is the operator.Operator of a task: its inputs push records
// down the chain; the head's lifecycle, if any, gets the rest.
type chainOp struct {
	b    *buildCtx
	push []func(data any) error
	life lifecycle
}

func (c *chainOp) Open(restored operator.Iter, opState []byte) error {
	if c.life == nil {
		return nil
	}
	return c.life.Open(restored, opState)
}

func (c *chainOp) Process(input int, data any) error {
	if err := c.push[input](data); err != nil {
		return err
	}
	return c.b.take()
}

func (c *chainOp) Watermark(ts int64) error {
	c.b.wm = ts
	if c.life == nil {
		return nil
	}
	if err := c.life.Watermark(ts); err != nil {
		return err
	}
	return c.b.take()
}

func (c *chainOp) ProcessingTime(now int64) error {
	if c.life == nil {
		return nil
	}
	if err := c.life.ProcessingTime(now); err != nil {
		return err
	}
	return c.b.take()
}

func (c *chainOp) NextProcessingTimer() (int64, bool) {
	if c.life == nil {
		return 0, false
	}
	return c.life.NextProcessingTimer()
}

func (c *chainOp) EndOfInput() error {
	if c.life == nil {
		return nil
	}
	if err := c.life.EndOfInput(); err != nil {
		return err
	}
	return c.b.take()
}

func (c *chainOp) Snapshot(id uint64) (operator.Capture, error) {
	if c.life == nil {
		return operator.Capture{}, nil
	}
	return c.life.Snapshot(id)
}

// Checkpoints of a dataflow job name their state by operator id. The
// fingerprint lists the operators that hold state (sources: positions;
// keyed operators; sinks: pending transactions) with their kind; a
// restore compares these, not the whole graph, so a program with an
// operator added restores a savepoint of the program without it.

const dataflowFingerprintPrefix = "dataflow key_groups=128 state="

// statefulOps maps the uid of every operator that holds state to its kind.
func (g *graphPlan) statefulOps() map[string]string {
	m := map[string]string{}
	for _, n := range g.sources {
		m[n.uid] = "source"
	}
	for _, n := range g.sinks {
		m[n.uid] = "sink"
	}
	for _, t := range g.tasks {
		if t.head.stateful {
			m[t.head.uid] = t.head.kind
		}
	}
	return m
}

func (g *graphPlan) fingerprint() string {
	ops := g.statefulOps()
	parts := make([]string, 0, len(ops))
	for uid, kind := range ops {
		parts = append(parts, uid+":"+kind)
	}
	sort.Strings(parts)
	return dataflowFingerprintPrefix + strings.Join(parts, ",")
}

// taskNames lists the graph's tasks as they are named in checkpoints.
func (g *graphPlan) taskNames(p int) []string {
	var names []string
	for _, stage := range g.order {
		for i := 0; i < p; i++ {
			names = append(names, supervisor.TaskName(stage, i))
		}
	}
	return names
}

// acceptCheckpoint says whether checkpoint m can be restored into the
// graph: every operator whose state it holds must be in the program, with
// the same kind, unless allowDrop lets its state go. (Another parallelism
// is fine: the restore rescales.)
func (g *graphPlan) acceptCheckpoint(m snapshot.Metadata, allowDrop bool) error {
	old, ok := strings.CutPrefix(m.GraphFingerprint, dataflowFingerprintPrefix)
	if !ok {
		return fmt.Errorf("checkpoint %d was taken by another kind of job (%q), not a dataflow program; use a fresh checkpoint directory", m.ID, m.GraphFingerprint)
	}
	now := g.statefulOps()
	var dropped []string
	for _, part := range strings.Split(old, ",") {
		if part == "" {
			continue
		}
		uid, kind, _ := strings.Cut(part, ":")
		switch have, ok := now[uid]; {
		case !ok:
			dropped = append(dropped, fmt.Sprintf("%q (%s)", uid, kind))
		case have != kind:
			return fmt.Errorf("checkpoint %d holds state of operator %q as a %s, but in this program %q is a %s; give the new operator another weir.UID", m.ID, uid, kind, uid, have)
		}
	}
	if len(dropped) > 0 && !allowDrop {
		return fmt.Errorf("checkpoint %d holds state of operator %s, which this program does not have; keep its weir.UID, or allow dropping that state with weir.AllowNonRestoredState", m.ID, strings.Join(dropped, ", "))
	}
	return nil
}

// cutTaskIndex splits "name-3" into "name" and 3.
func cutTaskIndex(task string) (string, int, bool) {
	i := strings.LastIndexByte(task, '-')
	if i < 0 {
		return "", 0, false
	}
	var n int
	if _, err := fmt.Sscanf(task[i+1:], "%d", &n); err != nil {
		return "", 0, false
	}
	return task[:i], n, true
}
