package actors

import (
	"sync"
	"sync/atomic"
)

// Metrics are the job's counters, shared by its tasks and read by whoever
// reports progress. All fields are updated atomically.
type Metrics struct {
	RecordsIn   atomic.Int64 // records read from Kafka
	ResultsOut  atomic.Int64 // results acknowledged by Kafka
	LateDropped atomic.Int64 // records that arrived after their window fired
	BadRecords  atomic.Int64 // records that could not be read
	// DeadLettered counts the bad records sent to a dead-letter topic
	// (counted in BadRecords too).
	DeadLettered atomic.Int64
	Restarts     atomic.Int64 // job restarts

	// OffsetCommits counts the source offset commits to the consumer group
	// that succeeded, OffsetCommitFailures those that failed (a failed
	// commit never fails the job).
	OffsetCommits        atomic.Int64
	OffsetCommitFailures atomic.Int64
	// PartitionsDiscovered counts partitions assigned after the start.
	PartitionsDiscovered atomic.Int64

	lagMu sync.Mutex
	lag   map[int32]int64 // source partition -> end offset minus position
}

// SetLag records the lag of source partition p: the end offset the
// consumer last saw minus its position.
func (m *Metrics) SetLag(p int32, lag int64) {
	m.lagMu.Lock()
	defer m.lagMu.Unlock()
	if m.lag == nil {
		m.lag = map[int32]int64{}
	}
	m.lag[p] = lag
}

// Lag returns a copy of the lag per source partition; a partition appears
// once its consumer knows both its position and the end offset.
func (m *Metrics) Lag() map[int32]int64 {
	m.lagMu.Lock()
	defer m.lagMu.Unlock()
	out := make(map[int32]int64, len(m.lag))
	for p, l := range m.lag {
		out[p] = l
	}
	return out
}
