package actors

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// TaskStats are the figures of one subtask (one actor) that the status API
// and the Prometheus metrics read. The actor updates them with one atomic
// add per batch (never per record); readers load them at any time. A
// subtask's TaskStats outlive its actor: a restarted job's new actor keeps
// counting on the same one, so the counters only grow.
type TaskStats struct {
	// Records and bytes that came in and went out. Bytes are known where
	// records are bytes: a source counts the keys and values it read, a
	// sink those it wrote; the operators in between handle typed records
	// and count none.
	RecordsIn, RecordsOut atomic.Int64
	BytesIn, BytesOut     atomic.Int64
	// BatchesIn and BatchesOut count batches received and sent.
	BatchesIn, BatchesOut atomic.Int64
	// InFlight is the number of batches sent downstream and not yet
	// acknowledged by a credit (the receivers' queues as this subtask
	// sees them), QueueCap the most there can be (credits times targets).
	InFlight, QueueCap atomic.Int64
	// blockedNanos is the time spent with output waiting for credits,
	// blockedSince when the current wait started (0: not waiting), both
	// in nanoseconds.
	blockedNanos, blockedSince atomic.Int64
	// watermark is the subtask's watermark in Unix ms (math.MinInt64:
	// none yet).
	watermark atomic.Int64

	// Exactly-once sinks: transactions committed, aborted and replayed
	// (replayed ones are also counted as committed).
	TxCommitted, TxAborted, TxReplayed atomic.Int64
	// OnCommit, when set, is given the duration of each commit of an
	// exactly-once sink (set before the job starts).
	OnCommit func(time.Duration)

	partMu sync.Mutex
	parts  map[int32]PartitionStats
}

// PartitionStats is a source partition's position and end.
type PartitionStats struct {
	Partition int32
	Offset    int64 // next offset to read; -1 unknown
	End       int64 // end (high watermark) the consumer last saw; -1 unknown
	// Start is the first offset recorded for the partition (kept across
	// restarts), Stop the offset a bounded source stops before (-1:
	// unbounded): together the progress of a bounded job.
	Start, Stop int64
}

// NewTaskStats returns zero stats with no watermark yet.
func NewTaskStats() *TaskStats {
	s := &TaskStats{}
	s.watermark.Store(math.MinInt64)
	return s
}

// Watermark is the subtask's watermark in Unix ms, math.MinInt64 before
// the first.
func (s *TaskStats) Watermark() int64 { return s.watermark.Load() }

// SetWatermark records the subtask's watermark.
func (s *TaskStats) SetWatermark(ts int64) { s.watermark.Store(ts) }

// Blocked is the total time the subtask's output waited for credits,
// including a wait in progress at now.
func (s *TaskStats) Blocked(now time.Time) time.Duration {
	d := s.blockedNanos.Load()
	if since := s.blockedSince.Load(); since != 0 {
		if n := now.UnixNano() - since; n > 0 {
			d += n
		}
	}
	return time.Duration(d)
}

// blockStart marks the start of a wait for credits (no-op when one is in
// progress).
func (s *TaskStats) blockStart(now time.Time) {
	if s.blockedSince.Load() == 0 {
		s.blockedSince.Store(now.UnixNano())
	}
}

// blockEnd ends a wait for credits in progress.
func (s *TaskStats) blockEnd(now time.Time) {
	if since := s.blockedSince.Load(); since != 0 {
		s.blockedNanos.Add(max(now.UnixNano()-since, 0))
		s.blockedSince.Store(0)
	}
}

// SetPartition records a source partition's position, end and stop (its
// Start is set by the first call with a known offset).
func (s *TaskStats) SetPartition(p PartitionStats) {
	s.partMu.Lock()
	defer s.partMu.Unlock()
	if s.parts == nil {
		s.parts = map[int32]PartitionStats{}
	}
	p.Start = p.Offset
	if old, ok := s.parts[p.Partition]; ok && old.Start >= 0 {
		p.Start = old.Start
	}
	s.parts[p.Partition] = p
}

// Partitions returns the source partitions recorded, by partition.
func (s *TaskStats) Partitions() []PartitionStats {
	s.partMu.Lock()
	out := make([]PartitionStats, 0, len(s.parts))
	for _, p := range s.parts {
		out = append(out, p)
	}
	s.partMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}

// orNew returns s, or fresh stats nobody reads when s is nil.
func (s *TaskStats) orNew() *TaskStats {
	if s == nil {
		return NewTaskStats()
	}
	return s
}
