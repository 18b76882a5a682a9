package weir

import (
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The job's Prometheus metrics, all in one place (docs/metrics.md lists
// them). The tasks keep their figures in atomics (actors.TaskStats, one
// add per batch); the collector reads them at scrape time, so the record
// path never touches a label or a map. Every metric has the label job.

type metricDesc struct {
	d   *prometheus.Desc
	typ prometheus.ValueType
}

func newDesc(name, help string, typ prometheus.ValueType, labels prometheus.Labels, vars ...string) metricDesc {
	return metricDesc{prometheus.NewDesc(name, help, vars, labels), typ}
}

// collector reads a job's figures at scrape time.
type collector struct {
	o     *jobObs
	descs *jobDescs
}

// jobDescs are the descriptions of the collector's metrics.
type jobDescs struct {
	recordsIn, recordsOut, bytesIn, bytesOut, batchesIn, batchesOut   metricDesc
	queue, queueCap, blocked, watermark                               metricDesc
	partOffset, partEnd, partLag                                      metricDesc
	ckCompleted, ckFailed, ckAborted, ckLastID, ckLastTime, ckLastAge metricDesc
	txCommitted, txAborted, txReplayed                                metricDesc
	restarts, lastFailure, uptime, running                            metricDesc
	late, bad, offsetCommits, offsetCommitFailures, discovered        metricDesc
	deadLettered                                                      metricDesc
}

func (c *collector) d() *jobDescs { return c.descs }

func newJobDescs(l prometheus.Labels) *jobDescs {
	const (
		counter = prometheus.CounterValue
		gauge   = prometheus.GaugeValue
	)
	st := []string{"operator", "subtask"}
	part := []string{"operator", "topic", "partition"}
	return &jobDescs{
		recordsIn:            newDesc("weir_operator_records_in_total", "Records an operator subtask received (a source: read from Kafka).", counter, l, st...),
		recordsOut:           newDesc("weir_operator_records_out_total", "Records an operator subtask sent downstream (a sink: wrote to Kafka).", counter, l, st...),
		bytesIn:              newDesc("weir_operator_bytes_in_total", "Bytes of keys and values a source subtask read, or a sink subtask received; 0 for operators of typed records.", counter, l, st...),
		bytesOut:             newDesc("weir_operator_bytes_out_total", "Bytes of keys and values a sink subtask wrote; 0 for the other operators.", counter, l, st...),
		batchesIn:            newDesc("weir_operator_batches_in_total", "Batches an operator subtask received (a source: polls that returned records).", counter, l, st...),
		batchesOut:           newDesc("weir_operator_batches_out_total", "Batches an operator subtask sent downstream.", counter, l, st...),
		queue:                newDesc("weir_operator_queue_batches", "Batches an operator subtask sent downstream that wait for their credit (in the receivers' queues).", gauge, l, st...),
		queueCap:             newDesc("weir_operator_queue_capacity_batches", "The most batches an operator subtask may have in flight downstream (credits times targets).", gauge, l, st...),
		blocked:              newDesc("weir_operator_backpressure_seconds_total", "Time an operator subtask's output waited for credits from downstream (backpressure).", counter, l, st...),
		watermark:            newDesc("weir_operator_watermark_seconds", "An operator's event-time watermark (the lowest over its subtasks), Unix seconds; absent before the first.", gauge, l, "operator"),
		partOffset:           newDesc("weir_source_partition_offset", "Next offset a source will read from a partition.", gauge, l, part...),
		partEnd:              newDesc("weir_source_partition_end_offset", "End offset (high watermark) of a source partition, as the consumer last saw it.", gauge, l, part...),
		partLag:              newDesc("weir_source_partition_lag", "Records of a source partition not read yet (end offset minus offset).", gauge, l, part...),
		ckCompleted:          newDesc("weir_checkpoints_completed_total", "Checkpoints completed.", counter, l),
		ckFailed:             newDesc("weir_checkpoints_failed_total", "Checkpoints failed (timed out, declined by a task, metadata write failed).", counter, l),
		ckAborted:            newDesc("weir_checkpoints_aborted_total", "Checkpoints aborted (subsumed by a newer one, or ended by a stop or restart).", counter, l),
		ckLastID:             newDesc("weir_checkpoint_last_completed_id", "Id of the newest completed checkpoint.", gauge, l),
		ckLastTime:           newDesc("weir_checkpoint_last_completed_timestamp_seconds", "When the newest completed checkpoint was triggered, Unix seconds.", gauge, l),
		ckLastAge:            newDesc("weir_checkpoint_last_completed_age_seconds", "Seconds since the newest completed checkpoint was triggered.", gauge, l),
		txCommitted:          newDesc("weir_sink_transactions_committed_total", "Kafka transactions an exactly-once sink subtask committed (replayed ones included).", counter, l, st...),
		txAborted:            newDesc("weir_sink_transactions_aborted_total", "Kafka transactions an exactly-once sink subtask aborted (on stop or restart; their epochs are replayed).", counter, l, st...),
		txReplayed:           newDesc("weir_sink_transactions_replayed_total", "Epochs an exactly-once sink subtask wrote again in a fresh transaction and committed (recovery).", counter, l, st...),
		restarts:             newDesc("weir_job_restarts_total", "Restarts of the job after failures.", counter, l),
		lastFailure:          newDesc("weir_job_last_failure_timestamp_seconds", "When the job last failed, Unix seconds; absent before the first failure.", gauge, l),
		uptime:               newDesc("weir_job_uptime_seconds", "Seconds since the job started running.", gauge, l),
		running:              newDesc("weir_job_running", "1 while the job runs (restarts included), 0 otherwise.", gauge, l),
		late:                 newDesc("weir_records_late_dropped_total", "Records dropped because their window had fired.", counter, l),
		bad:                  newDesc("weir_records_bad_total", "Records a source could not read.", counter, l),
		deadLettered:         newDesc("weir_records_dead_lettered_total", "Bad records sent to the dead-letter topic (counted in weir_records_bad_total too).", counter, l),
		offsetCommits:        newDesc("weir_source_offset_commits_total", "Source offset commits to the consumer group that succeeded.", counter, l),
		offsetCommitFailures: newDesc("weir_source_offset_commit_failures_total", "Source offset commits to the consumer group that failed (never fails the job).", counter, l),
		discovered:           newDesc("weir_source_partitions_discovered_total", "Source partitions assigned after the start (partition discovery).", counter, l),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d := c.d()
	for _, m := range []metricDesc{d.recordsIn, d.recordsOut, d.bytesIn, d.bytesOut, d.batchesIn, d.batchesOut,
		d.queue, d.queueCap, d.blocked, d.watermark, d.partOffset, d.partEnd, d.partLag,
		d.ckCompleted, d.ckFailed, d.ckAborted, d.ckLastID, d.ckLastTime, d.ckLastAge,
		d.txCommitted, d.txAborted, d.txReplayed, d.restarts, d.lastFailure, d.uptime, d.running,
		d.late, d.bad, d.deadLettered, d.offsetCommits, d.offsetCommitFailures, d.discovered} {
		ch <- m.d
	}
	c.o.ckDuration.Describe(ch)
	c.o.ckSize.Describe(ch)
	c.o.commitLat.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	d, o, now := c.d(), c.o, time.Now()
	emit := func(m metricDesc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.d, m.typ, v, labels...)
	}
	for _, op := range o.ops {
		wm := int64(math.MaxInt64)
		for i, st := range op.subtasks {
			sub := strconv.Itoa(i)
			emit(d.recordsIn, float64(st.RecordsIn.Load()), op.ID, sub)
			emit(d.recordsOut, float64(st.RecordsOut.Load()), op.ID, sub)
			emit(d.bytesIn, float64(st.BytesIn.Load()), op.ID, sub)
			emit(d.bytesOut, float64(st.BytesOut.Load()), op.ID, sub)
			emit(d.batchesIn, float64(st.BatchesIn.Load()), op.ID, sub)
			emit(d.batchesOut, float64(st.BatchesOut.Load()), op.ID, sub)
			if !op.sink {
				emit(d.queue, float64(st.InFlight.Load()), op.ID, sub)
				emit(d.queueCap, float64(st.QueueCap.Load()), op.ID, sub)
				emit(d.blocked, st.Blocked(now).Seconds(), op.ID, sub)
			}
			if op.sink && o.j.spec.Delivery == ExactlyOnce {
				emit(d.txCommitted, float64(st.TxCommitted.Load()), op.ID, sub)
				emit(d.txAborted, float64(st.TxAborted.Load()), op.ID, sub)
				emit(d.txReplayed, float64(st.TxReplayed.Load()), op.ID, sub)
			}
			wm = min(wm, st.Watermark())
			if op.source {
				for _, p := range st.Partitions() {
					ps := strconv.Itoa(int(p.Partition))
					if p.Offset >= 0 {
						emit(d.partOffset, float64(p.Offset), op.ID, op.topic, ps)
					}
					if p.End >= 0 {
						emit(d.partEnd, float64(p.End), op.ID, op.topic, ps)
					}
					if p.Offset >= 0 && p.End >= 0 {
						emit(d.partLag, float64(max(p.End-p.Offset, 0)), op.ID, op.topic, ps)
					}
				}
			}
		}
		if !op.sink && wm != math.MinInt64 && wm != math.MaxInt64 {
			emit(d.watermark, float64(wm)/1000, op.ID)
		}
	}

	o.mu.Lock()
	completed, failed, aborted, last := o.completed, o.failed, o.aborted, o.last
	state, startedAt, failedAt := o.state, o.startedAt, o.failedAt
	o.mu.Unlock()
	emit(d.ckCompleted, float64(completed))
	emit(d.ckFailed, float64(failed))
	emit(d.ckAborted, float64(aborted))
	if last != nil {
		emit(d.ckLastID, float64(last.ID))
		emit(d.ckLastTime, float64(last.Time.UnixNano())/1e9)
		emit(d.ckLastAge, now.Sub(last.Time).Seconds())
	}
	m := &o.j.metrics
	emit(d.restarts, float64(m.Restarts.Load()))
	if !failedAt.IsZero() {
		emit(d.lastFailure, float64(failedAt.UnixNano())/1e9)
	}
	run := 0.0
	if state == "running" || state == "restarting" {
		run = 1
	}
	emit(d.running, run)
	if !startedAt.IsZero() {
		emit(d.uptime, now.Sub(startedAt).Seconds())
	}
	emit(d.late, float64(m.LateDropped.Load()))
	emit(d.bad, float64(m.BadRecords.Load()))
	emit(d.deadLettered, float64(m.DeadLettered.Load()))
	emit(d.offsetCommits, float64(m.OffsetCommits.Load()))
	emit(d.offsetCommitFailures, float64(m.OffsetCommitFailures.Load()))
	emit(d.discovered, float64(m.PartitionsDiscovered.Load()))

	o.ckDuration.Collect(ch)
	o.ckSize.Collect(ch)
	o.commitLat.Collect(ch)
}
