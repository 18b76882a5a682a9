package weir

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weirstream/weir/integration/verify"
)

// TestJobOnKfake runs the window job on the in-process broker, drains it,
// and compares every window result with the verifier's expected one.
func TestJobOnKfake(t *testing.T) {
	for _, p := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("parallelism=%d", p), func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "in", "out"), kfake.Ports(0))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			brokers := c.ListenAddrs()[0]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			gen := verify.GenConfig{Seed: int64(p), Keys: 50, Partitions: 4, Events: 5000,
				Start: 1_700_000_000_000, Step: 10 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond}
			events, err := verify.Generate(gen)
			if err != nil {
				t.Fatal(err)
			}
			if err := verify.Produce(ctx, brokers, "in", events, 4); err != nil {
				t.Fatal(err)
			}
			job, err := NewJob(JobSpec{
				Name: "t", Brokers: brokers,
				Source:   SourceSpec{Topic: "in", Start: StartSpec{Mode: StartEarliest}},
				KeyField: "user", TimestampField: "ts",
				Window:      WindowSpec{Size: time.Second, OutOfOrderness: gen.OutOfOrderness},
				Aggregate:   AggregateSpec{ValueField: "amount"},
				Sink:        SinkSpec{Topic: "out"},
				Parallelism: p,
			})
			if err != nil {
				t.Fatal(err)
			}
			job.Drain()
			if err := job.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if st := job.Stats(); st.RecordsIn != int64(len(events)) || st.LateDropped != 0 {
				t.Fatalf("stats %+v, want %d records in and none late", st, len(events))
			}
			got, err := verify.ReadResults(ctx, brokers, "out", verify.ReadCommitted)
			if err != nil {
				t.Fatal(err)
			}
			v := verify.Compare(len(events), verify.Expected(events, time.Second), got)
			t.Log(v.String())
			if !v.OK {
				t.Fatal(v.Report())
			}
		})
	}
}
