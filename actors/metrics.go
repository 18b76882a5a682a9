package actors

import "sync/atomic"

// Metrics are the job's counters, shared by its tasks and read by whoever
// reports progress. All fields are updated atomically.
type Metrics struct {
	RecordsIn   atomic.Int64 // records read from Kafka
	ResultsOut  atomic.Int64 // results acknowledged by Kafka
	LateDropped atomic.Int64 // records that arrived after their window fired
	BadRecords  atomic.Int64 // records that could not be read
	Restarts    atomic.Int64 // job restarts
}
