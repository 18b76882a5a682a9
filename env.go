package weir

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Env is where a program builds a dataflow job: sources (FromKafka),
// operators (Map, Filter, FlatMap, KeyBy, Process, Union, Transform, side
// outputs) and sinks (ToKafka) added to it form the job's graph, which
// Run runs (Flink's StreamExecutionEnvironment).
//
// An Env is built by one goroutine and then run once.
type Env struct {
	spec  JobSpec
	nodes []*node
	kinds map[string]int
	err   error
	opts  []Option
}

// EnvOption configures an Env.
type EnvOption func(*Env)

// NewEnv returns an empty job graph named name. The name identifies the
// job in checkpoints and, with exactly-once delivery, in transactional
// ids: letters, digits, '.', '_' and '-'.
func NewEnv(name string, opts ...EnvOption) *Env {
	e := &Env{spec: JobSpec{Name: name, Kind: KindDataflow}, kinds: map[string]int{}}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Brokers sets the Kafka bootstrap list, "host:port[,host:port...]".
func Brokers(list string) EnvOption { return func(e *Env) { e.spec.Brokers = list } }

// Parallelism sets the number of subtasks of every operator (default 1,
// at most MaxParallelism).
func Parallelism(p int) EnvOption { return func(e *Env) { e.spec.Parallelism = p } }

// Checkpoints turns checkpoints on: one every interval, written under dir
// (a local directory; the newest complete checkpoint there is restored
// when the job starts again).
func Checkpoints(interval time.Duration, dir string) EnvOption {
	return func(e *Env) { e.spec.Checkpoint.Interval, e.spec.Checkpoint.Dir = interval, dir }
}

// CheckpointSettings sets the remaining checkpoint settings (timeout, min
// pause, retained checkpoints, tolerable failures, mode); Interval and Dir
// come from Checkpoints when they are zero here.
func CheckpointSettings(c CheckpointSpec) EnvOption {
	return func(e *Env) {
		if c.Interval == 0 {
			c.Interval = e.spec.Checkpoint.Interval
		}
		if c.Dir == "" {
			c.Dir = e.spec.Checkpoint.Dir
		}
		e.spec.Checkpoint = c
	}
}

// Guarantee sets the delivery guarantee of every sink. AtLeastOnce (the
// default) may write some records again after a restart. ExactlyOnce
// writes in Kafka transactions that commit when a checkpoint completes
// (it needs Checkpoints); readers of the sink topics read committed.
func Guarantee(d Delivery) EnvOption { return func(e *Env) { e.spec.Delivery = d } }

// KafkaProperties are librdkafka properties for every consumer and
// producer of the job (security settings, for example).
func KafkaProperties(p map[string]string) EnvOption { return func(e *Env) { e.spec.Kafka = p } }

// Restart sets the restart strategy (default: exponential delay with
// checkpoints, none without, as in Flink).
func Restart(r RestartSpec) EnvOption { return func(e *Env) { e.spec.Restart = r } }

// JobOptions adds options of the job Run builds (logger, savepoint to
// restore, flow control, ...).
func JobOptions(opts ...Option) EnvOption { return func(e *Env) { e.opts = append(e.opts, opts...) } }

// fail records the first error found while the graph is built; Build and
// Run return it.
func (e *Env) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// Build checks the graph and the settings and returns the job, ready to
// Run once. Every problem is an error naming what to fix.
func (e *Env) Build(opts ...Option) (*Job, error) {
	spec := e.spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	g, err := e.plan()
	if err != nil {
		return nil, err
	}
	if err := e.checkConnectors(spec, g); err != nil {
		return nil, err
	}
	j, err := newJob(spec, append(append([]Option(nil), e.opts...), opts...))
	if err != nil {
		return nil, err
	}
	j.graph = g
	if err := j.initObs(); err != nil {
		return nil, err
	}
	return j, nil
}

// Run builds the job and runs it until it ends (a bounded input read and
// written), fails, or ctx ends; see Job.Run.
func (e *Env) Run(ctx context.Context, opts ...Option) error {
	j, err := e.Build(opts...)
	if err != nil {
		return err
	}
	return j.Run(ctx)
}

// checkConnectors fills in the defaults of every source and sink and
// checks them; errors name the operator.
func (e *Env) checkConnectors(spec JobSpec, g *graphPlan) error {
	topics := map[string]string{}
	for _, n := range g.sources {
		src := &n.source.spec
		if src.Group == "" {
			src.Group = "weir-" + spec.Name + "-" + n.uid
		}
		if src.Start.Mode == "" {
			src.Start.Mode = StartGroup
		}
		if src.Start.AutoOffsetReset == "" {
			src.Start.AutoOffsetReset = "earliest"
		}
		if src.Isolation == "" {
			src.Isolation = ReadCommitted
		}
		if src.PartitionDiscoveryInterval == 0 {
			src.PartitionDiscoveryInterval = DefaultPartitionDiscoveryInterval
		}
		if err := validTopic("topic", src.Topic); err != nil || src.Topic == "" {
			return fmt.Errorf("weir: source %s: topic %q is not a Kafka topic name", n.uid, src.Topic)
		}
		if err := src.validate(); err != nil {
			return fmt.Errorf("weir: source %s: %w", n.uid, err)
		}
		if n.source.bound < 0 || n.source.idle < 0 {
			return fmt.Errorf("weir: source %s: EventTime's out-of-orderness and IdleTimeout must not be negative", n.uid)
		}
		if n.source.maxFuture < 0 && n.source.maxFuture != NoMaxFuture {
			return fmt.Errorf("weir: source %s: MaxFuture(%v) is negative; use weir.NoMaxFuture to turn the bound off", n.uid, n.source.maxFuture)
		}
		topics[src.Topic] = "source " + n.uid
	}
	for _, n := range g.sinks {
		sk := &n.sink.spec
		if n.sink.pg != nil {
			if err := validatePGSinkNode(n); err != nil {
				return err
			}
			continue
		}
		if sk.TransactionalIDPrefix == "" {
			sk.TransactionalIDPrefix = "weir"
		}
		if sk.ProgressTopic == "" {
			sk.ProgressTopic = sk.Topic + ".weir-progress"
		}
		if err := validTopic("topic", sk.Topic); err != nil || sk.Topic == "" {
			return fmt.Errorf("weir: sink %s: topic %q is not a Kafka topic name", n.uid, sk.Topic)
		}
		if other, ok := topics[sk.Topic]; ok {
			return fmt.Errorf("weir: sink %s writes topic %q, which %s also uses; give each sink a topic of its own, not a source's", n.uid, sk.Topic, other)
		}
		topics[sk.Topic] = "sink " + n.uid
		if sk.TransactionTimeout < 0 {
			return fmt.Errorf("weir: sink %s: TransactionTimeout must not be negative", n.uid)
		}
		if err := validPendingBytes(sk.MaxPendingBytes); err != nil {
			return fmt.Errorf("weir: sink %s: MaxPendingBytes (sink.max_pending_bytes): %w", n.uid, err)
		}
	}
	for _, n := range g.sinks {
		if n.sink.pg != nil {
			continue
		}
		if other, ok := topics[n.sink.spec.ProgressTopic]; ok {
			return fmt.Errorf("weir: sink %s: progress topic %q is also used by %s; name another with weir.ProgressTopic", n.uid, n.sink.spec.ProgressTopic, other)
		}
	}
	return nil
}

// ErrDataflowNeedsEnv is returned by NewJob for a JobSpec of kind
// dataflow: such a job is built by a program with NewEnv.
var ErrDataflowNeedsEnv = errors.New("weir: kind dataflow is built by a Go program with weir.NewEnv; a job file uses kind window or passthrough")
