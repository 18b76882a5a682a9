package integration

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	weir "github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

// TestMain starts the shared single-node KRaft broker; it prints the Kafka
// version line, and a broker that does not start fails the package.
func TestMain(m *testing.M) { os.Exit(broker.Main(m, 1)) }

var seedFlag = flag.Int64("seed", 0, "generator seed to replay (0: a fresh seed per test)")

// testTimeout bounds one test: producing, running and draining the job and
// reading the results back.
const testTimeout = 3 * time.Minute

// waitTimeout bounds each wait for the job to make progress.
const waitTimeout = time.Minute

// windowSize is the job's tumbling window.
const windowSize = time.Second

// seed returns the generator seed of the test and logs how to replay it.
func seed(t *testing.T) int64 {
	t.Helper()
	s := *seedFlag
	if s == 0 {
		s = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay: go test -p 1 -count=1 -v ./integration/ -run '^%s$' -seed %d)",
		s, strings.SplitN(t.Name(), "/", 2)[0], s)
	return s
}

// genConfig is the generator setup shared by the tests: 50 keys, event time
// advancing 5 ms per event from 2023-11-14, up to 200 ms out of order.
func genConfig(seed int64, partitions, events int) verify.GenConfig {
	return verify.GenConfig{
		Seed: seed, Keys: 50, Partitions: partitions, Events: events,
		Start: 1_700_000_000_000, Step: 5 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond,
	}
}

// topic creates a fresh topic on the shared broker with time-based
// retention off (see the package doc) and returns its name.
func topic(t *testing.T, partitions int) string {
	t.Helper()
	c := broker.Shared()
	if c == nil {
		t.Fatal("integration: no shared cluster; TestMain must call broker.Main")
	}
	name := broker.TopicName(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.CreateTopic(ctx, name, partitions, map[string]string{"retention.ms": "-1"}); err != nil {
		t.Fatal(err)
	}
	return name
}

// jobSpec is the reference window job from in to out.
func jobSpec(t *testing.T, in, out string, parallelism int, start weir.StartSpec) weir.JobSpec {
	return weir.JobSpec{
		Name:           broker.TopicName(t),
		Brokers:        broker.Shared().Bootstrap(),
		Source:         weir.SourceSpec{Topic: in, Start: start},
		KeyField:       "user",
		TimestampField: "ts",
		Window:         weir.WindowSpec{Size: windowSize, OutOfOrderness: 200 * time.Millisecond},
		Aggregate:      weir.AggregateSpec{ValueField: "amount"},
		Sink:           weir.SinkSpec{Topic: out},
		Parallelism:    parallelism,
	}
}

// newJob builds the job with its log (warnings and errors) in the test log.
func newJob(t *testing.T, spec weir.JobSpec) *weir.Job {
	t.Helper()
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	job, err := weir.NewJob(spec, weir.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// start runs job in its own goroutine; the channel gets Run's result.
func start(ctx context.Context, job *weir.Job) <-chan error {
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	return done
}

// wait returns Run's result, or fails the test when the job has not
// returned within waitTimeout.
func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("the job did not return within %v", waitTimeout)
		return nil
	}
}

// waitFor polls cond until it holds, failing the test with what after
// waitTimeout, or at once when the job returns first.
func waitFor(t *testing.T, done <-chan error, what string, cond func() bool) {
	t.Helper()
	waitForStats(t, done, nil, what, func(weir.Stats) bool { return cond() })
}

// waitForStats is waitFor on the job's stats, which a timeout prints (how
// far the job got); with job nil, cond gets zero stats.
func waitForStats(t *testing.T, done <-chan error, job *weir.Job, what string, cond func(weir.Stats) bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	stats := func() (st weir.Stats) {
		if job != nil {
			st = job.Stats()
		}
		return st
	}
	for st := stats(); !cond(st); st = stats() {
		select {
		case err := <-done:
			t.Fatalf("the job returned (%v) while waiting for %s", err, what)
		case <-deadline:
			if job == nil {
				t.Fatalf("%s: not within %v", what, waitTimeout)
			}
			t.Fatalf("%s: not within %v (stats %+v)", what, waitTimeout, st)
		case <-tick.C:
		}
	}
}

// checkOutput asserts the job's counters and compares the results in out
// with the windows of events, exactly once, and logs the verdict line.
func checkOutput(t *testing.T, ctx context.Context, job *weir.Job, out string, events []verify.Event) {
	t.Helper()
	st := job.Stats()
	t.Logf("stats: %+v", st)
	if st.RecordsIn != int64(len(events)) || st.LateDropped != 0 || st.BadRecords != 0 {
		t.Errorf("stats %+v, want %d records in, none late, none bad", st, len(events))
	}
	got, err := verify.ReadResults(ctx, broker.Shared().Bootstrap(), out, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	v := verify.Compare(len(events), verify.Expected(events, windowSize), got)
	t.Log(v.String())
	if !v.OK {
		t.Fatal(v.Report())
	}
	if st.ResultsOut != int64(len(got)) {
		t.Errorf("stats report %d results acknowledged, the output topic has %d", st.ResultsOut, len(got))
	}
}

// produceRaw writes one record with the given value to partition of topic
// and returns its offset.
func produceRaw(ctx context.Context, brokers, topic string, partition int32, key, value []byte) (int64, error) {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":  brokers,
		"enable.idempotence": true,
		"log_level":          3,
	})
	if err != nil {
		return 0, fmt.Errorf("integration: producer: %w", err)
	}
	defer p.Close()
	reports := make(chan kafka.Event, 1)
	msg := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: partition}, Key: key, Value: value}
	if err := p.Produce(msg, reports); err != nil {
		return 0, fmt.Errorf("integration: produce to %s/%d: %w", topic, partition, err)
	}
	select {
	case ev := <-reports:
		m, ok := ev.(*kafka.Message)
		if !ok {
			return 0, fmt.Errorf("integration: produce to %s/%d: unexpected report %v", topic, partition, ev)
		}
		if m.TopicPartition.Error != nil {
			return 0, fmt.Errorf("integration: produce to %s/%d: %w", topic, partition, m.TopicPartition.Error)
		}
		return int64(m.TopicPartition.Offset), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("integration: produce to %s/%d: no delivery report: %w", topic, partition, ctx.Err())
	}
}

// testWriter writes the job's log lines to the test log, until the test
// ends (the job may still log while it stops).
type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}
