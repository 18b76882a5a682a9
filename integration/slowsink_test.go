package integration

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	weir "github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

// setProduceQuota sets (or, with rate 0, removes) a producer_byte_rate
// client quota for clientID on the real broker: Kafka then throttles that
// client's produce requests.
func setProduceQuota(ctx context.Context, t *testing.T, brokers, clientID string, rate float64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrAlterClientQuotasRequest()
	e := kmsg.NewAlterClientQuotasRequestEntry()
	ent := kmsg.NewAlterClientQuotasRequestEntryEntity()
	ent.Type, ent.Name = "client-id", &clientID
	e.Entity = append(e.Entity, ent)
	op := kmsg.NewAlterClientQuotasRequestEntryOp()
	op.Key, op.Value, op.Remove = "producer_byte_rate", rate, rate == 0
	e.Ops = append(e.Ops, op)
	req.Entries = append(req.Entries, e)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Entries {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			t.Fatalf("alter client quota: %v", err)
		}
	}
}

// TestMatrixRow11SlowSink is crash-matrix row 11 against the real broker:
// the exactly-once sink's producer is throttled by a Kafka client quota, so
// the sink is the bottleneck. Checkpoints still complete (barriers are not
// stuck behind the backlog), the heap stays bounded (credits stop the
// sources instead of queues growing), and the output is exactly once.
func TestMatrixRow11SlowSink(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers := broker.Shared().Bootstrap()
	in, out := topic(t, 4), topic(t, 4)
	// Many keys and short windows: the output is large next to the quota.
	gen := genConfig(seed(t), 4, 30_000)
	gen.Keys = 2000
	events, err := verify.Generate(gen)
	if err != nil {
		t.Fatal(err)
	}
	// Half the input first: the job runs on it until a periodic checkpoint
	// has completed behind the throttled output; then the rest, and drain.
	half := len(events) / 2
	if err := verify.Produce(ctx, brokers, in, events[:half], 4); err != nil {
		t.Fatal(err)
	}
	const clientID, quota = "weir-slow-sink", 256 << 10 // 256 KiB/s
	setProduceQuota(ctx, t, brokers, clientID, quota)
	defer setProduceQuota(context.Background(), t, brokers, clientID, 0)

	var checkpoints atomic.Int64
	firstDone := make(chan struct{})
	job, err := weir.NewJob(weir.JobSpec{
		Name: broker.TopicName(t), Brokers: brokers,
		Source:   weir.SourceSpec{Topic: in, Start: weir.StartSpec{Mode: weir.StartEarliest}},
		KeyField: "user", TimestampField: "ts",
		Window:      weir.WindowSpec{Size: 100 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond},
		Aggregate:   weir.AggregateSpec{ValueField: "amount"},
		Sink:        weir.SinkSpec{Topic: out, Properties: map[string]string{"client.id": clientID}},
		Delivery:    weir.ExactlyOnce,
		Parallelism: 2,
		Restart:     weir.RestartSpec{Strategy: "none"},
		Checkpoint:  weir.CheckpointSpec{Interval: 100 * time.Millisecond, Dir: t.TempDir(), Timeout: time.Minute},
	}, weir.WithFlowControl(2, 256), weir.WithCheckpointListener(func(uint64, bool) {
		if checkpoints.Add(1) == 1 {
			close(firstDone)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	var peakHeap atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peakHeap.Load() {
					peakHeap.Store(ms.HeapInuse)
				}
			}
		}
	}()
	start := time.Now()
	ran := make(chan error, 1)
	go func() { ran <- job.Run(ctx) }()
	select {
	case <-firstDone:
	case err := <-ran:
		t.Fatalf("the job ended before its first checkpoint: %v", err)
	}
	if err := verify.Produce(ctx, brokers, in, events[half:], 4); err != nil {
		t.Fatal(err)
	}
	job.Drain()
	runErr := <-ran // Run returns when ctx (testTimeout) ends at the latest
	took := time.Since(start)
	close(stopSampling)
	<-sampled
	if runErr != nil {
		t.Fatal(runErr)
	}
	got, err := verify.ReadResults(ctx, brokers, out, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	resultBytes := 0
	for _, r := range got {
		resultBytes += len(r.JSON())
	}
	t.Logf("%d results (%d KiB) through a %d KiB/s quota in %v; %d checkpoints completed; peak heap %d MiB",
		len(got), resultBytes>>10, quota>>10, took.Round(time.Millisecond), checkpoints.Load(), peakHeap.Load()>>20)
	// The fault applied: the output is at least twice what the quota lets
	// through in a second, so the sink was throttled for seconds.
	if resultBytes < 2*quota {
		t.Fatalf("only %d KiB of output: too little for the quota to throttle the sink", resultBytes>>10)
	}
	// A periodic checkpoint completed while the sink was throttled (the
	// job ran on half the input until one had), and the final one:
	// aligned barriers queue behind the throttled batches (as in Flink),
	// so they come slowly, but they come.
	if checkpoints.Load() < 2 {
		t.Fatalf("%d checkpoints completed under backpressure, want at least 2", checkpoints.Load())
	}
	if peakHeap.Load() > 512<<20 {
		t.Fatalf("peak heap %d MiB under backpressure, want < 512 MiB", peakHeap.Load()>>20)
	}
	v := verify.Compare(len(events), verify.Expected(events, 100*time.Millisecond), got)
	t.Log(v.String())
	if !v.OK {
		t.Fatal(v.Report())
	}
}
