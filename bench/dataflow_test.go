package bench

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weirstream/weir/internal/pgtest"

	"github.com/weirstream/weir/integration/verify"
)

func TestExpectedTotals(t *testing.T) {
	es := []verify.Event{
		{Key: "a", Seq: 0, Amount: 51}, // kept: the first of a
		{Key: "b", Seq: 1, Amount: 50}, // dropped: not above the threshold
		{Key: "a", Seq: 2, Amount: 1},  // dropped
		{Key: "b", Seq: 3, Amount: 100},
		{Key: "a", Seq: 4, Amount: 60},
	}
	got := expectedTotals(es)
	want := []runningTotal{
		{User: "a", Seq: 0, Count: 1, Sum: 102},
		{User: "b", Seq: 3, Count: 1, Sum: 200},
		{User: "a", Seq: 4, Count: 2, Sum: 222},
	}
	if !slices.Equal(got, want) {
		t.Errorf("totals\n got %v\nwant %v", got, want)
	}
}

// TestExpectedTotalsPerPartitionOrder: a system reads the partitions in
// any interleaving, but each partition in order; since the generator puts
// all events of a user on one partition, every interleaving gives the
// same running totals, and about half of the events pass the filter.
func TestExpectedTotalsPerPartitionOrder(t *testing.T) {
	const parts = 4
	es, err := verify.Generate(verify.GenConfig{Seed: 7, Keys: 1000, Partitions: parts, Events: 20_000, Start: eventEpoch, Step: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	want := expectedTotals(es)
	if n := len(want); n < len(es)*45/100 || n > len(es)*55/100 {
		t.Errorf("%d of %d events pass the filter, want about half", n, len(es))
	}
	byPart := make([][]verify.Event, parts)
	for _, e := range es {
		p := verify.Partition(e, parts)
		byPart[p] = append(byPart[p], e)
	}
	// Partition after partition, last first: the farthest interleaving
	// from the input order.
	var reordered []verify.Event
	for p := parts - 1; p >= 0; p-- {
		reordered = append(reordered, byPart[p]...)
	}
	if ok, v := compareTotals("input order", want, "partitions one after another", expectedTotals(reordered)); !ok {
		t.Error(v)
	}
	// Reordering within a user changes its totals: the check sees it.
	swapped := slices.Clone(es)
	var i, j int
	for i = range swapped {
		if swapped[i].Key == "u0" && swapped[i].Amount > dataflowMinAmount {
			break
		}
	}
	for j = i + 1; j < len(swapped); j++ {
		if swapped[j].Key == "u0" && swapped[j].Amount > dataflowMinAmount && swapped[j].Amount != swapped[i].Amount {
			break
		}
	}
	swapped[i], swapped[j] = swapped[j], swapped[i]
	if ok, v := compareTotals("input order", want, "u0 reordered", expectedTotals(swapped)); ok {
		t.Errorf("two events of u0 swapped compare equal: %s", v)
	}
}

func TestCompareTotals(t *testing.T) {
	weir := []runningTotal{{User: "u1", Seq: 4, Count: 2, Sum: 300}, {User: "u1", Seq: 1, Count: 1, Sum: 120}}
	flink := []runningTotal{weir[1], weir[0]}
	if ok, v := compareTotals(SystemWeir, weir, SystemFlink, flink); !ok || v != "OK: 2 records equal" {
		t.Fatalf("equal totals: %v %q", ok, v)
	}
	flink[1].Count = 3
	ok, v := compareTotals(SystemWeir, weir, SystemFlink, flink)
	if ok || !strings.Contains(v, "FAILED: record 1 (sorted by seq)") ||
		!strings.Contains(v, `weir {user="u1" seq=4 count=2 sum=300}`) || !strings.Contains(v, `flink {user="u1" seq=4 count=3 sum=300}`) {
		t.Errorf("changed count: %v %q", ok, v)
	}
	if ok, v := compareTotals(SystemWeir, weir, SystemFlink, flink[:1]); ok || !strings.Contains(v, "weir has 2 records, flink 1") {
		t.Errorf("missing record: %v %q", ok, v)
	}
}

func TestParseTotals(t *testing.T) {
	rec := func(key, value string) verify.Record { return verify.Record{Key: []byte(key), Value: []byte(value)} }
	got, err := parseTotals([]verify.Record{rec("u1", `{"user":"u1","seq":42,"count":3,"sum":120}`)})
	if err != nil || len(got) != 1 || got[0] != (runningTotal{User: "u1", Seq: 42, Count: 3, Sum: 120}) {
		t.Fatalf("parsed %v, %v", got, err)
	}
	for _, bad := range []struct{ key, value, err string }{
		{"u1", `{"user":"u1","seq":42,"count":3}`, "want the fields user, seq, count and sum"},
		{"u2", `{"user":"u1","seq":42,"count":3,"sum":120}`, `record key "u2", want the user "u1"`},
		{"u1", `nope`, "dataflow result 0"},
	} {
		if _, err := parseTotals([]verify.Record{rec(bad.key, bad.value)}); err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("%s %s: error %v, want %q", bad.key, bad.value, err, bad.err)
		}
	}
}

// TestWeirDataflowOnKfake runs the weir side of the dataflow workload as
// the harness does (runWeirJob, exactly-once, parallelism 2) over the
// harness's own padded events on a kfake cluster, and compares its
// read_committed output record by record with expectedTotals.
func TestWeirDataflowOnKfake(t *testing.T) {
	const parts = 4
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, "in", "out"), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers := c.ListenAddrs()[0]
	es, err := verify.Generate(verify.GenConfig{Seed: 3, Keys: 100, Partitions: parts, Events: 5000, Start: eventEpoch, Step: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	next := func() verify.Event { e := es[i]; i++; return e }
	if err := produceEvents(ctx, brokers, "in", parts, 100, len(es), next); err != nil {
		t.Fatal(err)
	}
	res, err := runWeirJob(ctx, weirJobArgs{
		Name: "dataflow-test", Brokers: brokers, Topic: "in", Out: "out", Mode: "dataflow",
		Delivery: "exactly-once", Parallelism: 2, CheckpointMs: 50, CheckpointDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := expectedTotals(es)
	if res.RecordsIn != int64(len(es)) || res.ResultsOut != int64(len(want)) {
		t.Errorf("read %d and wrote %d records, want %d and %d", res.RecordsIn, res.ResultsOut, len(es), len(want))
	}
	recs, err := verify.ReadRecords(ctx, brokers, "out", verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseTotals(recs)
	if err != nil {
		t.Fatal(err)
	}
	if ok, v := compareTotals(SystemWeir, got, "expected", want); !ok {
		t.Error(v)
	}
}

// TestWeirWindowIntoPostgresOnKfake runs the child's Q1 job into a
// PostgreSQL table (mode window-postgres), exactly once and at least
// once, over the harness's padded events on kfake, and checks the table
// holds every window once with its count and sum.
func TestWeirWindowIntoPostgresOnKfake(t *testing.T) {
	const parts = 4
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, "in"), kfake.Ports(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers := c.ListenAddrs()[0]
	es, err := verify.Generate(verify.GenConfig{Seed: 3, Keys: 100, Partitions: parts, Events: 5000, Start: eventEpoch, Step: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	next := func() verify.Event { e := es[i]; i++; return e }
	if err := produceEvents(ctx, brokers, "in", parts, 100, len(es), next); err != nil {
		t.Fatal(err)
	}
	pg := pgtest.Start(t)
	r := &runner{pgConn: pg.Conn(t), pg: pg}
	for _, d := range []string{"exactly-once", "at-least-once"} {
		table := pgTable(modePostgres, "out-"+d)
		if _, err := r.pgConn.Exec(ctx, "CREATE TABLE "+table+" (key text, window_start timestamptz, window_end timestamptz, count bigint, sum double precision)"); err != nil {
			t.Fatal(err)
		}
		res, err := runWeirJob(ctx, weirJobArgs{
			Name: "pg-" + d, Brokers: brokers, Topic: "in", Mode: modePostgres, DSN: r.pgDSN(modePostgres), Table: table,
			Delivery: d, Parallelism: 2, CheckpointMs: 50, CheckpointDir: t.TempDir(), WindowMs: 1000, OOOMs: 100,
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.pgResults(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		v := verify.Compare(len(es), verify.Expected(es, time.Second), got)
		if !v.OK || res.RecordsIn != int64(len(es)) {
			t.Fatalf("%s: read %d: %s", d, res.RecordsIn, v.Report())
		}
	}
}
