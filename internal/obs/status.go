// Package obs is what a running job shows about itself: the status model
// behind the REST API (/api/...), the status page and `engine status`, and
// the Prometheus metrics (/metrics). The job (package weir) implements
// Provider; the HTTP side (Handler) only reads through it, so an embedding
// program can serve the same pages and metrics.
package obs

import "time"

// Provider is what the HTTP side reads. Implementations must be safe for
// concurrent use and cheap to call (the page polls every second).
type Provider interface {
	// Job is the job graph with per-operator figures at this moment.
	Job() JobStatus
	// Checkpoints is the checkpoint history, oldest first, bounded (the
	// newest HistoryLimit entries).
	Checkpoints() []CheckpointStatus
	// Operator is one operator with its subtasks; false when id is unknown.
	Operator(id string) (OperatorStatus, bool)
	// Throughput is the recent throughput, one sample per second, oldest
	// first, at most ThroughputWindow samples.
	Throughput() []Sample
}

// HistoryLimit bounds the checkpoint history a Provider keeps.
const HistoryLimit = 100

// ThroughputWindow bounds the throughput samples a Provider keeps (one per
// second: the last 5 minutes).
const ThroughputWindow = 300

// JobStatus is GET /api/job.
type JobStatus struct {
	Name          string     `json:"name"`
	State         string     `json:"state"` // "created", "running", "restarting", "finished", "failed"
	StartedAt     time.Time  `json:"started_at"`
	UptimeSeconds float64    `json:"uptime_seconds"`
	Restarts      int64      `json:"restarts"`
	LastFailure   string     `json:"last_failure,omitempty"`
	Operators     []Operator `json:"operators"`
	Edges         []Edge     `json:"edges"`
	// Partitions are the source partitions with offset, end offset and lag.
	Partitions []PartitionStatus `json:"partitions"`
	// LastCheckpoint is the newest completed checkpoint, nil before the first.
	LastCheckpoint *CheckpointStatus `json:"last_checkpoint,omitempty"`
	// Bounded jobs (backfills) know their end: Progress is in [0,1], -1 when
	// unbounded or unknown.
	Progress float64 `json:"progress"`
}

// Operator is one vertex of the job graph with totals over its subtasks.
type Operator struct {
	ID          string `json:"id"`   // stable: the operator's uid
	Name        string `json:"name"` // display name
	Kind        string `json:"kind"` // "source", "map", "window", "sink", ...
	Parallelism int    `json:"parallelism"`
	RecordsIn   int64  `json:"records_in"`
	RecordsOut  int64  `json:"records_out"`
	// Rates are per second over the last few seconds.
	RateIn  float64 `json:"rate_in"`
	RateOut float64 `json:"rate_out"`
	// Backpressure is the share of the last few seconds the operator's
	// subtasks spent blocked on credits downstream, in [0,1] (max over
	// subtasks).
	Backpressure float64 `json:"backpressure"`
	// Watermark is the operator's lowest subtask watermark in Unix ms; 0
	// when none yet.
	Watermark int64 `json:"watermark"`
}

// Edge connects two operators by their ids.
type Edge struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Ship is how records go: "forward", "hash" (keyBy), "rebalance", ...
	Ship string `json:"ship"`
}

// OperatorStatus is GET /api/operators/{id}.
type OperatorStatus struct {
	Operator
	Subtasks []SubtaskStatus `json:"subtasks"`
}

// SubtaskStatus is one subtask (actor) of an operator.
type SubtaskStatus struct {
	Index          int     `json:"index"`
	RecordsIn      int64   `json:"records_in"`
	RecordsOut     int64   `json:"records_out"`
	BytesIn        int64   `json:"bytes_in"`
	BytesOut       int64   `json:"bytes_out"`
	Batches        int64   `json:"batches"`
	QueueLen       int     `json:"queue_len"`
	QueueCap       int     `json:"queue_cap"`
	BlockedSeconds float64 `json:"blocked_seconds"` // total time blocked on credits
	Watermark      int64   `json:"watermark"`
}

// PartitionStatus is one source partition.
type PartitionStatus struct {
	Source    string `json:"source"` // the source operator's id
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"` // next offset to read; -1 unknown
	End       int64  `json:"end"`    // high watermark last seen; -1 unknown
	Lag       int64  `json:"lag"`    // End - Offset; -1 unknown
}

// CheckpointStatus is one entry of GET /api/checkpoints.
type CheckpointStatus struct {
	ID         uint64    `json:"id"`
	Time       time.Time `json:"time"` // when it was triggered
	DurationMs int64     `json:"duration_ms"`
	SizeBytes  int64     `json:"size_bytes"`
	State      string    `json:"state"` // "completed", "failed", "aborted", "in_progress"
	Savepoint  bool      `json:"savepoint"`
	Error      string    `json:"error,omitempty"`
}

// Sample is one throughput point.
type Sample struct {
	Time       time.Time `json:"time"`
	RecordsIn  float64   `json:"records_in_per_s"`
	RecordsOut float64   `json:"records_out_per_s"`
}
