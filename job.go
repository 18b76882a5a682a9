package weir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/internal/kafkaconf"
	"github.com/weirstream/weir/supervisor"
	"github.com/weirstream/weir/txsink"
)

// Job is a built job, ready to Run once.
type Job struct {
	spec    JobSpec
	opts    options
	metrics actors.Metrics

	checkpoints    atomic.Int64
	lastCheckpoint atomic.Uint64
	restoredFrom   atomic.Uint64

	// graph is the dataflow graph of the job: built with NewEnv, or from
	// a job-file kind (window, passthrough).
	graph *graphPlan
	// obs is the job's status and metrics (Status, Gatherer).
	obs *jobObs

	mu      sync.Mutex
	handle  *supervisor.Handle
	drain   bool
	started bool
}

type options struct {
	log          *slog.Logger
	savepoint    string
	credits      int
	batchRecords int
	closeTimeout time.Duration
	onCheckpoint func(id uint64, savepoint bool)
	failpoint    func(name string)
	fs           vfs.FS
	allowDrop    bool
	// allowFreshStart lets the job start from its start position when
	// checkpoint.dir holds only checkpoints that cannot be restored.
	allowFreshStart bool
	// allowReplayCommitted lets exactly-once sinks start from a checkpoint
	// older than what their progress markers show committed.
	allowReplayCommitted bool
	// onLocked is called once checkpoint.dir's lock is held (WithOnLocked).
	onLocked func(dir string) error
	// memoryLimit is the soft memory limit Run sets (WithMemoryLimit); 0:
	// none.
	memoryLimit int64
	// registry receives the job's metrics (WithMetricsRegistry); nil: a
	// registry of the job's own.
	registry *prometheus.Registry
}

// Option configures a Job.
type Option func(*options)

// WithLogger sends the job's log to l (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithFlowControl sets how many batches a task may have in flight to each
// downstream task (credits) and how many records fill a batch.
func WithFlowControl(credits, batchRecords int) Option {
	return func(o *options) { o.credits, o.batchRecords = credits, batchRecords }
}

// WithSavepoint restores the job from the checkpoint or savepoint directory
// path (a chk-<N> directory) instead of the newest checkpoint in
// checkpoint.dir.
func WithSavepoint(path string) Option { return func(o *options) { o.savepoint = path } }

// WithFS makes the job write its state and checkpoints through fs instead of
// the operating system's file system (tests inject errors with
// pebble's vfs/errorfs; fs must be a real-path file system such as one
// wrapping vfs.Default).
func WithFS(fs vfs.FS) Option { return func(o *options) { o.fs = fs } }

// WithCheckpointListener calls f when a checkpoint completes (on the job
// supervisor's goroutine: f must return quickly).
func WithCheckpointListener(f func(id uint64, savepoint bool)) Option {
	return func(o *options) { o.onCheckpoint = f }
}

// AllowNonRestoredState lets a job restore a checkpoint or savepoint that
// holds state of operators the program no longer has (Flink's
// --allowNonRestoredState): that state is dropped. Without it such a
// restore is refused with an error naming the operator.
func AllowNonRestoredState() Option { return func(o *options) { o.allowDrop = true } }

// WithAllowFreshStart lets the job start from its start position when
// checkpoint.dir holds checkpoints but none can be restored (see
// BrokenCheckpointsError); their state is discarded. Without it such a
// start is refused.
func WithAllowFreshStart() Option { return func(o *options) { o.allowFreshStart = true } }

// WithAllowReplayCommitted lets an exactly-once job start from a
// checkpoint older than the newest epoch its sinks' progress markers show
// committed, or from no checkpoint over markers of an earlier run of the
// same job (engine run --allow-replay-committed): the results of those
// epochs are written again (duplicates downstream). Without it such a
// start is refused with a *txsink.ReplayCommittedError naming the
// checkpoint and the committed epoch (crash-matrix row 9), and Run returns
// it without restarting. WithAllowFreshStart accepts it too when no
// checkpoint is restored.
func WithAllowReplayCommitted() Option { return func(o *options) { o.allowReplayCommitted = true } }

// ErrNotYet is returned for settings that are accepted in job files but not
// implemented by this version of the engine.
var ErrNotYet = errors.New("weir: not implemented in this version")

// NewJob checks spec (filling in defaults) and returns a job that Run runs.
func NewJob(spec JobSpec, opts ...Option) (*Job, error) {
	spec = spec.WithDefaults()
	RegisterSecrets(spec)
	if spec.Kind == KindDataflow {
		return nil, ErrDataflowNeedsEnv
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	j, err := newJob(spec, opts)
	if err != nil {
		return nil, err
	}
	if j.graph, err = kindGraph(spec); err != nil {
		return nil, err
	}
	if err := j.initObs(); err != nil {
		return nil, err
	}
	return j, nil
}

// dataflow reports whether the job's graph was built by a program (NewEnv)
// rather than from a job-file kind, whose checkpoints keep their own
// fingerprint and rescaling.
func (j *Job) dataflow() bool { return j.spec.Kind == KindDataflow }

func newJob(spec JobSpec, opts []Option) (*Job, error) {
	o := options{log: slog.Default(), closeTimeout: 30 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	if err := validMemoryLimit(o.memoryLimit); err != nil {
		return nil, fmt.Errorf("weir: WithMemoryLimit(%d): %w", o.memoryLimit, err)
	}
	return &Job{spec: spec, opts: o}, nil
}

// Spec is the job's spec with defaults filled in.
func (j *Job) Spec() JobSpec { return j.spec }

// Stats are the job's counters at one moment.
type Stats struct {
	RecordsIn   int64 // records read from Kafka
	ResultsOut  int64 // results acknowledged by Kafka
	LateDropped int64 // records that came after their window had fired
	BadRecords  int64 // records that could not be read
	// DeadLettered counts the bad records sent to the dead-letter topic
	// (bad_records: dead-letter, weir.DeadLetter); BadRecords counts them
	// too.
	DeadLettered int64
	// Checkpoints completed by this run, and the id of the newest.
	Checkpoints    int64
	LastCheckpoint uint64
	// RestoredFrom is the checkpoint the newest run restored, 0 for none.
	RestoredFrom uint64
	// Restarts counts the restarts after failures.
	Restarts int64
	// OffsetCommits and OffsetCommitFailures count the source's commits of
	// offsets to the consumer group (a failed one never fails the job).
	OffsetCommits        int64
	OffsetCommitFailures int64
	// PartitionsDiscovered counts source partitions assigned after the
	// start (partition discovery).
	PartitionsDiscovered int64
	// Lag is, per source partition, the end offset the consumer last saw
	// minus the position of the source (records not read yet). A
	// partition appears once both are known.
	Lag map[int32]int64
}

// Stats returns the job's counters; safe to call while it runs.
func (j *Job) Stats() Stats {
	return Stats{
		RecordsIn:    j.metrics.RecordsIn.Load(),
		ResultsOut:   j.metrics.ResultsOut.Load(),
		LateDropped:  j.metrics.LateDropped.Load(),
		BadRecords:   j.metrics.BadRecords.Load(),
		DeadLettered: j.metrics.DeadLettered.Load(),

		Checkpoints:    j.checkpoints.Load(),
		LastCheckpoint: j.lastCheckpoint.Load(),
		RestoredFrom:   j.restoredFrom.Load(),
		Restarts:       j.metrics.Restarts.Load(),

		OffsetCommits:        j.metrics.OffsetCommits.Load(),
		OffsetCommitFailures: j.metrics.OffsetCommitFailures.Load(),
		PartitionsDiscovered: j.metrics.PartitionsDiscovered.Load(),
		Lag:                  j.metrics.Lag(),
	}
}

// onCheckpoint records a checkpoint event in the job's status.
func (j *Job) onCheckpoint(e supervisor.CheckpointEvent) { j.obs.checkpoint(e) }

func (j *Job) onComplete(id uint64, savepoint bool) {
	j.checkpoints.Add(1)
	j.lastCheckpoint.Store(id)
	// From now on a restart restores the newest checkpoint in
	// checkpoint.dir, which is at least as new as the savepoint started from.
	j.mu.Lock()
	j.opts.savepoint = ""
	j.mu.Unlock()
	if j.opts.onCheckpoint != nil {
		j.opts.onCheckpoint(id, savepoint)
	}
}

// ErrNotRunning is returned by calls that need a running job.
var ErrNotRunning = errors.New("weir: the job is not running")

// Savepoint takes a checkpoint now, kept outside retention, and returns its
// directory (give it to WithSavepoint, or --from-savepoint, to restore it).
func (j *Job) Savepoint(ctx context.Context) (string, error) {
	j.mu.Lock()
	h := j.handle
	j.mu.Unlock()
	if h == nil {
		return "", ErrNotRunning
	}
	select {
	case r := <-h.Savepoint():
		return r.Path, r.Err
	case <-h.Done():
		return "", ErrNotRunning
	case <-ctx.Done():
		return "", fmt.Errorf("weir: savepoint: %w", ctx.Err())
	}
}

// StopWithSavepoint takes a savepoint and then stops the job; Run returns
// nil. This is the graceful stop: restarting resumes from the savepoint
// (it is also the newest checkpoint in checkpoint.dir).
func (j *Job) StopWithSavepoint(ctx context.Context) (string, error) {
	path, err := j.Savepoint(ctx)
	if err != nil {
		return "", err
	}
	j.mu.Lock()
	h := j.handle
	j.mu.Unlock()
	h.Stop(nil)
	return path, nil
}

// Drain stops the job with drain, like Flink's stop --drain: every source
// reads up to the end its partitions have now, every window fires, every
// result is acknowledged by Kafka, and Run returns nil.
func (j *Job) Drain() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.drain = true
	if j.handle != nil {
		j.handle.Drain()
	}
}

// Run runs the job until it is drained (returns nil), fails (returns the
// cause), or ctx ends (returns ctx's error after stopping every task).
func (j *Job) Run(ctx context.Context) error {
	j.mu.Lock()
	if j.started {
		j.mu.Unlock()
		return errors.New("weir: a job runs once; build a new one with NewJob")
	}
	j.started = true
	j.mu.Unlock()
	if j.opts.savepoint != "" && j.spec.Checkpoint.Interval == 0 {
		return errors.New("--from-savepoint needs checkpoints: set checkpoint.interval and checkpoint.dir")
	}
	if n := j.opts.memoryLimit; n != 0 {
		defer setMemoryLimit(n)()
		j.opts.log.Info("soft memory limit set (WithMemoryLimit)", "job", j.spec.Name, "limit", FormatMemoryLimit(n))
	}
	j.obs.running(time.Now())
	stopSampler, sampled := make(chan struct{}), make(chan struct{})
	go j.obs.sampler(stopSampler, sampled)
	defer func() { close(stopSampler); <-sampled }()
	policy := supervisor.NewRestartPolicy(j.spec.Restart, time.Now().UnixNano())
	for {
		started := time.Now()
		j.obs.setState("running")
		err := j.runOnce(ctx)
		var setup *setupError
		switch {
		case err == nil:
			j.obs.ended("finished", "")
			return nil
		case ctx.Err() != nil:
			j.obs.ended("finished", "the job was stopped")
			return fmt.Errorf("job %s: %w", j.spec.Name, ctx.Err())
		case errors.As(err, &setup):
			j.obs.failure(setup.err, time.Now())
			j.obs.ended("failed", "")
			return fmt.Errorf("job %s: %w", j.spec.Name, setup.err)
		case errors.Is(err, txsink.ErrReplayCommitted):
			// A restart restores the same checkpoint: refused again.
			var rc *txsink.ReplayCommittedError
			if errors.As(err, &rc) {
				err = rc
			}
			j.obs.failure(err, time.Now())
			j.obs.ended("failed", "")
			return fmt.Errorf("job %s: %w", j.spec.Name, err)
		}
		j.obs.failure(err, time.Now())
		delay, ok, why := policy.OnFailure(time.Now(), started)
		if !ok {
			j.obs.ended("failed", "")
			if policy.Restarts() > 0 {
				return fmt.Errorf("job %s: %w (gave up after %d restarts: %s)", j.spec.Name, err, policy.Restarts(), why)
			}
			return fmt.Errorf("job %s: %w", j.spec.Name, err)
		}
		j.obs.setState("restarting")
		// Logged before it is counted: whoever sees the count sees the
		// failure that caused it in the log.
		j.opts.log.Error("job failed; restarting from the latest complete checkpoint",
			"job", j.spec.Name, "err", err, "restart", policy.Restarts(), "strategy", policy.Config().Strategy, "delay", delay.Round(time.Millisecond))
		j.metrics.Restarts.Add(1)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return fmt.Errorf("job %s: %w", j.spec.Name, ctx.Err())
		}
	}
}

// ensureProgressTopic creates the exactly-once progress topic (compacted)
// when it is missing, replicated like the cluster allows (up to 3).
func (j *Job) ensureProgressTopic(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, n := range j.graph.sinks {
		if n.sink.pg != nil {
			continue // progress rows go to a table of the database
		}
		props := merge(j.spec.Kafka, n.sink.spec.Properties)
		brokers, err := countBrokers(cctx, j.spec.Brokers, props)
		if err != nil {
			return fmt.Errorf("sink %s: progress topic: %w", n.uid, err)
		}
		t := n.sink.spec.ProgressTopic
		if err := txsink.CreateProgressTopic(cctx, j.spec.Brokers, props, t, min(3, brokers)); err != nil {
			return fmt.Errorf("progress topic %s: %w; create it (compacted) yourself or fix the broker's permissions", t, err)
		}
	}
	return nil
}

// setupError marks a failure before any task ran that restarting cannot
// help: bad configuration (a refused property, credentials, permissions),
// a bad checkpoint directory, a refused checkpoint. Kafka being unreachable
// is not one: it goes through the restart strategy.
type setupError struct{ err error }

func (e *setupError) Error() string { return e.err.Error() }

// runOnce runs the job's actors once: restore, run until they end, stop
// them, wait (bounded) for the Kafka clients to close. A restart calls it
// again, so two runs never overlap.
func (j *Job) runOnce(ctx context.Context) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	defer system.Shutdown()

	if j.spec.Delivery == ExactlyOnce {
		if err := j.ensureProgressTopic(ctx); err != nil {
			if kafkaConfigError(err) {
				return &setupError{err}
			}
			// Kafka unreachable (a broker outage, a leader election):
			// a failure like any other, through the restart strategy.
			return fmt.Errorf("kafka not reachable before the start: %w", err)
		}
	}
	if err := j.checkPostgres(ctx); err != nil {
		if errors.Is(err, txsink.ErrConfig) {
			return &setupError{err}
		}
		// The server unreachable: through the restart strategy.
		return err
	}
	var state *stateSetup
	if j.spec.Checkpoint.Interval > 0 {
		var err error
		if state, err = j.setupState(ctx); err != nil {
			return &setupError{err}
		}
		if state.restored != nil {
			j.restoredFrom.Store(state.restored.ID)
		}
		defer func() {
			if state.lock != nil {
				state.lock.Close()
			}
		}()
	}
	var closed sync.WaitGroup
	plan := j.plan(&closed, state)
	h, err := supervisor.Start(system, plan, j.opts.log)
	if err != nil {
		if state != nil {
			state.close()
		}
		return &setupError{err}
	}
	j.mu.Lock()
	j.handle = h
	if j.drain { // a bounded source stops by itself
		h.Drain()
	}
	j.mu.Unlock()
	defer func() {
		j.mu.Lock()
		j.handle = nil
		j.mu.Unlock()
	}()

	var runErr error
	select {
	case <-h.Done():
		runErr = h.Err()
	case <-ctx.Done():
		h.Stop(nil)
		select {
		case <-h.Done():
		case <-time.After(j.opts.closeTimeout):
		}
		runErr = ctx.Err()
	}
	// Wait for consumers and producers to close, bounded: a restart must
	// never overlap the clients of the run before it.
	waited := make(chan struct{})
	go func() { closed.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(j.opts.closeTimeout):
		j.opts.log.Warn("Kafka clients did not close in time", "timeout", j.opts.closeTimeout)
	}
	return runErr
}

func merge(a, b map[string]string) map[string]string {
	m := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

// checkpointing is the checkpoint set-up of task, nil with checkpoints off.
func (st *stateSetup) checkpointing(task string) *actors.Checkpointing {
	if st == nil {
		return nil
	}
	return st.cps[task]
}

// checkpointPlan is the coordinator's plan, nil with checkpoints off.
func (j *Job) checkpointPlan(state *stateSetup) *supervisor.CheckpointPlan {
	if state == nil {
		return nil
	}
	s := j.spec
	c := s.Checkpoint
	return &supervisor.CheckpointPlan{
		Interval: c.Interval, Timeout: c.Timeout, MinPause: c.MinPause,
		MaxConcurrent: c.MaxConcurrent, TolerableFailures: c.TolerableFailures,
		FS: state.fs, Root: state.root, JobName: s.Name, Fingerprint: j.fingerprint(),
		Retain: c.Retain, After: state.after, OnEvent: j.onCheckpoint,
		OnComplete: func(id uint64, savepoint bool) {
			state.removeStaleSpills()
			j.onComplete(id, savepoint)
		},
		// The exactly-once sinks commit their last epoch on the first
		// checkpoint after every source finished: take it at once.
		CheckpointWhenSourcesFinish: s.Delivery == ExactlyOnce,
	}
}

// plan turns the job's graph into the supervisor's stages.
func (j *Job) plan(closed *sync.WaitGroup, state *stateSetup) supervisor.Plan {
	return j.dataflowPlan(closed, state)
}

// JSONExtract returns the extraction the job uses by default: the key from
// the top-level JSON field keyField (string or number), the event time in
// milliseconds from tsField, and the summed value from valueField (none when
// empty). Use it to wrap your own JobSpec.Extract around the default.
func JSONExtract(keyField, tsField, valueField string) func(value []byte) (key []byte, tsMillis int64, v float64, err error) {
	return actors.JSONExtractor(keyField, tsField, valueField)
}

// countBrokers asks the cluster at bootstrap how many brokers it has,
// with the client properties props.
func countBrokers(ctx context.Context, bootstrap string, props map[string]string) (int, error) {
	a, err := kafkaconf.NewAdmin(bootstrap, props)
	if err != nil {
		return 0, err
	}
	defer a.Close()
	timeout := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	md, err := a.GetMetadata(nil, false, int(timeout.Milliseconds()))
	if err != nil {
		return 0, fmt.Errorf("metadata from %s: %w", bootstrap, err)
	}
	return max(1, len(md.Brokers)), nil
}

// kafkaConfigError reports whether err, from a Kafka client set up or call,
// is the configuration's fault (a property the client refuses, failed
// authentication, missing authorization, a broker policy or setting that
// refuses the request), so that retrying cannot help. Anything else
// (timeouts, transport errors, all brokers down) counts as Kafka being
// unreachable for now.
func kafkaConfigError(err error) bool {
	var ke kafka.Error
	if !errors.As(err, &ke) {
		return false
	}
	switch ke.Code() {
	case kafka.ErrInvalidArg, kafka.ErrAuthentication, kafka.ErrSaslAuthenticationFailed,
		kafka.ErrTopicAuthorizationFailed, kafka.ErrClusterAuthorizationFailed,
		kafka.ErrGroupAuthorizationFailed, kafka.ErrTransactionalIDAuthorizationFailed,
		kafka.ErrPolicyViolation, kafka.ErrInvalidConfig, kafka.ErrInvalidReplicationFactor,
		kafka.ErrInvalidPartitions, kafka.ErrTopicException, kafka.ErrUnsupportedSaslMechanism,
		kafka.ErrIllegalSaslState, kafka.ErrUnsupportedVersion, kafka.ErrUnsupportedFeature:
		return true
	}
	return false
}
