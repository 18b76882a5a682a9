package integration

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	weir "github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

// sourceEvents is the input size of the source tests: small, since they
// check positions, not throughput.
const sourceEvents = 600

// groupClient returns a franz-go client of the shared broker, closed with
// the test. (librdkafka's admin client crashes on an OffsetFetch answered
// with COORDINATOR_LOAD_IN_PROGRESS, so the group is read with another
// client.)
func groupClient(t *testing.T) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(broker.Shared().Bootstrap()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// committed reads the offsets group has committed for topic through the
// Kafka admin API (OffsetFetch); partitions without a committed offset are
// left out.
func committed(t *testing.T, ctx context.Context, group, topic string) map[int32]int64 {
	t.Helper()
	return committedWith(t, ctx, groupClient(t), group, topic)
}

// committedWith is committed through the client c.
func committedWith(t *testing.T, ctx context.Context, c *kgo.Client, group, topic string) map[int32]int64 {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group = group
		resp, err := req.RequestWith(rctx, c)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		if err == nil {
			out := map[int32]int64{}
			for _, tr := range resp.Topics {
				for _, pr := range tr.Partitions {
					if err := kerr.ErrorForCode(pr.ErrorCode); err != nil {
						t.Fatalf("offsets of group %s partition %d: %v", group, pr.Partition, err)
					}
					if tr.Topic == topic && pr.Offset >= 0 {
						out[pr.Partition] = pr.Offset
					}
				}
			}
			return out
		}
		if !kerr.IsRetriable(err) || rctx.Err() != nil {
			t.Fatalf("offsets of group %s: %v", group, err)
		}
		select { // retry a retriable broker error, bounded by rctx
		case <-rctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// commitGroup commits offsets for group on topic (OffsetCommit, as a tool
// outside the group does).
func commitGroup(t *testing.T, ctx context.Context, group, topic string, offsets map[int32]int64) {
	t.Helper()
	commitGroupWith(t, ctx, groupClient(t), group, topic, offsets)
}

// commitGroupWith is commitGroup through the client c.
func commitGroupWith(t *testing.T, ctx context.Context, c *kgo.Client, group, topic string, offsets map[int32]int64) {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.Generation = group, -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = topic
		for p, o := range offsets {
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset = p, o
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(rctx, c)
		if err == nil {
			for _, tr := range resp.Topics {
				for _, pr := range tr.Partitions {
					if err == nil {
						err = kerr.ErrorForCode(pr.ErrorCode)
					}
				}
			}
		}
		if err == nil {
			return
		}
		if !kerr.IsRetriable(err) || rctx.Err() != nil {
			t.Fatalf("commit offsets of group %s: %v", group, err)
		}
		select { // retry a retriable broker error, bounded by rctx
		case <-rctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// perPartition counts the events Produce writes to each partition.
func perPartition(events []verify.Event, partitions int) map[int32]int64 {
	n := map[int32]int64{}
	for p := 0; p < partitions; p++ {
		n[int32(p)] = 0
	}
	for _, e := range events {
		n[verify.Partition(e, partitions)]++
	}
	return n
}

// produced generates and produces n events to topic and returns them.
func produced(t *testing.T, ctx context.Context, topic string, partitions, n int) []verify.Event {
	t.Helper()
	events, err := verify.Generate(genConfig(seed(t), partitions, n))
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, broker.Shared().Bootstrap(), topic, events, partitions); err != nil {
		t.Fatal(err)
	}
	return events
}

// runBounded runs spec to its end and returns the job and Run's error.
func runBounded(t *testing.T, ctx context.Context, spec weir.JobSpec) (*weir.Job, error) {
	t.Helper()
	job := newJob(t, spec)
	return job, wait(t, start(ctx, job))
}

// TestSourceOffsetCommitOnCheckpoint: with checkpoints on, the group has no
// committed offsets while no checkpoint has completed, even after every
// record was read; after a checkpoint completes, the admin API and Kafka's
// own kafka-consumer-groups tool show the positions of that checkpoint, and
// the job's lag is 0 on every partition.
func TestSourceOffsetCommitOnCheckpoint(t *testing.T) {
	const partitions = 2
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in, out := topic(t, partitions), topic(t, partitions)
	events := produced(t, ctx, in, partitions, sourceEvents)
	want := perPartition(events, partitions)

	spec := jobSpec(t, in, out, 1, weir.StartSpec{Mode: weir.StartEarliest})
	spec.Checkpoint = weir.CheckpointSpec{Interval: time.Hour, Dir: t.TempDir()} // only the savepoints below
	// Ignored with a warning: checkpoints decide.
	spec.Source.Properties = map[string]string{"auto.commit.interval.ms": "50"}
	job := newJob(t, spec)
	done := start(ctx, job)
	group := job.Spec().Source.Group
	waitFor(t, done, "every record read", func() bool { return job.Stats().RecordsIn == int64(len(events)) })
	waitFor(t, done, "lag 0 on every partition", func() bool {
		lag := job.Stats().Lag
		return reflect.DeepEqual(lag, map[int32]int64{0: 0, 1: 0})
	})
	if got := committed(t, ctx, group, in); len(got) != 0 {
		t.Fatalf("offsets committed before any checkpoint completed: %v", got)
	}
	if _, err := job.Savepoint(ctx); err != nil {
		t.Fatalf("savepoint: %v", err)
	}
	waitFor(t, done, fmt.Sprintf("committed offsets %v", want), func() bool {
		return reflect.DeepEqual(committed(t, ctx, group, in), want)
	})
	if st := job.Stats(); st.OffsetCommits < 1 || st.OffsetCommitFailures != 0 {
		t.Errorf("stats %+v: want at least one offset commit and no failure", st)
	}

	// Kafka's own tool, from the release the broker runs.
	describe := consumerGroupCommand(t, ctx, group)
	for p, off := range want {
		row := groupRow(t, describe, in, p)
		if row["CURRENT-OFFSET"] != strconv.FormatInt(off, 10) || row["LAG"] != "0" {
			t.Errorf("kafka-consumer-groups shows %v for partition %d, want CURRENT-OFFSET %d and LAG 0", row, p, off)
		}
	}
	job.Drain()
	if err := wait(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// consumerGroupCommand runs Kafka's kafka-consumer-groups --describe.
func consumerGroupCommand(t *testing.T, ctx context.Context, group string) string {
	t.Helper()
	c := broker.Shared()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, java, "-cp", filepath.Join(c.LibsDir(), "*"),
		"org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
		"--bootstrap-server", c.Bootstrap(), "--describe", "--group", group)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kafka-consumer-groups: %v\n%s", err, b)
	}
	t.Logf("kafka-consumer-groups --describe --group %s:\n%s", group, b)
	return string(b)
}

// groupRow returns the columns of the describe output's row for topic and
// partition, by header name.
func groupRow(t *testing.T, out, topic string, partition int32) map[string]string {
	t.Helper()
	var header []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[0] == "GROUP" {
			header = f
			continue
		}
		if header == nil || len(f) < 6 || f[1] != topic || f[2] != strconv.Itoa(int(partition)) {
			continue
		}
		row := map[string]string{}
		for i, h := range header {
			if i < len(f) {
				row[h] = f[i]
			}
		}
		return row
	}
	t.Fatalf("kafka-consumer-groups shows no row for %s partition %d", topic, partition)
	return nil
}

// TestSourceAutoCommit: with checkpoints off, the client's auto-commit
// commits what the job has read while it runs, at auto.commit.interval.ms;
// with enable.auto.commit false nothing is committed.
func TestSourceAutoCommit(t *testing.T) {
	const partitions = 2
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in := topic(t, partitions)
	events := produced(t, ctx, in, partitions, sourceEvents)
	want := perPartition(events, partitions)

	t.Run("on", func(t *testing.T) {
		spec := jobSpec(t, in, topic(t, 1), 1, weir.StartSpec{Mode: weir.StartEarliest})
		spec.Source.Properties = map[string]string{"auto.commit.interval.ms": "100"}
		job := newJob(t, spec)
		done := start(ctx, job)
		waitFor(t, done, fmt.Sprintf("offsets %v auto-committed while the job runs", want), func() bool {
			return reflect.DeepEqual(committed(t, ctx, job.Spec().Source.Group, in), want)
		})
		job.Drain()
		if err := wait(t, done); err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
	t.Run("off", func(t *testing.T) {
		spec := jobSpec(t, in, topic(t, 1), 1, weir.StartSpec{Mode: weir.StartEarliest})
		spec.Source.Properties = map[string]string{"enable.auto.commit": "false"}
		spec.Source.Bounded = weir.BoundLatest
		job, err := runBounded(t, ctx, spec)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if job.Stats().RecordsIn != int64(len(events)) {
			t.Fatalf("read %d records, want %d", job.Stats().RecordsIn, len(events))
		}
		if got := committed(t, ctx, job.Spec().Source.Group, in); len(got) != 0 {
			t.Fatalf("offsets committed with enable.auto.commit false: %v", got)
		}
	})
}

// TestStartGroup: the group start position with and without committed
// offsets, for each auto_offset_reset; none without committed offsets is an
// error naming the key and the partitions.
func TestStartGroup(t *testing.T) {
	const partitions = 2
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in := topic(t, partitions)
	events := produced(t, ctx, in, partitions, sourceEvents)
	total := int64(len(events))
	commits := map[int32]int64{0: 10, 1: 25}

	for _, reset := range []string{"earliest", "latest", "none"} {
		for _, withCommits := range []bool{false, true} {
			t.Run(fmt.Sprintf("reset=%s/committed=%v", reset, withCommits), func(t *testing.T) {
				spec := jobSpec(t, in, topic(t, 1), 1, weir.StartSpec{Mode: weir.StartGroup, AutoOffsetReset: reset})
				spec.Source.Bounded = weir.BoundLatest
				spec.Source.Properties = map[string]string{"enable.auto.commit": "false"}
				if withCommits {
					commitGroup(t, ctx, "weir-"+spec.Name, in, commits)
				}
				job, err := runBounded(t, ctx, spec)
				switch {
				case withCommits:
					if err != nil {
						t.Fatalf("Run: %v", err)
					}
					if got, want := job.Stats().RecordsIn, total-commits[0]-commits[1]; got != want {
						t.Fatalf("read %d records, want %d (from the committed offsets %v)", got, want, commits)
					}
				case reset == "none":
					if err == nil {
						t.Fatal("Run returned nil; want an error for partitions without committed offsets")
					}
					t.Logf("error: %v", err)
					if msg := err.Error(); !strings.Contains(msg, "source.start.auto_offset_reset") || !strings.Contains(msg, "partition 0, 1") {
						t.Fatalf("error %q does not name source.start.auto_offset_reset and partitions 0, 1", msg)
					}
				default:
					if err != nil {
						t.Fatalf("Run: %v", err)
					}
					want := total
					if reset == "latest" {
						want = 0
					}
					if got := job.Stats().RecordsIn; got != want {
						t.Fatalf("read %d records, want %d", got, want)
					}
				}
			})
		}
	}
}

// TestStartOffsetsWithFallback: partition 0 starts at the offset given,
// partition 1 at the group's committed offset, partition 2 (neither) by
// auto_offset_reset earliest; the committed offset of partition 0 is
// ignored.
func TestStartOffsetsWithFallback(t *testing.T) {
	const partitions = 3
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in := topic(t, partitions)
	events := produced(t, ctx, in, partitions, sourceEvents)
	spec := jobSpec(t, in, topic(t, 1), 1, weir.StartSpec{Mode: weir.StartOffsets, Offsets: map[int32]int64{0: 7}})
	spec.Source.Bounded = weir.BoundLatest
	spec.Source.Properties = map[string]string{"enable.auto.commit": "false"}
	commitGroup(t, ctx, "weir-"+spec.Name, in, map[int32]int64{0: 100, 1: 5})
	job, err := runBounded(t, ctx, spec)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := job.Stats().RecordsIn, int64(len(events))-7-5; got != want {
		t.Fatalf("read %d records, want %d", got, want)
	}
}

// TestStartBadValues: each bad start value is refused with an error naming
// its key; offsets for a partition the topic lacks are refused when the
// job starts.
func TestStartBadValues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in, out := topic(t, 2), topic(t, 1)
	for _, tc := range []struct {
		key   string
		start weir.StartSpec
	}{
		{"source.start.mode", weir.StartSpec{Mode: "beginning"}},
		{"source.start.offsets", weir.StartSpec{Mode: weir.StartOffsets, Offsets: map[int32]int64{0: -3}}},
		{"source.start.timestamp", weir.StartSpec{Mode: weir.StartTimestamp}},
	} {
		_, err := weir.NewJob(jobSpec(t, in, out, 1, tc.start))
		var se *weir.SpecError
		if !errors.As(err, &se) || se.Key != tc.key {
			t.Errorf("start %+v: error %v, want one for %s", tc.start, err, tc.key)
		}
	}
	_, err := weir.ParseJobFile([]byte("name: j\nbrokers: 127.0.0.1:9092\nsource:\n  topic: in\n  start:\n    mode: timestamp\n    timestamp: 2024-13-01\n" +
		"key_field: k\ntimestamp_field: t\nwindow:\n  size: 1s\nsink:\n  topic: out\n"))
	var je *weir.JobFileError
	if !errors.As(err, &je) || je.Key != "source.start.timestamp" {
		t.Errorf("malformed timestamp: error %v, want one for source.start.timestamp", err)
	}

	spec := jobSpec(t, in, out, 1, weir.StartSpec{Mode: weir.StartOffsets, Offsets: map[int32]int64{0: 1, 5: 0}})
	spec.Source.Bounded = weir.BoundLatest
	_, err = runBounded(t, ctx, spec)
	if err == nil || !strings.Contains(err.Error(), "source.start.offsets") || !strings.Contains(err.Error(), "no partition 5") {
		t.Fatalf("offsets for partition 5 of a 2-partition topic: error %v, want one naming source.start.offsets and partition 5", err)
	}
	t.Logf("error: %v", err)
}

// firstAtOrAfter is, per partition, the index in log order of the first
// event with timestamp >= ts (the partition's length if none).
func firstAtOrAfter(events []verify.Event, partitions int, ts int64) map[int32]int {
	out := map[int32]int{}
	n := map[int32]int{}
	for _, e := range events {
		p := verify.Partition(e, partitions)
		if _, ok := out[p]; !ok && e.TS >= ts {
			out[p] = n[p]
		}
		n[p]++
	}
	for p, c := range n {
		if _, ok := out[p]; !ok {
			out[p] = c
		}
	}
	return out
}

// TestBoundedTimestampAndOffsets: a start timestamp in the middle of the
// topic and a bounded timestamp later select exactly the records between
// them on every partition; bounded offsets stop partition 0 at an offset
// and the other at its end.
func TestBoundedTimestampAndOffsets(t *testing.T) {
	const partitions = 2
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in := topic(t, partitions)
	events := produced(t, ctx, in, partitions, 2000)

	t.Run("timestamp", func(t *testing.T) {
		from, to := events[len(events)/3].TS, events[2*len(events)/3].TS
		first, last := firstAtOrAfter(events, partitions, from), firstAtOrAfter(events, partitions, to)
		var want []verify.Event
		idx := map[int32]int{}
		for _, e := range events {
			p := verify.Partition(e, partitions)
			if i := idx[p]; i >= first[p] && i < last[p] {
				want = append(want, e)
			}
			idx[p]++
		}
		out := topic(t, 1)
		spec := jobSpec(t, in, out, 1, weir.StartSpec{Mode: weir.StartTimestamp, Timestamp: time.UnixMilli(from)})
		spec.Source.Bounded, spec.Source.BoundedTimestamp = weir.BoundTimestamp, time.UnixMilli(to)
		job, err := runBounded(t, ctx, spec)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		checkOutput(t, ctx, job, out, want)
	})
	t.Run("offsets", func(t *testing.T) {
		spec := jobSpec(t, in, topic(t, 1), 1, weir.StartSpec{Mode: weir.StartEarliest})
		spec.Source.Bounded, spec.Source.BoundedOffsets = weir.BoundOffsets, map[int32]int64{0: 100}
		job, err := runBounded(t, ctx, spec)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if got, want := job.Stats().RecordsIn, 100+perPartition(events, partitions)[1]; got != want {
			t.Fatalf("read %d records, want %d", got, want)
		}
	})
}

// TestStartRestoreOverridesStart: a job restored from its checkpoint
// resumes at the checkpoint's offsets, although its start position is now
// latest (which would read nothing of what was produced in between).
func TestStartRestoreOverridesStart(t *testing.T) {
	const partitions = 2
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in, out := topic(t, partitions), topic(t, partitions)
	brokers := broker.Shared().Bootstrap()
	gen, err := verify.NewGenerator(genConfig(seed(t), partitions, 0))
	if err != nil {
		t.Fatal(err)
	}
	batch := func() []verify.Event {
		b := make([]verify.Event, sourceEvents)
		for i := range b {
			b[i] = gen.Next()
		}
		if err := verify.Produce(ctx, brokers, in, b, partitions); err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := batch()
	spec := jobSpec(t, in, out, 1, weir.StartSpec{Mode: weir.StartEarliest})
	spec.Checkpoint = weir.CheckpointSpec{Interval: time.Hour, Dir: t.TempDir()}
	job := newJob(t, spec)
	done := start(ctx, job)
	waitFor(t, done, "the first batch read", func() bool { return job.Stats().RecordsIn == int64(len(first)) })
	if _, err := job.StopWithSavepoint(ctx); err != nil {
		t.Fatalf("stop with savepoint: %v", err)
	}
	if err := wait(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}

	second := batch()
	spec.Source.Start = weir.StartSpec{Mode: weir.StartLatest}
	spec.Source.Bounded = weir.BoundLatest
	job2, err := runBounded(t, ctx, spec)
	if err != nil {
		t.Fatalf("Run after restore: %v", err)
	}
	st := job2.Stats()
	if st.RestoredFrom == 0 || st.RecordsIn != int64(len(second)) {
		t.Fatalf("stats %+v: want a restore and the %d records produced after the savepoint", st, len(second))
	}
}

// TestPartitionAddedWhileRunning: a 1-partition topic read at parallelism
// 2 (subtask 1 has no partition and is idle) grows to 3 partitions while
// the job runs; each new partition is found, assigned to the subtask that
// owns it and read from its earliest offset, and every window is right.
func TestPartitionAddedWhileRunning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in, out := topic(t, 1), topic(t, 2)
	brokers := broker.Shared().Bootstrap()
	gen, err := verify.NewGenerator(genConfig(seed(t), 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	next := func(n int) []verify.Event {
		b := make([]verify.Event, n)
		for i := range b {
			b[i] = gen.Next()
		}
		return b
	}
	before := next(sourceEvents)
	if err := verify.Produce(ctx, brokers, in, before, 1); err != nil {
		t.Fatal(err)
	}
	spec := jobSpec(t, in, out, 2, weir.StartSpec{Mode: weir.StartEarliest})
	spec.Source.PartitionDiscoveryInterval = 100 * time.Millisecond
	job := newJob(t, spec)
	done := start(ctx, job)
	waitFor(t, done, "the records of partition 0 read", func() bool { return job.Stats().RecordsIn == int64(len(before)) })

	if err := broker.Shared().CreatePartitions(ctx, in, 3); err != nil {
		t.Fatal(err)
	}
	// The new partitions' records go in first and partition 0's only once
	// the new ones are discovered and read: otherwise partition 0 could
	// advance the watermark past them before discovery (a partition not
	// yet discovered holds nothing back) and they would be late.
	after := next(sourceEvents)
	var toNew, toOld []verify.Event
	for _, e := range after {
		if verify.Partition(e, 3) == 0 {
			toOld = append(toOld, e)
		} else {
			toNew = append(toNew, e)
		}
	}
	if err := verify.Produce(ctx, brokers, in, toNew, 3); err != nil {
		t.Fatal(err)
	}
	waitForStats(t, done, job, "the new partitions discovered and read from their earliest offsets", func(st weir.Stats) bool {
		return st.PartitionsDiscovered == 2 && st.RecordsIn == int64(len(before)+len(toNew))
	})
	if err := verify.Produce(ctx, brokers, in, toOld, 3); err != nil {
		t.Fatal(err)
	}
	all := append(append([]verify.Event{}, before...), after...)
	waitFor(t, done, "every record read", func() bool { return job.Stats().RecordsIn == int64(len(all)) })
	waitFor(t, done, "lag 0 on the 3 partitions", func() bool {
		return reflect.DeepEqual(job.Stats().Lag, map[int32]int64{0: 0, 1: 0, 2: 0})
	})
	job.Drain()
	if err := wait(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkOutput(t, ctx, job, out, all)
}

// TestBoundedTransactionMarker: the topic holds an aborted transaction and
// then a committed one, so its last offset is a commit marker. A bounded
// read_committed job reads exactly the committed records and ends; a
// read_uncommitted one reads both.
func TestBoundedTransactionMarker(t *testing.T) {
	const n = 200
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in := topic(t, 1)
	events, err := verify.Generate(genConfig(seed(t), 1, 2*n))
	if err != nil {
		t.Fatal(err)
	}
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": broker.Shared().Bootstrap(), "transactional.id": broker.TopicName(t), "log_level": 3,
		"go.delivery.reports": false, // Flush counts unread reports
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatal(err)
	}
	for i, commit := range []bool{false, true} {
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, e := range events[i*n : (i+1)*n] {
			msg := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &in, Partition: 0}, Key: []byte(e.Key), Value: e.JSON()}
			if err := p.Produce(msg, nil); err != nil {
				t.Fatal(err)
			}
		}
		// Flush: an abort drops what the client has not sent yet.
		if left := p.Flush(int(waitTimeout.Milliseconds())); left != 0 {
			t.Fatalf("%d records not delivered within %v", left, waitTimeout)
		}
		if commit {
			err = p.CommitTransaction(ctx)
		} else {
			err = p.AbortTransaction(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// The records of both transactions and the two markers.
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": broker.Shared().Bootstrap(), "group.id": "unused", "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	_, hi, err := c.QueryWatermarkOffsets(in, 0, int(waitTimeout.Milliseconds()))
	c.Close()
	if err != nil || hi != 2*n+2 {
		t.Fatalf("the topic ends at offset %d (%v), want %d", hi, err, 2*n+2)
	}
	for _, tc := range []struct {
		isolation weir.Isolation
		want      int64
	}{{weir.ReadCommitted, n}, {weir.ReadUncommitted, 2 * n}} {
		t.Run(string(tc.isolation), func(t *testing.T) {
			spec := jobSpec(t, in, topic(t, 1), 1, weir.StartSpec{Mode: weir.StartEarliest})
			spec.Source.Bounded, spec.Source.Isolation = weir.BoundLatest, tc.isolation
			job, err := runBounded(t, ctx, spec)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := job.Stats().RecordsIn; got != tc.want {
				t.Fatalf("read %d records, want %d", got, tc.want)
			}
		})
	}
}
