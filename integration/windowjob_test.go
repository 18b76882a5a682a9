package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	weir "github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

// eventsPerRun is the size of the generated input of the full runs.
const eventsPerRun = 20_000

// TestWindowJob reads a backlog of generated events from a 1-partition and
// from a 4-partition topic at parallelism 1, drains the job, and compares
// every window result with the expected one.
func TestWindowJob(t *testing.T) {
	for _, partitions := range []int{1, 4} {
		t.Run(fmt.Sprintf("partitions=%d", partitions), func(t *testing.T) {
			runBacklog(t, partitions, 1)
		})
	}
}

// TestWindowJobParallelism2 is TestWindowJob on 4 partitions at
// parallelism 2: two sources of two partitions each, records repartitioned
// by key to two window tasks.
func TestWindowJobParallelism2(t *testing.T) {
	runBacklog(t, 4, 2)
}

// runBacklog produces eventsPerRun events, then runs the job from the
// earliest offsets with drain and checks its output.
func runBacklog(t *testing.T, partitions, parallelism int) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in, out := topic(t, partitions), topic(t, partitions)
	brokers := broker.Shared().Bootstrap()
	events, err := verify.Generate(genConfig(seed(t), partitions, eventsPerRun))
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, in, events, partitions); err != nil {
		t.Fatal(err)
	}
	job := newJob(t, jobSpec(t, in, out, parallelism, weir.StartSpec{Mode: weir.StartEarliest}))
	job.Drain() // stop at the end offsets the sources find when they start
	if err := wait(t, start(ctx, job)); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkOutput(t, ctx, job, out, events)
}

// TestWindowJobLiveInput starts the job on an empty topic and produces the
// input in four bursts while it runs. Before each next burst it waits until
// the job has read everything produced so far, and after the first burst
// until results have reached Kafka: the job reads and fires windows on
// live input, not only on a backlog found at drain time.
func TestWindowJobLiveInput(t *testing.T) {
	const partitions, parallelism, bursts = 4, 2, 4
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in, out := topic(t, partitions), topic(t, partitions)
	brokers := broker.Shared().Bootstrap()
	gen, err := verify.NewGenerator(genConfig(seed(t), partitions, 0))
	if err != nil {
		t.Fatal(err)
	}
	job := newJob(t, jobSpec(t, in, out, parallelism, weir.StartSpec{Mode: weir.StartEarliest}))
	done := start(ctx, job)

	var events []verify.Event
	for b := range bursts {
		burst := make([]verify.Event, eventsPerRun/bursts)
		for i := range burst {
			burst[i] = gen.Next()
		}
		if err := verify.Produce(ctx, brokers, in, burst, partitions); err != nil {
			t.Fatal(err)
		}
		events = append(events, burst...)
		n := int64(len(events))
		waitFor(t, done, fmt.Sprintf("the job reading burst %d (%d records in total)", b+1, n),
			func() bool { return job.Stats().RecordsIn >= n })
		if b == 0 {
			// 5,000 events span 25 s of event time: windows have closed.
			waitFor(t, done, "results of the first burst acknowledged by Kafka",
				func() bool { return job.Stats().ResultsOut > 0 })
		}
		t.Logf("burst %d: %d events produced, stats %+v", b+1, len(burst), job.Stats())
	}
	job.Drain()
	if err := wait(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkOutput(t, ctx, job, out, events)
}

// TestBadRecordFailsJob puts one malformed record in the middle of the
// input: with bad_records: fail, Run must return a one-line error naming
// the topic, the partition and the offset of that record.
func TestBadRecordFailsJob(t *testing.T) {
	const events = 2000
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in, out := topic(t, 1), topic(t, 1)
	brokers := broker.Shared().Bootstrap()
	all, err := verify.Generate(genConfig(seed(t), 1, events))
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, in, all[:events/2], 1); err != nil {
		t.Fatal(err)
	}
	// Truncated JSON, with a line break a careless error would carry along.
	bad := []byte("{\"user\":\"u1\",\"ts\":1700000000000,\n\"amount\":")
	offset, err := produceRaw(ctx, brokers, in, 0, []byte("u1"), bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, in, all[events/2:], 1); err != nil {
		t.Fatal(err)
	}
	t.Logf("bad record at %s partition 0 offset %d", in, offset)

	job := newJob(t, jobSpec(t, in, out, 1, weir.StartSpec{Mode: weir.StartEarliest}))
	job.Drain()
	err = wait(t, start(ctx, job))
	if err == nil {
		t.Fatalf("Run returned nil; want an error for the bad record at %s/0 offset %d (stats %+v)", in, offset, job.Stats())
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if !strings.Contains(msg, in) {
		t.Errorf("error does not name the topic %q", in)
	}
	if !strings.Contains(msg, in+"/0 ") && !strings.Contains(msg, "partition 0") {
		t.Errorf("error does not name partition 0")
	}
	if !strings.Contains(msg, fmt.Sprintf("offset %d", offset)) {
		t.Errorf("error does not name offset %d", offset)
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("the job ended by its context, not by the bad record: %v", err)
	}
	st := job.Stats()
	if st.BadRecords != 1 || st.RecordsIn > int64(offset) {
		t.Errorf("stats %+v, want 1 bad record and at most the %d records before it in", st, offset)
	}
}

// TestMissingSourceTopic checks both the check made before a job starts
// and the job itself against a source topic that does not exist: each
// error names source.topic and the topic, and neither creates the topic.
func TestMissingSourceTopic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	missing, out := broker.TopicName(t), topic(t, 1)
	spec := jobSpec(t, missing, out, 1, weir.StartSpec{Mode: weir.StartEarliest})
	brokers := broker.Shared().Bootstrap()
	want := `source.topic: topic "` + missing + `" does not exist on ` + brokers +
		"; create it (e.g. kafka-topics.sh --create --topic " + missing + ") or fix source.topic"

	check := func(when string) {
		t.Helper()
		err := weir.CheckBrokers(ctx, spec, 30*time.Second)
		if err == nil || err.Error() != want {
			t.Fatalf("CheckBrokers %s: got %v, want %s", when, err, want)
		}
		var se *weir.SpecError
		if !errors.As(err, &se) || se.Key != "source.topic" {
			t.Errorf("CheckBrokers %s: error is not a *SpecError for source.topic: %#v", when, err)
		}
	}
	check("before the job")

	job := newJob(t, spec)
	job.Drain()
	err := wait(t, start(ctx, job))
	if err == nil {
		t.Fatalf("Run returned nil for the missing topic %q", missing)
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if !strings.Contains(msg, `topic "`+missing+`" does not exist`) || !strings.Contains(msg, "source.topic") {
		t.Errorf("error %q does not say that topic %q does not exist and name source.topic", msg, missing)
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	check("after the job") // the job did not create the topic
}

// TestStartLatestAndTimestamp checks the latest and timestamp start modes.
func TestStartLatestAndTimestamp(t *testing.T) {
	t.Run("latest", testStartLatest)
	t.Run("timestamp", testStartTimestamp)
}

// testStartLatest: events produced before the job starts are not read;
// events produced after it are. The job's start position is found by
// producing one probe event at a time until the job has read one; only the
// probes from there on and the events after them may be counted.
func testStartLatest(t *testing.T) {
	const events, maxProbes = 4000, 100
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in, out := topic(t, 1), topic(t, 1)
	brokers := broker.Shared().Bootstrap()
	s := seed(t)

	// Before the job: a backlog in 2020 that must not be read.
	oldCfg := genConfig(s, 1, 1000)
	oldCfg.Start = 1_600_000_000_000
	old, err := verify.Generate(oldCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, in, old, 1); err != nil {
		t.Fatal(err)
	}

	job := newJob(t, jobSpec(t, in, out, 1, weir.StartSpec{Mode: weir.StartLatest}))
	done := start(ctx, job)

	// Probes, a minute of event time before the new events, in a window of
	// their own.
	const probeTS = 1_700_000_000_000 - 60_000
	var probes []verify.Event
	for job.Stats().RecordsIn == 0 {
		if len(probes) == maxProbes {
			t.Fatalf("the job read none of %d probe events produced after it started", maxProbes)
		}
		p := verify.Event{Key: "probe", TS: probeTS, Amount: 1, Seq: int64(len(probes))}
		if err := verify.Produce(ctx, brokers, in, []verify.Event{p}, 1); err != nil {
			t.Fatal(err)
		}
		probes = append(probes, p)
		waitProbe(t, done, job)
	}

	fresh, err := verify.Generate(genConfig(s, 1, events))
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, in, fresh, 1); err != nil {
		t.Fatal(err)
	}
	job.Drain()
	if err := wait(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	read := job.Stats().RecordsIn - int64(len(fresh))
	t.Logf("%d probes produced, %d counted by the job", len(probes), read)
	if read < 1 || read > int64(len(probes)) {
		t.Fatalf("the job read %d records, %d more than the %d new events; between 1 and %d probes could have been read",
			job.Stats().RecordsIn, read, len(fresh), len(probes))
	}
	// Compare also checks the probe window's count, and that no window
	// of the old events was written.
	checkOutput(t, ctx, job, out, append(probes[len(probes)-int(read):], fresh...))
}

// waitProbe waits a little for the job to read a probe: until it has read
// a record or a second has passed. It fails the test if the job returns.
func waitProbe(t *testing.T, done <-chan error, job *weir.Job) {
	t.Helper()
	deadline := time.After(time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for job.Stats().RecordsIn == 0 {
		select {
		case err := <-done:
			t.Fatalf("the job returned (%v) while waiting for it to read a probe", err)
		case <-deadline:
			return
		case <-tick.C:
		}
	}
}

// testStartTimestamp: the job starts at the first record whose timestamp
// is at or after the event time of the middle event, and reads from there.
func testStartTimestamp(t *testing.T) {
	const events = 4000
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	in, out := topic(t, 1), topic(t, 1)
	brokers := broker.Shared().Bootstrap()
	all, err := verify.Generate(genConfig(seed(t), 1, events))
	if err != nil {
		t.Fatal(err)
	}
	// Produce writes each event with its event time as record timestamp.
	if err := verify.Produce(ctx, brokers, in, all, 1); err != nil {
		t.Fatal(err)
	}
	from := all[events/2].TS
	first := 0
	for first < len(all) && all[first].TS < from {
		first++
	}
	t.Logf("start timestamp %d: first record at offset %d of %d", from, first, len(all))

	job := newJob(t, jobSpec(t, in, out, 1, weir.StartSpec{Mode: weir.StartTimestamp, Timestamp: time.UnixMilli(from)}))
	job.Drain()
	if err := wait(t, start(ctx, job)); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkOutput(t, ctx, job, out, all[first:])
}
