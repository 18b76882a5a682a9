package actors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir/internal/kafkaconf"
)

// autoCommitInterval is how soon after a checkpoint completes the client
// commits its offsets (they are stored for it at once).
const autoCommitInterval = "100"

// Engine defaults for the consumer's prefetch, which otherwise dominates
// the process's memory: librdkafka keeps fetching into a consumer's queue,
// one consumer per source subtask, until it holds queued.min.messages
// records (default 100000) or queued.max.messages.kbytes of them (default
// 65536 KiB), whichever comes first. 16 MiB keeps a 1 s checkpoint
// interval fed at the engine's throughput. The count is the bound that
// matters for small records: each queued record costs a few hundred bytes
// besides its key and value, so 100000 records of about 100 bytes held
// some 35 MiB per consumer (peak RSS of the benchmark's Q1, parallelism 2:
// 168 -> 100 MiB with 20000). DefaultQueuedMinMessages is still more than
// one fetch brings (max.partition.fetch.bytes, 1 MiB per partition, is
// about 8000 such records), so the queue is refilled before it runs dry. A
// job can raise either in source.properties or kafka.
//
// DefaultFetchQueueBackoffMs: when a partition's fetch queue is over its
// thresholds (queued.min.messages, queued.max.messages.kbytes), librdkafka
// postpones that partition's next fetch by fetch.queue.backoff.ms, 1000 ms
// by default, even if the queue drains a moment later. Reading a backlog,
// the queues are over the thresholds all the time, so each partition reads
// in bursts with pauses of up to a second: measured on a 10^7-record
// backlog, a bare consumer read 250k records/s with the default. A few
// milliseconds keep the queue fed.
const (
	DefaultQueuedMinMessages   = 20_000   // queued.min.messages
	DefaultQueuedMaxKBytes     = 16384    // queued.max.messages.kbytes
	DefaultFetchMaxBytes       = 16 << 20 // fetch.max.bytes, matching it
	DefaultFetchQueueBackoffMs = 5        // fetch.queue.backoff.ms
)

// consumerConfig builds the librdkafka configuration of the subtask.
//
// The prefetch is bounded by DefaultQueuedMinMessages,
// DefaultQueuedMaxKBytes and DefaultFetchMaxBytes unless the job sets
// queued.min.messages, queued.max.messages.kbytes or fetch.max.bytes
// itself (fetch.max.bytes is only set by the engine when
// the job sets neither, so that librdkafka matches it to a queue size the
// job chose).
//
// Offsets are never stored by the client itself (enable.auto.offset.store
// is false): with checkpoints off the poller stores the position of what
// it has handed over and the client's auto-commit, as configured by the
// job, commits it; with checkpoints on the source stores the offsets of a
// completed checkpoint, and the client commits them within
// autoCommitInterval (or never, without CommitOnCheckpoint).
func consumerConfig(c SourceConfig) kafka.ConfigMap {
	defaults := kafka.ConfigMap{
		"enable.partition.eof":   true,
		"auto.offset.reset":      librdkafkaReset(c.Start.AutoOffsetReset),
		"fetch.queue.backoff.ms": DefaultFetchQueueBackoffMs,
		"queued.min.messages":    DefaultQueuedMinMessages,
	}
	_, setQueue := c.Properties["queued.max.messages.kbytes"]
	_, setFetch := c.Properties["fetch.max.bytes"]
	if !setQueue {
		defaults["queued.max.messages.kbytes"] = DefaultQueuedMaxKBytes
	}
	if !setQueue && !setFetch {
		defaults["fetch.max.bytes"] = DefaultFetchMaxBytes
	}
	conf := kafkaconf.Config(c.Brokers, defaults, c.Properties, kafka.ConfigMap{
		"group.id":                 c.Group,
		"isolation.level":          c.Isolation,
		"enable.auto.offset.store": false,
	})
	if c.Checkpoint.Enabled() {
		var set []string
		for _, k := range []string{"enable.auto.commit", "auto.commit.interval.ms"} {
			if _, ok := c.Properties[k]; ok {
				set = append(set, k)
			}
		}
		if len(set) > 0 && c.Index == 0 {
			c.Log.Warn("source: checkpoints are on, so offsets are committed when a checkpoint completes (source.commit_offsets_on_checkpoint); ignoring " +
				strings.Join(set, " and "))
		}
		conf["enable.auto.commit"] = c.CommitOnCheckpoint
		conf["auto.commit.interval.ms"] = autoCommitInterval
	}
	return conf
}

func (s *Source) start(ctx actor.Context) error {
	c := s.cfg
	conf := consumerConfig(c)
	cons, err := kafkaconf.NewConsumer(c.Brokers, conf, nil, nil)
	if err != nil {
		return fmt.Errorf("source %s: create consumer: %w", c.Task, err)
	}
	admin, err := kafka.NewAdminClientFromConsumer(cons)
	if err != nil {
		cons.Close()
		return fmt.Errorf("source %s: admin client: %w", c.Task, err)
	}
	fail := func(err error) error {
		admin.Close()
		cons.Close()
		return fmt.Errorf("source %s: %w", c.Task, err)
	}
	parts, err := topicPartitions(cons, c.Topic, c.MetadataTimeout)
	if err != nil {
		return fail(err)
	}
	if err := checkPartitions("source.start.offsets", c.Topic, parts, c.Start.Offsets); err != nil {
		return fail(err)
	}
	if err := checkPartitions("source.bounded_offsets", c.Topic, parts, c.Stop.Offsets); err != nil {
		return fail(err)
	}
	var mine []int32
	for _, p := range parts {
		if int(p)%c.Parallelism == c.Index {
			mine = append(mine, p)
		}
	}
	restored, err := s.restoredState()
	if err != nil {
		admin.Close()
		cons.Close()
		return err
	}
	o := offsetLister{cons: cons, admin: admin, topic: c.Topic, isolation: c.Isolation, timeout: c.MetadataTimeout}
	// Partitions with a position in the checkpoint resume there; a
	// partition the checkpoint does not know (added since) starts at the
	// earliest offset, as Flink does for newly discovered partitions; one
	// that had no position yet when the checkpoint was taken starts at the
	// start position.
	positions := map[int32]int64{}
	var unpositioned, added []int32
	for _, p := range mine {
		r, known := partitionRecord{}, false
		if restored != nil {
			r, known = restored.Partitions[p]
		}
		switch {
		case restored == nil || (known && r.Next < 0):
			unpositioned = append(unpositioned, p)
		case known:
			positions[p] = r.Next
		default:
			added = append(added, p)
		}
	}
	if len(added) > 0 {
		lo, err := o.list(added, kafka.EarliestOffsetSpec)
		if err != nil {
			return fail(err)
		}
		for p, off := range lo {
			positions[p] = off
		}
	}
	if len(unpositioned) > 0 {
		from, err := startOffsets(o, c, unpositioned)
		if err != nil {
			return fail(err)
		}
		for p, off := range from {
			positions[p] = off
		}
	}
	if restored != nil {
		c.Log.Info("source restored from checkpoint; the start position applies only to partitions without a recorded position",
			"task", c.Task, "checkpoint", c.Checkpoint.RestoredFrom, "positions", positions)
	} else {
		c.Log.Info("source starts at its start position (no checkpoint restored)", "task", c.Task, "start", c.Start.Mode, "positions", positions)
	}
	var stop map[int32]int64
	if c.Stop.Mode != "" {
		if stop, err = stopOffsets(o, c, mine); err != nil {
			return fail(err)
		}
		c.Log.Info("source is bounded", "task", c.Task, "bound", c.Stop.Mode, "stop_offsets", stop)
	}
	rd, err := newReader(cons)
	if err != nil {
		c.Log.Warn("source: reading records one at a time through the client (the batch reader cannot attach)", "task", c.Task, "err", err)
	}
	if len(mine) > 0 {
		// Routed before they are assigned: nothing of theirs is fetched
		// into the consumer queue first.
		if err := rd.Route(c.Topic, mine); err != nil {
			rd.Close()
			return fail(err)
		}
		assign := make([]kafka.TopicPartition, 0, len(mine))
		topic := c.Topic
		for _, p := range mine {
			assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.Offset(positions[p])})
		}
		if err := cons.Assign(assign); err != nil {
			rd.Close()
			return fail(fmt.Errorf("assign %v: %w", mine, err))
		}
	}
	now := c.Now()
	for _, p := range mine {
		ps := &partState{partition: p, next: positions[p], maxTS: math.MinInt64, lastActive: now}
		if restored != nil {
			if r, ok := restored.Partitions[p]; ok {
				ps.maxTS = r.MaxTS
			}
		}
		s.parts[p] = ps
	}
	if restored != nil && restored.Watermark > s.wm {
		s.wm = restored.Watermark
	}
	c.Log.Info("source started", "task", c.Task, "topic", c.Topic, "partitions", mine, "start", c.Start.Mode)
	s.poller = newPoller(ctx.ActorSystem().Root, ctx.Self(), cons, rd, o, c, mine, positions, stop)
	if len(mine) == 0 {
		c.Log.Info("source has no partition and is idle (parallelism is larger than the partition count)",
			"task", c.Task, "partitions", len(parts), "parallelism", c.Parallelism)
		s.idle = true
		s.out.Broadcast(ctx, func(in int) any { return &Idle{In: in} })
	}
	s.tokens = pollerTokens
	for i := 0; i < pollerTokens; i++ {
		s.poller.grant()
	}
	if c.Done != nil {
		c.Done.Add(1)
	}
	go s.poller.run()
	return nil
}

func librdkafkaReset(r string) string {
	if r == "none" {
		return "error"
	}
	if r == "" {
		return "earliest"
	}
	return r
}

// checkPartitions fails when offsets name a partition topic does not have.
func checkPartitions(key, topic string, parts []int32, offsets map[int32]int64) error {
	var missing []int32
	for p := range offsets {
		i := sort.Search(len(parts), func(i int) bool { return parts[i] >= p })
		if i == len(parts) || parts[i] != p {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
	return fmt.Errorf("%s: topic %q has no partition %s (it has partitions 0 to %d); remove it or fix the partition number",
		key, topic, joinInts(missing), len(parts)-1)
}

func joinInts(ps []int32) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}

func topicPartitions(cons *kafka.Consumer, topic string, timeout time.Duration) ([]int32, error) {
	md, err := cons.GetMetadata(&topic, false, int(timeout.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("metadata of topic %q: %w", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() == kafka.ErrUnknownTopicOrPart || tm.Error.Code() == kafka.ErrUnknownTopic {
		return nil, fmt.Errorf("topic %q does not exist; create it or fix source.topic", topic)
	}
	if tm.Error.Code() != kafka.ErrNoError {
		return nil, fmt.Errorf("metadata of topic %q: %w", topic, tm.Error)
	}
	ps := make([]int32, 0, len(tm.Partitions))
	for _, p := range tm.Partitions {
		ps = append(ps, p.ID)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps, nil
}

// offsetLister looks offsets up through an admin client derived from the
// consumer, honouring the consumer's isolation level (the latest offset of
// a read_committed consumer is the last stable offset).
type offsetLister struct {
	cons      *kafka.Consumer
	admin     *kafka.AdminClient
	topic     string
	isolation string
	timeout   time.Duration
}

// list returns the offset of spec for each partition; for a timestamp
// spec, -1 where no record is at or after it. A partition whose leader is
// not known yet (one just created, a leader election) is asked again, with
// a backoff, until the lister's timeout.
func (o offsetLister) list(parts []int32, spec kafka.OffsetSpec) (map[int32]int64, error) {
	lvl := kafka.IsolationLevelReadCommitted
	if o.isolation == "read_uncommitted" {
		lvl = kafka.IsolationLevelReadUncommitted
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	topic := o.topic
	out := make(map[int32]int64, len(parts))
	pending := parts
	backoff := listRetryBackoff
	for {
		req := make(map[kafka.TopicPartition]kafka.OffsetSpec, len(pending))
		for _, p := range pending {
			req[kafka.TopicPartition{Topic: &topic, Partition: p}] = spec
		}
		var retry []int32
		var last error
		res, err := o.admin.ListOffsets(ctx, req, kafka.SetAdminIsolationLevel(lvl))
		if err != nil {
			last = fmt.Errorf("list offsets of %q partitions %s: %w", o.topic, joinInts(pending), err)
			if !transientError(err) {
				return nil, last
			}
			retry = pending
		} else {
			for tp, info := range res.ResultInfos {
				if info.Error.Code() == kafka.ErrNoError {
					out[tp.Partition] = int64(info.Offset)
					continue
				}
				last = fmt.Errorf("list offsets of %s/%d: %w", o.topic, tp.Partition, info.Error)
				if !transientError(info.Error) {
					return nil, last
				}
				retry = append(retry, tp.Partition)
			}
			for _, p := range pending {
				if _, ok := out[p]; !ok && !slices.Contains(retry, p) {
					return nil, fmt.Errorf("list offsets of %q: no answer for partition %d", o.topic, p)
				}
			}
		}
		if len(retry) == 0 {
			return out, nil
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (still failing after %s; raise the metadata timeout if the cluster is slow to elect leaders)", last, o.timeout)
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
		slices.Sort(retry)
		pending = retry
	}
}

// committed returns the group's committed offsets of tps, asking again,
// with a backoff, while the group's coordinator is not known or still
// loading (a broker just started), until the lister's timeout.
func (o offsetLister) committed(tps []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	deadline := time.Now().Add(o.timeout)
	backoff := listRetryBackoff
	for {
		left := time.Until(deadline)
		out, err := o.cons.Committed(tps, int(max(left, time.Millisecond).Milliseconds()))
		if err == nil || !transientError(err) || time.Until(deadline) <= backoff {
			return out, err
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// listRetryBackoff is the first wait before asking again for offsets that
// a partition's leader or the group's coordinator could not give yet.
const listRetryBackoff = 50 * time.Millisecond

// transientError tells whether an offset lookup's error clears by itself:
// no leader or group coordinator known yet (a partition just created, a
// leader election, a broker just started loading __consumer_offsets), a
// leader epoch or a high watermark not caught up, a request that timed out.
func transientError(err error) bool {
	var ke kafka.Error
	if !errors.As(err, &ke) {
		return false
	}
	switch ke.Code() {
	case kafka.ErrNotLeaderForPartition, kafka.ErrLeaderNotAvailable, kafka.ErrUnknownTopicOrPart,
		kafka.ErrOffsetNotAvailable, kafka.ErrFencedLeaderEpoch, kafka.ErrUnknownLeaderEpoch,
		kafka.ErrRequestTimedOut, kafka.ErrTransport,
		kafka.ErrNotCoordinator, kafka.ErrCoordinatorLoadInProgress, kafka.ErrCoordinatorNotAvailable:
		return true
	}
	return ke.IsRetriable()
}

// startOffsets resolves the start position of parts to offsets.
func startOffsets(o offsetLister, c SourceConfig, parts []int32) (map[int32]int64, error) {
	switch c.Start.Mode {
	case "earliest":
		return o.list(parts, kafka.EarliestOffsetSpec)
	case "latest":
		return o.list(parts, kafka.LatestOffsetSpec)
	case "timestamp":
		return timestampOffsets(o, parts, c.Start.TimestampMillis)
	}
	out := map[int32]int64{}
	var group []int32
	for _, p := range parts {
		if off, ok := c.Start.Offsets[p]; ok && c.Start.Mode == "offsets" {
			out[p] = off
		} else {
			group = append(group, p)
		}
	}
	if len(group) == 0 {
		return out, nil
	}
	// group, and offsets' partitions not named: the committed offsets.
	topic := o.topic
	tps := make([]kafka.TopicPartition, len(group))
	for i, p := range group {
		tps[i] = kafka.TopicPartition{Topic: &topic, Partition: p}
	}
	committed, err := o.committed(tps)
	var ke kafka.Error
	if errors.As(err, &ke) && ke.Code() == kafka.ErrGroupIDNotFound {
		// A group that never committed has no offsets (some brokers say
		// so with this error rather than with empty offsets).
		committed, err = tps, nil
		for i := range committed {
			committed[i].Offset = kafka.OffsetInvalid
		}
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %q: %w", c.Group, err)
	}
	var missing []int32
	for _, tp := range committed {
		if tp.Error != nil {
			return nil, fmt.Errorf("committed offset of group %q for %s/%d: %w", c.Group, topic, tp.Partition, tp.Error)
		}
		if tp.Offset >= 0 {
			out[tp.Partition] = int64(tp.Offset)
		} else {
			missing = append(missing, tp.Partition)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
	var spec kafka.OffsetSpec
	switch c.Start.AutoOffsetReset {
	case "none":
		return nil, fmt.Errorf("source.start.auto_offset_reset: is none and group %q has no committed offset for partition %s of topic %q; set it to earliest or latest, give source.start.offsets, or commit offsets for the group",
			c.Group, joinInts(missing), topic)
	case "latest":
		spec = kafka.LatestOffsetSpec
	default:
		spec = kafka.EarliestOffsetSpec
	}
	reset, err := o.list(missing, spec)
	if err != nil {
		return nil, err
	}
	for p, off := range reset {
		out[p] = off
	}
	return out, nil
}

// timestampOffsets returns, per partition, the first offset whose record
// timestamp is at or after ts, else the latest offset.
func timestampOffsets(o offsetLister, parts []int32, ts int64) (map[int32]int64, error) {
	out, err := o.list(parts, kafka.NewOffsetSpecForTimestamp(ts))
	if err != nil {
		return nil, err
	}
	var none []int32
	for _, p := range parts {
		if out[p] < 0 {
			none = append(none, p)
		}
	}
	if len(none) > 0 {
		end, err := o.list(none, kafka.LatestOffsetSpec)
		if err != nil {
			return nil, err
		}
		for p, off := range end {
			out[p] = off
		}
	}
	return out, nil
}

// stopOffsets resolves a bound to the offset each partition stops before.
func stopOffsets(o offsetLister, c SourceConfig, parts []int32) (map[int32]int64, error) {
	if len(parts) == 0 {
		return map[int32]int64{}, nil
	}
	switch c.Stop.Mode {
	case "timestamp":
		return timestampOffsets(o, parts, c.Stop.TimestampMillis)
	case "offsets":
		out, err := o.list(parts, kafka.LatestOffsetSpec)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			if off, ok := c.Stop.Offsets[p]; ok {
				out[p] = off
			}
		}
		return out, nil
	default:
		return o.list(parts, kafka.LatestOffsetSpec)
	}
}
