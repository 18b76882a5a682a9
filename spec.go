package weir

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weirstream/weir/internal/obs"
	"github.com/weirstream/weir/operator/window"
	"github.com/weirstream/weir/snapshot"
	"github.com/weirstream/weir/supervisor"
	"github.com/weirstream/weir/txsink"
)

// JobSpec describes a job. A window job (Kind window, the default) reads
// JSON records from a Kafka topic, keys them by a field, assigns them to
// event-time tumbling windows, aggregates count and sum per key and window,
// and writes one JSON result per key and window to a Kafka topic. A
// passthrough job (Kind passthrough) copies every record of the source topic
// to the sink topic unchanged.
//
// The job file read by `engine run --config` maps one to one onto this
// struct; the YAML key of each field is given in its comment. Every error
// returned by Validate names that key.
type JobSpec struct {
	// Name identifies the job (job file: name). It names the checkpoint
	// directory and, with exactly-once delivery, the transactional ids.
	// Letters, digits, '.', '_' and '-' only.
	Name string

	// Brokers is the Kafka bootstrap list, "host:port[,host:port...]"
	// (job file: brokers).
	Brokers string

	// Kind is what the job does (job file: kind): KindWindow (default)
	// or KindPassthrough. A passthrough job copies every record of the
	// source topic to the sink topic unchanged (the key and value bytes, in
	// the order of each source partition; the records get new timestamps)
	// and uses none of KeyField, TimestampField, Window, Aggregate and
	// Extract: Validate refuses them.
	Kind JobKind

	// Source is the Kafka topic to read (job file: source).
	Source SourceSpec

	// KeyField is the top-level JSON field whose value is the key
	// (job file: key_field). Strings and numbers are accepted.
	KeyField string

	// TimestampField is the top-level JSON field holding the event time in
	// milliseconds since the Unix epoch (job file: timestamp_field).
	TimestampField string

	// Window is the event-time tumbling window (job file: window).
	Window WindowSpec

	// Aggregate says what is computed per key and window (job file: aggregate).
	Aggregate AggregateSpec

	// Sink is the Kafka topic results are written to (job file: sink).
	Sink SinkSpec

	// Delivery is the delivery guarantee (job file: delivery).
	Delivery Delivery

	// Checkpoint configures checkpoints (job file: checkpoint).
	Checkpoint CheckpointSpec

	// Parallelism is the number of subtasks of every operator
	// (job file: parallelism). Default 1.
	Parallelism int

	// BadRecords says what happens to a record that is not a JSON object or
	// lacks the key or timestamp field, or whose event time is beyond
	// Window.MaxFuture ahead of the processing clock (job file:
	// bad_records). Default fail.
	BadRecords BadRecordPolicy
	// DeadLetter is where BadRecordsDeadLetter sends bad records (job
	// file: dead_letter).
	DeadLetter DeadLetterSpec

	// Restart says how the job restarts after a failure, from the latest
	// complete checkpoint (job file: restart). Default: exponential-delay
	// when checkpoints are on, none when they are off (as in Flink).
	Restart RestartSpec

	// Memory is the soft memory limit that `engine run` sets for its
	// process (job file: memory); a program embedding weir opts in with
	// WithMemoryLimit instead.
	Memory MemorySpec

	// HTTP is where `engine run` serves the job's status and metrics (job
	// file: http); a program embedding weir serves Job.Status and
	// Job.Gatherer itself.
	HTTP HTTPSpec

	// Kafka holds librdkafka properties passed through to both the consumer
	// and the producer (job file: kafka), for example security settings.
	// Properties the engine manages itself are refused by Validate.
	Kafka map[string]string

	// Extract, when set, replaces the JSON field extraction (Go API only):
	// it returns the key, the event time in milliseconds and the value that
	// is summed. An error makes the record a bad record.
	Extract func(value []byte) (key []byte, tsMillis int64, v float64, err error) `yaml:"-"`
}

// HTTPSpec is the HTTP listener of `engine run` (job file: http).
type HTTPSpec struct {
	// Addr is host:port to serve GET /metrics (Prometheus) and the REST
	// status (/api/job, /api/checkpoints, /api/operators/{id}) on; a bare
	// port or ":port" binds 127.0.0.1. Empty: no listener. engine run
	// --http wins over it.
	Addr string
}

// JobKind says what a job does.
type JobKind string

// Job kinds.
const (
	// KindWindow keys, windows and aggregates JSON records.
	KindWindow JobKind = "window"
	// KindPassthrough copies records unchanged: source subtask i writes
	// straight to sink subtask i.
	KindPassthrough JobKind = "passthrough"
	// KindDataflow is a job whose graph a program built with NewEnv; it
	// cannot come from a job file.
	KindDataflow JobKind = "dataflow"
)

// SourceSpec is the Kafka source (job file: source).
type SourceSpec struct {
	// Topic to read (job file: source.topic). Required.
	Topic string
	// Group is the consumer group id (job file: source.group). It is used
	// for the group start position and for committing offsets for
	// monitoring; partitions are assigned by the engine, not by the group.
	// Default: "weir-" + job name.
	Group string
	// Start is where reading starts when there is no checkpoint to restore
	// (job file: source.start).
	Start StartSpec
	// Bounded makes the source finite (job file: source.bounded): with
	// "latest" it stops at the offsets that were the end of each partition
	// when the job started, with "timestamp" before the first record whose
	// timestamp is at or after BoundedTimestamp (else at that end), with
	// "offsets" before the offsets in BoundedOffsets (partitions not listed
	// as latest). The job then fires every window, flushes the sink and
	// ends. Empty (default): unbounded.
	Bounded Bound
	// BoundedTimestamp is where a source bounded by "timestamp" stops
	// (job file: source.bounded_timestamp).
	BoundedTimestamp time.Time
	// BoundedOffsets maps partition to the offset a source bounded by
	// "offsets" stops before (job file: source.bounded_offsets).
	BoundedOffsets map[int32]int64
	// Isolation is the consumer's isolation level (job file:
	// source.isolation): read_committed (default) reads only committed
	// transactional records, read_uncommitted reads them all.
	Isolation Isolation
	// DisableOffsetCommit turns off committing the offsets of a completed
	// checkpoint to the consumer group (job file:
	// source.commit_offsets_on_checkpoint: false). Committed offsets are for
	// monitoring and the group start position; the engine never reads them
	// back for fault tolerance. Without checkpoints it has no effect: the
	// client's enable.auto.commit decides.
	DisableOffsetCommit bool
	// PartitionDiscoveryInterval is how often the source looks for new
	// partitions of the topic; new ones are read from their earliest offset
	// (job file: source.partition_discovery_interval, 0 turns it off).
	// Default 5m, as in Flink; NoPartitionDiscovery turns it off.
	PartitionDiscoveryInterval time.Duration
	// Properties are librdkafka consumer properties, applied after Kafka
	// (job file: source.properties).
	Properties map[string]string
}

// Bound says where a bounded source stops.
type Bound string

// Bounds.
const (
	Unbounded      Bound = ""
	BoundLatest    Bound = "latest"
	BoundTimestamp Bound = "timestamp"
	BoundOffsets   Bound = "offsets"
)

// Isolation is the consumer's isolation level.
type Isolation string

// Isolation levels.
const (
	ReadCommitted   Isolation = "read_committed"
	ReadUncommitted Isolation = "read_uncommitted"
)

// DefaultPartitionDiscoveryInterval is the default of
// SourceSpec.PartitionDiscoveryInterval (Flink's).
const DefaultPartitionDiscoveryInterval = 5 * time.Minute

// NoPartitionDiscovery as SourceSpec.PartitionDiscoveryInterval turns
// partition discovery off (job file: 0).
const NoPartitionDiscovery time.Duration = -1

// StartMode says where a source starts when no checkpoint is restored.
type StartMode string

// Start modes, as in Flink's OffsetsInitializer.
const (
	StartGroup     StartMode = "group"     // committed group offsets, else auto_offset_reset
	StartEarliest  StartMode = "earliest"  // the first offset of every partition
	StartLatest    StartMode = "latest"    // the end of every partition
	StartTimestamp StartMode = "timestamp" // first record with timestamp >= Timestamp, else the end
	StartOffsets   StartMode = "offsets"   // Offsets per partition; others as StartGroup
)

// StartSpec is the start position (job file: source.start).
type StartSpec struct {
	// Mode is group (default), earliest, latest, timestamp or offsets
	// (job file: source.start.mode).
	Mode StartMode
	// AutoOffsetReset applies to partitions without a committed offset in
	// group and offsets modes: earliest (default), latest or none; none
	// makes such a partition an error (job file: source.start.auto_offset_reset).
	AutoOffsetReset string
	// Timestamp for timestamp mode (job file: source.start.timestamp,
	// milliseconds since the epoch or RFC 3339).
	Timestamp time.Time
	// Offsets for offsets mode, partition to offset
	// (job file: source.start.offsets).
	Offsets map[int32]int64
}

// WindowSpec is an event-time window (job file: window).
type WindowSpec struct {
	// Kind is WindowTumbling (default), WindowSliding or WindowSession
	// (job file: window.kind).
	Kind string
	// Size of each window (job file: window.size), e.g. 10s. Required for
	// tumbling and sliding windows; session windows have none.
	Size time.Duration
	// Slide is the time between the starts of sliding windows (job file:
	// window.slide). Required for sliding windows.
	Slide time.Duration
	// Gap closes a session after this long without records of its key
	// (job file: window.gap). Required for session windows.
	Gap time.Duration
	// Offset shifts the starts of tumbling and sliding windows from
	// multiples of their size (slide) since the epoch, e.g. -8h for days
	// that start at midnight in UTC+8 (job file: window.offset). Default 0.
	Offset time.Duration
	// AllowedLateness keeps a window's state this long after the
	// watermark passed its end: a record that comes in that time updates
	// the window, whose result is written again (job file:
	// window.allowed_lateness). Default 0.
	AllowedLateness time.Duration
	// LateTopic receives the records that come after their windows'
	// allowed lateness, as they were read (job file: window.late_topic).
	// Empty: they are counted (Stats.LateDropped) and dropped.
	LateTopic string
	// OutOfOrderness is how far behind the newest event time seen on a
	// partition an event may arrive and still be counted
	// (job file: window.out_of_orderness). Default 0.
	OutOfOrderness time.Duration
	// IdleTimeout: a partition with no records for this long stops
	// holding back the watermark (job file: window.idle_timeout).
	// 0 (default) disables idleness.
	IdleTimeout time.Duration
	// MaxFuture bounds how far a record's event time may be ahead of the
	// processing clock (the wall clock when the source reads it): a record
	// beyond it is a bad record (see BadRecords), refused before its time
	// can move the watermark, since one record from the year 2500 would
	// make every later record late, also after a restore
	// (job file: window.max_future). 0 means DefaultMaxFuture;
	// NoMaxFuture turns the bound off.
	MaxFuture time.Duration
}

// DefaultMaxFuture is the default of WindowSpec.MaxFuture and of the
// MaxFuture source option.
const DefaultMaxFuture = time.Hour

// NoMaxFuture as WindowSpec.MaxFuture, or as MaxFuture's bound, lets a
// record's event time be any distance ahead of the processing clock.
const NoMaxFuture time.Duration = -1

// Window kinds (WindowSpec.Kind).
const (
	WindowTumbling = "tumbling"
	WindowSliding  = "sliding"
	WindowSession  = "session"
)

// AggregateSpec says what is aggregated (job file: aggregate).
type AggregateSpec struct {
	// ValueField is the numeric top-level JSON field that is summed
	// (job file: aggregate.value_field). When empty only records are
	// counted and sum is 0.
	ValueField string
	// Functions are the aggregates of each window's result, in this
	// order: count, sum, min, max, avg (job file: aggregate.functions).
	// Default count and sum.
	Functions []string
}

// aggregateFunctions are the built-in aggregates of the job file.
var aggregateFunctions = []string{"count", "sum", "min", "max", "avg"}

// SinkSpec is the Kafka sink (job file: sink).
type SinkSpec struct {
	// Kind is where results go (job file: sink.kind): SinkKafka (default,
	// the topic Topic) or SinkPostgres (the PostgreSQL table Table, see
	// DSN, Table, Mode and Columns).
	Kind SinkKind
	// Topic to write results to (job file: sink.topic). Required for
	// Kafka.
	Topic string
	// DSN is the PostgreSQL connection string of a postgres sink (job
	// file: sink.dsn), e.g. postgres://weir:PASSWORD@db:5432/analytics.
	// Its password is a secret: Redacted and every message hide it.
	DSN string
	// Table is the PostgreSQL table of a postgres sink (job file:
	// sink.table), optionally schema-qualified. It must exist with the
	// mapped columns; an exactly-once sink also needs the server's
	// max_prepared_transactions above zero. Both are checked at start.
	Table string
	// Mode is how a postgres sink writes (job file: sink.mode):
	// PostgresInsert (default, one row per window result) or
	// PostgresUpsert (INSERT ... ON CONFLICT on the columns of key and
	// window_start, which need a unique constraint).
	Mode PostgresMode
	// Columns maps the postgres sink's table columns to window-result
	// fields (job file: sink.columns, column: field): key, window_start,
	// window_end and the aggregate functions (count, sum, min, max, avg).
	// Default: each field into the column of its name.
	Columns map[string]string
	// TransactionalIDPrefix prefixes the transactional ids used with
	// exactly-once delivery (job file: sink.transactional_id_prefix). The
	// ids are <prefix>-<job>-sink-<subtask>-<slot>, stable across restarts.
	// Default: "weir".
	TransactionalIDPrefix string
	// ProgressTopic receives the exactly-once progress markers, written in
	// the same transaction as the results (job file: sink.progress_topic).
	// Created (compacted) when missing. Default: <topic>.weir-progress.
	ProgressTopic string
	// TransactionTimeout is transaction.timeout.ms of the exactly-once
	// producers (job file: sink.transaction_timeout). It must cover a
	// checkpoint interval plus the checkpoint timeout and stay within the
	// broker's transaction.max.timeout.ms; both are checked at start.
	// Default: chosen from those.
	TransactionTimeout time.Duration
	// Properties are librdkafka producer properties, applied after Kafka
	// (job file: sink.properties).
	Properties map[string]string
	// MaxPendingBytes bounds, per sink subtask, the records an exactly-once
	// sink holds for its uncommitted epochs: the epoch being written and
	// the pre-committed ones waiting for their checkpoint to complete,
	// which are saved in the checkpoint (job file: sink.max_pending_bytes).
	// Counted as they are saved: keys, values and a few bytes per record.
	// A write over it fails the job with an error naming
	// sink.max_pending_bytes; raise it or checkpoint more often. Between
	// MinPendingBytes and MaxPendingBytesLimit; 0 means
	// DefaultMaxPendingBytes (128 MiB).
	MaxPendingBytes int64
}

// Bounds of SinkSpec.MaxPendingBytes (job file: sink.max_pending_bytes).
// The largest leaves room under the cap of a task's operator state
// (snapshot.MaxOpStateBytes, 256 MiB), which holds the pending records, so
// the pending limit always trips first, with an error that names it.
const (
	DefaultMaxPendingBytes = txsink.DefaultMaxPendingBytes
	MinPendingBytes        = 1 << 10
	MaxPendingBytesLimit   = snapshot.MaxOpStateBytes - 1<<20
)

// validPendingBytes checks a MaxPendingBytes; 0 (the default) is valid.
func validPendingBytes(n int64) error {
	switch {
	case n == 0:
		return nil
	case n < MinPendingBytes:
		return fmt.Errorf("%d bytes is below the least, %s; the default is %s", n, FormatBytes(MinPendingBytes), FormatBytes(DefaultMaxPendingBytes))
	case n > MaxPendingBytesLimit:
		return fmt.Errorf("%s is over the largest, %s: the pending records are saved in each checkpoint, whose state per task is capped at %s; checkpoint more often (lower checkpoint.interval) or raise parallelism instead",
			FormatBytes(n), FormatBytes(MaxPendingBytesLimit), FormatBytes(snapshot.MaxOpStateBytes))
	}
	return nil
}

// FormatBytes writes n as the job file does: 256MiB, 4KiB, or 1000 (bytes)
// when it is not a whole number of KiB.
func FormatBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// Delivery is the delivery guarantee of the sink.
type Delivery string

// Delivery guarantees.
const (
	AtLeastOnce Delivery = "at-least-once"
	ExactlyOnce Delivery = "exactly-once"
)

// BadRecordPolicy says what happens to a record the job cannot read.
type BadRecordPolicy string

// Bad record policies.
const (
	// BadRecordsFail stops the job with an error naming the topic,
	// partition and offset of the record.
	BadRecordsFail BadRecordPolicy = "fail"
	// BadRecordsDeadLetter writes the record to DeadLetter.Topic, with its
	// key and value and headers naming its source topic, partition, offset
	// and what is wrong with it (see weir.DeadLetter), counts it
	// (Stats().BadRecords, Stats().DeadLettered), and goes on. With
	// exactly-once delivery the dead letters are written in the same Kafka
	// transactions as the results of their epoch: each exactly once.
	BadRecordsDeadLetter BadRecordPolicy = "dead-letter"
)

// DeadLetterSpec configures the dead-letter topic (job file: dead_letter).
type DeadLetterSpec struct {
	// Topic receives the records the job cannot read (job file:
	// dead_letter.topic). It must exist and differ from the source, sink
	// and progress topics.
	Topic string
}

// CheckpointSpec configures checkpoints (job file: checkpoint).
type CheckpointSpec struct {
	// Interval between checkpoints (job file: checkpoint.interval);
	// 0 turns checkpointing off.
	Interval time.Duration
	// Dir holds the checkpoints (job file: checkpoint.dir). Required when
	// Interval > 0.
	Dir string
	// Timeout after which a checkpoint is aborted
	// (job file: checkpoint.timeout). Default 10m, as in Flink.
	Timeout time.Duration
	// MinPause between the end of one checkpoint and the start of the next
	// (job file: checkpoint.min_pause). Default 0.
	MinPause time.Duration
	// MaxConcurrent checkpoints in flight (job file: checkpoint.max_concurrent).
	// Default 1.
	MaxConcurrent int
	// Retain is how many complete checkpoints are kept
	// (job file: checkpoint.retain). Default 3.
	Retain int
	// TolerableFailures is how many consecutive failed checkpoints the job
	// tolerates before it fails (job file: checkpoint.tolerable_failures).
	// Default 0.
	TolerableFailures int
	// Mode is exactly-once (default: barriers are aligned, so a checkpoint
	// holds exactly the records before it) or at-least-once (no alignment:
	// nothing is held, and after a restore some records count twice)
	// (job file: checkpoint.mode).
	Mode CheckpointMode
}

// CheckpointMode is how barriers are aligned.
type CheckpointMode string

// Checkpoint modes, as in Flink.
const (
	CheckpointExactlyOnce CheckpointMode = "exactly-once"
	CheckpointAtLeastOnce CheckpointMode = "at-least-once"
)

// RestartSpec configures the restart strategy (job file: restart):
// strategy none, fixed-delay (attempts, delay), exponential-delay (delay,
// max_delay, multiplier, reset_after, jitter) or failure-rate (max_failures
// per interval, delay). Zero fields take Flink's defaults.
type RestartSpec = supervisor.RestartConfig

// Restart strategies, as in Flink (RestartSpec.Strategy).
const (
	RestartNone             = supervisor.RestartNone
	RestartFixedDelay       = supervisor.RestartFixedDelay
	RestartExponentialDelay = supervisor.RestartExponentialDelay
	RestartFailureRate      = supervisor.RestartFailureRate
)

// Defaults used by WithDefaults.
const (
	DefaultParallelism       = 1
	DefaultCheckpointTimeout = 10 * time.Minute
	DefaultCheckpointRetain  = 3
	MaxParallelism           = 128 // also the number of key groups
)

// managedKafkaProperties are set by the engine; the job may not set them.
var managedKafkaProperties = map[string]string{
	"bootstrap.servers": "brokers",
	"group.id":          "source.group",
	"transactional.id":  "sink.transactional_id_prefix",
	"isolation.level":   "source.isolation",
}

// WithDefaults returns a copy of s with defaults filled in.
func (s JobSpec) WithDefaults() JobSpec {
	if s.Kind == "" {
		s.Kind = KindWindow
	}
	if s.Parallelism == 0 {
		s.Parallelism = DefaultParallelism
	}
	if s.Source.Group == "" && s.Name != "" {
		s.Source.Group = "weir-" + s.Name
	}
	if s.Source.Start.Mode == "" {
		s.Source.Start.Mode = StartGroup
	}
	if s.Source.Start.AutoOffsetReset == "" {
		s.Source.Start.AutoOffsetReset = "earliest"
	}
	if s.Source.Isolation == "" {
		s.Source.Isolation = ReadCommitted
	}
	if s.Source.PartitionDiscoveryInterval == 0 {
		s.Source.PartitionDiscoveryInterval = DefaultPartitionDiscoveryInterval
	}
	if s.Sink.TransactionalIDPrefix == "" {
		s.Sink.TransactionalIDPrefix = "weir"
	}
	if s.Sink.Kind == "" {
		s.Sink.Kind = SinkKafka
	}
	if s.Sink.Kind == SinkPostgres && s.Sink.Mode == "" {
		s.Sink.Mode = PostgresInsert
	}
	if s.Sink.ProgressTopic == "" && s.Sink.Topic != "" {
		s.Sink.ProgressTopic = s.Sink.Topic + ".weir-progress"
	}
	if s.Delivery == "" {
		s.Delivery = AtLeastOnce
	}
	if s.BadRecords == "" {
		s.BadRecords = BadRecordsFail
	}
	if s.Kind == KindWindow && s.Window.Kind == "" {
		s.Window.Kind = WindowTumbling
	}
	if s.Kind == KindWindow && s.Window.MaxFuture == 0 {
		s.Window.MaxFuture = DefaultMaxFuture
	}
	if s.Checkpoint.Timeout == 0 {
		s.Checkpoint.Timeout = DefaultCheckpointTimeout
	}
	if s.Checkpoint.MaxConcurrent == 0 {
		s.Checkpoint.MaxConcurrent = 1
	}
	if s.Checkpoint.Retain == 0 {
		s.Checkpoint.Retain = DefaultCheckpointRetain
	}
	if s.Checkpoint.Mode == "" {
		s.Checkpoint.Mode = CheckpointExactlyOnce
	}
	if s.Restart.Strategy == "" {
		s.Restart.Strategy = supervisor.RestartNone
		if s.Checkpoint.Interval > 0 {
			s.Restart.Strategy = supervisor.RestartExponentialDelay
		}
	}
	s.Restart = s.Restart.WithDefaults()
	return s
}

// SpecError is a validation error: Key is the job file key that is wrong.
type SpecError struct {
	Key string
	Msg string
}

func (e *SpecError) Error() string { return e.Key + ": " + e.Msg }

func specErr(key, format string, args ...any) error {
	return &SpecError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks s (after WithDefaults) without touching the network. The
// error names the job file key and says how to fix it.
func (s JobSpec) Validate() error {
	if s.Name == "" {
		return specErr("name", "required: set a job name such as name: clicks-per-user")
	}
	for _, r := range s.Name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return specErr("name", "%q has the character %q; use only letters, digits, '.', '_' and '-'", s.Name, r)
		}
	}
	if len(s.Name) > 200 {
		return specErr("name", "is %d characters long; use at most 200", len(s.Name))
	}
	if strings.TrimSpace(s.Brokers) == "" {
		return specErr("brokers", "required: set the Kafka bootstrap list, e.g. brokers: 127.0.0.1:9092")
	}
	for _, b := range strings.Split(s.Brokers, ",") {
		b = strings.TrimSpace(b)
		i := strings.LastIndex(b, ":")
		if i <= 0 || i == len(b)-1 {
			return specErr("brokers", "%q is not host:port; write e.g. 127.0.0.1:9092", b)
		}
		for _, c := range b[i+1:] {
			if c < '0' || c > '9' {
				return specErr("brokers", "%q has a port that is not a number; write e.g. 127.0.0.1:9092", b)
			}
		}
		if port, err := strconv.Atoi(b[i+1:]); err != nil || port < 1 || port > 65535 {
			return specErr("brokers", "%q has port %s; ports are 1 to 65535", b, b[i+1:])
		}
	}
	if s.Kind == KindDataflow {
		// Sources and sinks are nodes of the graph, checked when it is built
		// (NewJob refuses this kind: only NewEnv builds such a graph).
		if s.Extract != nil {
			return specErr("kind", "a dataflow job (weir.NewEnv) does not use JobSpec.Extract; decode records with the source's format")
		}
	} else if err := s.validateIO(); err != nil {
		return err
	}
	switch s.Delivery {
	case AtLeastOnce, ExactlyOnce:
	default:
		return specErr("delivery", "%q is not a delivery guarantee; use at-least-once or exactly-once", s.Delivery)
	}
	switch s.BadRecords {
	case BadRecordsFail:
		if s.DeadLetter.Topic != "" {
			return specErr("dead_letter.topic", "is set but bad_records is fail; set bad_records: dead-letter to use it, or remove dead_letter")
		}
	case BadRecordsDeadLetter:
		if s.Sink.Kind == SinkPostgres {
			return specErr("bad_records", "dead-letter needs a Kafka sink (the dead letters go into the sink's Kafka transaction); with sink.kind: postgres use bad_records: fail")
		}
		if err := s.validateDeadLetter(); err != nil {
			return err
		}
	default:
		return specErr("bad_records", "%q is not a policy; use fail or dead-letter", s.BadRecords)
	}
	if s.Parallelism < 1 || s.Parallelism > MaxParallelism {
		return specErr("parallelism", "must be between 1 and %d, got %d", MaxParallelism, s.Parallelism)
	}
	if err := s.Checkpoint.validate(s.Delivery); err != nil {
		return err
	}
	if err := validMemoryLimit(s.Memory.Limit); err != nil {
		return specErr("memory.limit", "%v", err)
	}
	if s.HTTP.Addr != "" {
		if _, err := obs.ListenAddr(s.HTTP.Addr); err != nil {
			return specErr("http.addr", "%v", err)
		}
	}
	if err := s.Restart.Validate("restart"); err != nil {
		key, msg, _ := strings.Cut(err.Error(), ": ")
		return specErr(key, "%s", msg)
	}
	for _, props := range []struct {
		key string
		m   map[string]string
	}{{"kafka", s.Kafka}, {"source.properties", s.Source.Properties}, {"sink.properties", s.Sink.Properties}} {
		keys := make([]string, 0, len(props.m))
		for k := range props.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if instead, ok := managedKafkaProperties[k]; ok {
				return specErr(props.key+"."+k, "is set by the engine; use %s instead", instead)
			}
		}
	}
	return nil
}

// validateIO checks the source, the sink and the kind of a job-file job.
func (s JobSpec) validateIO() error {
	if s.Source.Topic == "" {
		return specErr("source.topic", "required: name the topic to read")
	}
	if err := validTopic("source.topic", s.Source.Topic); err != nil {
		return err
	}
	if err := s.Source.validate(); err != nil {
		return err
	}
	switch s.Kind {
	case KindWindow:
		if err := s.validateWindow(); err != nil {
			return err
		}
	case KindPassthrough:
		if err := s.validatePassthrough(); err != nil {
			return err
		}
	default:
		return specErr("kind", "%q is not a job kind; use window (key, window and aggregate JSON records) or passthrough (copy records unchanged)", s.Kind)
	}
	switch s.Sink.Kind {
	case SinkKafka:
	case SinkPostgres:
		return s.validatePostgresSink()
	default:
		return specErr("sink.kind", "%q is not a sink kind; use kafka or postgres", s.Sink.Kind)
	}
	if s.Sink.DSN != "" || s.Sink.Table != "" || s.Sink.Mode != "" || s.Sink.Columns != nil {
		return specErr("sink.kind", "sink.dsn, sink.table, sink.mode and sink.columns are for sink.kind: postgres; set it, or remove them")
	}
	if s.Sink.Topic == "" {
		return specErr("sink.topic", "required: name the topic to write results to")
	}
	if err := validTopic("sink.topic", s.Sink.Topic); err != nil {
		return err
	}
	if err := validTopic("sink.progress_topic", s.Sink.ProgressTopic); err != nil {
		return err
	}
	if s.Sink.ProgressTopic == s.Sink.Topic || s.Sink.ProgressTopic == s.Source.Topic {
		return specErr("sink.progress_topic", "%q is also the source or sink topic; progress markers need a topic of their own", s.Sink.ProgressTopic)
	}
	if s.Sink.TransactionTimeout < 0 {
		return specErr("sink.transaction_timeout", "must not be negative, got %v", s.Sink.TransactionTimeout)
	}
	if err := validPendingBytes(s.Sink.MaxPendingBytes); err != nil {
		return specErr("sink.max_pending_bytes", "%v", err)
	}
	if s.Sink.Topic == s.Source.Topic {
		return specErr("sink.topic", "is the same topic as source.topic (%q); write results to another topic", s.Sink.Topic)
	}
	return nil
}

// validateDeadLetter checks dead_letter with bad_records: dead-letter.
func (s JobSpec) validateDeadLetter() error {
	t := s.DeadLetter.Topic
	if t == "" {
		return specErr("dead_letter.topic", "required with bad_records: dead-letter: name an existing topic for the records the job cannot read")
	}
	if err := validTopic("dead_letter.topic", t); err != nil {
		return err
	}
	for _, o := range []struct{ key, topic string }{{"source.topic", s.Source.Topic}, {"sink.topic", s.Sink.Topic}, {"sink.progress_topic", s.Sink.ProgressTopic}} {
		if t == o.topic {
			return specErr("dead_letter.topic", "%q is also %s; dead letters need a topic of their own", t, o.key)
		}
	}
	return nil
}

// validateWindow checks the keys of a window job.
func (s JobSpec) validateWindow() error {
	if s.KeyField == "" && s.Extract == nil {
		return specErr("key_field", "required: name the JSON field to key by, e.g. key_field: user")
	}
	if s.TimestampField == "" && s.Extract == nil {
		return specErr("timestamp_field", "required: name the JSON field with the event time in milliseconds, e.g. timestamp_field: ts")
	}
	w := s.Window
	millis := func(key string, d time.Duration) error {
		if d%time.Millisecond != 0 {
			return specErr(key, "must be a whole number of milliseconds, got %v", d)
		}
		return nil
	}
	positive := func(key string, d time.Duration, example string) error {
		switch {
		case d == 0 && key == "window.size":
			return specErr(key, "required: set the window length, e.g. window.size: 10s")
		case d == 0:
			return specErr(key, "required for %s windows: set it, e.g. %s: %s", w.Kind, key, example)
		case d < 0:
			return specErr(key, "must be a positive duration such as %s, got %v", example, d)
		}
		return millis(key, d)
	}
	switch w.Kind {
	case WindowTumbling, WindowSliding:
		if err := positive("window.size", w.Size, "10s"); err != nil {
			return err
		}
		if w.Gap != 0 {
			return specErr("window.gap", "only session windows have a gap; remove it, or set window.kind: session")
		}
		step, stepKey := w.Size, "window.size"
		if w.Kind == WindowSliding {
			if err := positive("window.slide", w.Slide, "5s"); err != nil {
				return err
			}
			if w.Size/w.Slide > window.MaxWindowsPerRecord {
				return specErr("window.slide", "%v puts each record in %d windows of %v; at most %d: raise window.slide", w.Slide, w.Size/w.Slide, w.Size, window.MaxWindowsPerRecord)
			}
			step, stepKey = w.Slide, "window.slide"
		} else if w.Slide != 0 {
			return specErr("window.slide", "only sliding windows slide; remove it, or set window.kind: sliding")
		}
		if err := millis("window.offset", w.Offset); err != nil {
			return err
		}
		if w.Offset <= -step || w.Offset >= step {
			return specErr("window.offset", "must be shorter than %s (%v), got %v", stepKey, step, w.Offset)
		}
	case WindowSession:
		if err := positive("window.gap", w.Gap, "30s"); err != nil {
			return err
		}
		for _, k := range []struct {
			key string
			set bool
		}{{"window.size", w.Size != 0}, {"window.slide", w.Slide != 0}, {"window.offset", w.Offset != 0}} {
			if k.set {
				return specErr(k.key, "session windows have no %s: a session lasts while records come within window.gap; remove it", lastName(k.key))
			}
		}
	default:
		return specErr("window.kind", "%q is not a window kind; use tumbling, sliding or session", w.Kind)
	}
	if w.AllowedLateness < 0 {
		return specErr("window.allowed_lateness", "must not be negative, got %v", w.AllowedLateness)
	}
	if err := millis("window.allowed_lateness", w.AllowedLateness); err != nil {
		return err
	}
	if w.LateTopic != "" {
		if err := validTopic("window.late_topic", w.LateTopic); err != nil {
			return err
		}
		if w.LateTopic == s.Source.Topic || w.LateTopic == s.Sink.Topic {
			return specErr("window.late_topic", "%q is also the source or sink topic; give late records a topic of their own", w.LateTopic)
		}
	}
	seen := map[string]bool{}
	for _, f := range s.Aggregate.Functions {
		if !slices.Contains(aggregateFunctions, f) {
			return specErr("aggregate.functions", "%q is not an aggregate; use count, sum, min, max or avg", f)
		}
		if seen[f] {
			return specErr("aggregate.functions", "%q is listed twice; list each aggregate once", f)
		}
		seen[f] = true
		if (f == "min" || f == "max" || f == "avg") && s.Aggregate.ValueField == "" && s.Extract == nil {
			return specErr("aggregate.functions", "%s needs aggregate.value_field: name the numeric field it is computed over", f)
		}
	}
	if s.Aggregate.Functions != nil && len(s.Aggregate.Functions) == 0 {
		return specErr("aggregate.functions", "is empty; list at least one of count, sum, min, max, avg, or remove it for count and sum")
	}
	if s.Window.OutOfOrderness < 0 {
		return specErr("window.out_of_orderness", "must not be negative, got %v", s.Window.OutOfOrderness)
	}
	if s.Window.IdleTimeout < 0 {
		return specErr("window.idle_timeout", "must not be negative, got %v", s.Window.IdleTimeout)
	}
	if s.Window.MaxFuture < 0 && s.Window.MaxFuture != NoMaxFuture {
		return specErr("window.max_future", "must not be negative, got %v; use weir.NoMaxFuture to turn the bound off", s.Window.MaxFuture)
	}
	return nil
}

// validatePassthrough refuses the keys a passthrough job does not use:
// a setting that would be ignored is a mistake worth saying.
func (s JobSpec) validatePassthrough() error {
	for _, k := range []struct {
		key string
		set bool
	}{
		{"key_field", s.KeyField != ""},
		{"timestamp_field", s.TimestampField != ""},
		{"window.size", s.Window.Size != 0},
		{"window.out_of_orderness", s.Window.OutOfOrderness != 0},
		{"window.idle_timeout", s.Window.IdleTimeout != 0},
		{"window.max_future", s.Window.MaxFuture != 0},
		{"window.kind", s.Window.Kind != ""},
		{"window.slide", s.Window.Slide != 0},
		{"window.gap", s.Window.Gap != 0},
		{"window.offset", s.Window.Offset != 0},
		{"window.allowed_lateness", s.Window.AllowedLateness != 0},
		{"window.late_topic", s.Window.LateTopic != ""},
		{"aggregate.value_field", s.Aggregate.ValueField != ""},
		{"aggregate.functions", s.Aggregate.Functions != nil},
	} {
		if k.set {
			return specErr(k.key, "not used by kind: passthrough (records are copied unchanged); remove it, or set kind: window")
		}
	}
	if s.Extract != nil {
		return specErr("kind", "passthrough copies records unchanged and does not use JobSpec.Extract; leave Extract nil, or use kind: window")
	}
	return nil
}

func validTopic(key, t string) error {
	if len(t) > 249 {
		return specErr(key, "topic name is %d characters long; Kafka allows at most 249", len(t))
	}
	if t == "." || t == ".." {
		return specErr(key, "%q is not a valid topic name", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return specErr(key, "topic %q has the character %q; Kafka topics use only letters, digits, '.', '_' and '-'", t, r)
		}
	}
	return nil
}

func (src SourceSpec) validate() error {
	switch src.Bounded {
	case Unbounded, BoundLatest:
	case BoundTimestamp:
		if src.BoundedTimestamp.IsZero() {
			return specErr("source.bounded_timestamp", "required with bounded: timestamp; give milliseconds since the epoch or an RFC 3339 time")
		}
	case BoundOffsets:
		if len(src.BoundedOffsets) == 0 {
			return specErr("source.bounded_offsets", "required with bounded: offsets; map partitions to the offsets to stop before, e.g. {0: 42, 1: 7}")
		}
		if err := validOffsets("source.bounded_offsets", src.BoundedOffsets); err != nil {
			return err
		}
	default:
		return specErr("source.bounded", "%q is not a bound; use latest (the end offsets at start), timestamp or offsets, or leave it out", src.Bounded)
	}
	if src.Bounded != BoundTimestamp && !src.BoundedTimestamp.IsZero() {
		return specErr("source.bounded_timestamp", "is only used with bounded: timestamp; set source.bounded: timestamp or remove it")
	}
	if src.Bounded != BoundOffsets && len(src.BoundedOffsets) > 0 {
		return specErr("source.bounded_offsets", "is only used with bounded: offsets; set source.bounded: offsets or remove it")
	}
	switch src.Isolation {
	case ReadCommitted, ReadUncommitted:
	default:
		return specErr("source.isolation", "%q is not an isolation level; use read_committed or read_uncommitted", src.Isolation)
	}
	if src.PartitionDiscoveryInterval < 0 && src.PartitionDiscoveryInterval != NoPartitionDiscovery {
		return specErr("source.partition_discovery_interval", "must not be negative, got %v; use 0 to turn discovery off", src.PartitionDiscoveryInterval)
	}
	if src.PartitionDiscoveryInterval > 0 && src.PartitionDiscoveryInterval < 10*time.Millisecond {
		return specErr("source.partition_discovery_interval", "%v is too short; use at least 10ms", src.PartitionDiscoveryInterval)
	}
	return src.Start.validate()
}

// validOffsets checks a map of partition to offset.
func validOffsets(key string, offsets map[int32]int64) error {
	parts := make([]int32, 0, len(offsets))
	for p := range offsets {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	for _, p := range parts {
		o := offsets[p]
		if p < 0 {
			return specErr(key, "partition %d is negative; partitions start at 0", p)
		}
		if o < 0 {
			return specErr(key, "offset %d for partition %d is negative; offsets start at 0", o, p)
		}
	}
	return nil
}

func (st StartSpec) validate() error {
	switch st.Mode {
	case StartGroup, StartEarliest, StartLatest:
	case StartTimestamp:
		if st.Timestamp.IsZero() {
			return specErr("source.start.timestamp", "required with mode timestamp: give milliseconds since the epoch or an RFC 3339 time")
		}
	case StartOffsets:
		if len(st.Offsets) == 0 {
			return specErr("source.start.offsets", "required with mode offsets: map partitions to offsets, e.g. {0: 42, 1: 7}")
		}
		if err := validOffsets("source.start.offsets", st.Offsets); err != nil {
			return err
		}
	default:
		return specErr("source.start.mode", "%q is not a start mode; use group, earliest, latest, timestamp or offsets", st.Mode)
	}
	if st.Mode != StartTimestamp && !st.Timestamp.IsZero() {
		return specErr("source.start.timestamp", "is only used with mode timestamp; set source.start.mode: timestamp or remove it")
	}
	if st.Mode != StartOffsets && len(st.Offsets) > 0 {
		return specErr("source.start.offsets", "is only used with mode offsets; set source.start.mode: offsets or remove it")
	}
	switch st.AutoOffsetReset {
	case "earliest", "latest", "none":
	default:
		return specErr("source.start.auto_offset_reset", "%q is not valid; use earliest, latest or none", st.AutoOffsetReset)
	}
	return nil
}

func (c CheckpointSpec) validate(d Delivery) error {
	if c.Interval < 0 {
		return specErr("checkpoint.interval", "must not be negative, got %v; use 0 to turn checkpoints off", c.Interval)
	}
	if c.Interval > 0 && c.Interval < 10*time.Millisecond {
		return specErr("checkpoint.interval", "%v is too short; use at least 10ms", c.Interval)
	}
	if c.Interval > 0 && c.Dir == "" {
		return specErr("checkpoint.dir", "required when checkpoint.interval is set: name a directory for checkpoints")
	}
	if d == ExactlyOnce && c.Interval == 0 {
		return specErr("checkpoint.interval", "exactly-once delivery commits on checkpoints; set an interval such as 1s")
	}
	if c.Timeout <= 0 {
		return specErr("checkpoint.timeout", "must be a positive duration, got %v", c.Timeout)
	}
	if c.MinPause < 0 {
		return specErr("checkpoint.min_pause", "must not be negative, got %v", c.MinPause)
	}
	if c.MaxConcurrent < 1 {
		return specErr("checkpoint.max_concurrent", "must be at least 1, got %d", c.MaxConcurrent)
	}
	if c.Retain < 1 {
		return specErr("checkpoint.retain", "must be at least 1, got %d", c.Retain)
	}
	if c.TolerableFailures < 0 {
		return specErr("checkpoint.tolerable_failures", "must not be negative, got %d", c.TolerableFailures)
	}
	switch c.Mode {
	case CheckpointExactlyOnce:
	case CheckpointAtLeastOnce:
		if d == ExactlyOnce {
			return specErr("checkpoint.mode", "at-least-once checkpoints cannot give exactly-once delivery; use checkpoint.mode: exactly-once or delivery: at-least-once")
		}
	default:
		return specErr("checkpoint.mode", "%q is not a mode; use exactly-once or at-least-once", c.Mode)
	}
	return nil
}
