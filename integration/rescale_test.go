package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	weir "github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

// TestMatrixRow13Rescale is crash-matrix row 13 against the real broker:
// an exactly-once job with parallelism 2 is stopped mid-stream (its open
// transactions are left to the broker) and restarted with parallelism 3,
// then 1. Window state moves by key group, positions by partition, the
// pending transactions of each old sink subtask go to one new subtask, and
// the transactional ids of old subtasks that no longer exist are fenced.
// The output read with read_committed has every window exactly once, and no
// transaction is left open (the read finishes).
func TestMatrixRow13Rescale(t *testing.T) {
	for _, newP := range []int{3, 1} {
		t.Run(fmt.Sprintf("2to%d", newP), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			brokers := broker.Shared().Bootstrap()
			in, out := topic(t, 4), topic(t, 4)
			events, err := verify.Generate(genConfig(seed(t), 4, 120_000))
			if err != nil {
				t.Fatal(err)
			}
			if err := verify.Produce(ctx, brokers, in, events, 4); err != nil {
				t.Fatal(err)
			}
			spec := weir.JobSpec{
				Name: broker.TopicName(t), Brokers: brokers,
				Source:   weir.SourceSpec{Topic: in, Start: weir.StartSpec{Mode: weir.StartEarliest}},
				KeyField: "user", TimestampField: "ts",
				Window:      weir.WindowSpec{Size: windowSize, OutOfOrderness: 200 * time.Millisecond},
				Aggregate:   weir.AggregateSpec{ValueField: "amount"},
				Sink:        weir.SinkSpec{Topic: out},
				Delivery:    weir.ExactlyOnce,
				Parallelism: 2,
				Restart:     weir.RestartSpec{Strategy: "none"},
				Checkpoint:  weir.CheckpointSpec{Interval: 50 * time.Millisecond, Dir: t.TempDir(), Timeout: time.Minute},
			}
			// Run 1 is cancelled right after its second checkpoint.
			runCtx, stop := context.WithCancel(ctx)
			job1, err := weir.NewJob(spec, weir.WithFlowControl(1, 64), weir.WithCheckpointListener(func(id uint64, _ bool) {
				if id >= 2 {
					stop()
				}
			}))
			if err != nil {
				t.Fatal(err)
			}
			if err := job1.Run(runCtx); !errors.Is(err, context.Canceled) {
				t.Fatalf("run 1: %v, want it cancelled", err)
			}
			st1 := job1.Stats()
			spec.Parallelism = newP
			job2, err := weir.NewJob(spec)
			if err != nil {
				t.Fatal(err)
			}
			job2.Drain()
			if err := job2.Run(ctx); err != nil {
				t.Fatal(err)
			}
			st2 := job2.Stats()
			t.Logf("run 1 (parallelism 2): read %d, last checkpoint %d; run 2 (parallelism %d): restored %d, read %d",
				st1.RecordsIn, st1.LastCheckpoint, newP, st2.RestoredFrom, st2.RecordsIn)
			if st2.RestoredFrom < 2 {
				t.Fatalf("run 2 restored checkpoint %d, want the one run 1 completed last", st2.RestoredFrom)
			}
			got, err := verify.ReadResults(ctx, brokers, out, verify.ReadCommitted)
			if err != nil {
				t.Fatal(err)
			}
			v := verify.Compare(len(events), verify.Expected(events, windowSize), got)
			t.Log(v.String())
			if !v.OK {
				t.Fatal(v.Report())
			}
		})
	}
}
