package bench

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/integration/verify"
)

func TestCompareResults(t *testing.T) {
	weir := []verify.Result{
		{Key: "u2", WindowStart: 0, WindowEnd: 10_000, Count: 1, Sum: 5},
		{Key: "u1", WindowStart: 5_000, WindowEnd: 15_000, Count: 2, Sum: 7},
		{Key: "u1", WindowStart: 0, WindowEnd: 10_000, Count: 3, Sum: 9},
	}
	// The same records in another order: equal.
	flink := []verify.Result{weir[2], weir[0], weir[1]}
	ok, v := compareResults(SystemWeir, weir, SystemFlink, flink)
	if !ok || v != "OK: 3 records equal" {
		t.Fatalf("equal outputs: %v %q", ok, v)
	}

	// One sum changed: the first difference, both records and the index
	// in (key, window_start, window_end) order.
	changed := slices.Clone(flink)
	changed[2].Sum = 8 // u1 [5000,15000), index 1 when sorted
	ok, v = compareResults(SystemWeir, weir, SystemFlink, changed)
	if ok {
		t.Fatalf("a changed sum compared equal: %q", v)
	}
	for _, want := range []string{"FAILED: record 1 ", `weir {key="u1" window=[5000,15000) count=2 sum=7}`, `flink {key="u1" window=[5000,15000) count=2 sum=8}`} {
		if !strings.Contains(v, want) {
			t.Errorf("verdict %q lacks %q", v, want)
		}
	}

	// A record missing at the end: the shorter side shows none.
	ok, v = compareResults(SystemWeir, weir, SystemFlink, []verify.Result{weir[1], weir[2]})
	if ok || !strings.Contains(v, `record 2 `) || !strings.Contains(v, `flink {none}`) || !strings.Contains(v, "weir has 3 records, flink 2") {
		t.Errorf("missing record: %v %q", ok, v)
	}
	// A duplicate is a difference too.
	ok, v = compareResults(SystemWeir, append(slices.Clone(weir), weir[0]), SystemFlink, flink)
	if ok || !strings.Contains(v, "weir has 4 records, flink 3") {
		t.Errorf("duplicate record: %v %q", ok, v)
	}
	// Nothing on either side is equal.
	if ok, v := compareResults(SystemWeir, nil, SystemFlink, nil); !ok || v != "OK: 0 records equal" {
		t.Errorf("empty outputs: %v %q", ok, v)
	}
}

func TestComparePairs(t *testing.T) {
	weir := []joinPair{{User: "u1", L: 4, R: 1, LT: 100, RT: 90}, {User: "u1", L: 0, R: 7, LT: 50, RT: 60}}
	flink := []joinPair{weir[1], weir[0]}
	if ok, v := comparePairs(SystemWeir, weir, SystemFlink, flink); !ok || v != "OK: 2 records equal" {
		t.Fatalf("equal pairs: %v %q", ok, v)
	}
	flink[1].RT = 91
	ok, v := comparePairs(SystemWeir, weir, SystemFlink, flink)
	if ok || !strings.Contains(v, "FAILED: record 1 (sorted by l, r)") ||
		!strings.Contains(v, `weir {user="u1" l=4 r=1 lt=100 rt=90}`) || !strings.Contains(v, `flink {user="u1" l=4 r=1 lt=100 rt=91}`) {
		t.Errorf("changed pair: %v %q", ok, v)
	}
}

func TestExpectedSliding(t *testing.T) {
	es := []verify.Event{
		{Key: "a", TS: 1_000, Amount: 1}, // windows [-5000,5000) and [0,10000)
		{Key: "a", TS: 6_000, Amount: 2}, // [0,10000) and [5000,15000)
		{Key: "b", TS: 5_000, Amount: 4}, // [0,10000) and [5000,15000): a start is inclusive
	}
	got := expectedSliding(es, 10_000, 5_000)
	want := []verify.Result{
		{Key: "a", WindowStart: -5_000, WindowEnd: 5_000, Count: 1, Sum: 1},
		{Key: "a", WindowStart: 0, WindowEnd: 10_000, Count: 2, Sum: 3},
		{Key: "a", WindowStart: 5_000, WindowEnd: 15_000, Count: 1, Sum: 2},
		{Key: "b", WindowStart: 0, WindowEnd: 10_000, Count: 1, Sum: 4},
		{Key: "b", WindowStart: 5_000, WindowEnd: 15_000, Count: 1, Sum: 4},
	}
	if !slices.Equal(got, want) {
		t.Errorf("sliding windows\n got %v\nwant %v", got, want)
	}
	// With the slide equal to the size they are the tumbling windows.
	gen, err := verify.Generate(verify.GenConfig{Seed: 3, Keys: 20, Partitions: 2, Events: 3000, Start: eventEpoch, Step: time.Millisecond, OutOfOrderness: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tumbling := verify.Expected(gen, time.Second)
	slices.SortFunc(tumbling, cmpResult)
	if ok, v := compareResults("sliding", expectedSliding(gen, 1000, 1000), "tumbling", tumbling); !ok {
		t.Error(v)
	}
}

func TestExpectedSessions(t *testing.T) {
	es := []verify.Event{
		{Key: "a", TS: 3_000, Amount: 4}, // out of order: sorted per key
		{Key: "a", TS: 1_000, Amount: 1},
		{Key: "a", TS: 2_000, Amount: 2}, // exactly one gap after: the windows touch and merge
		{Key: "a", TS: 4_001, Amount: 8}, // more than a gap after 3000: a new session
		{Key: "b", TS: 1_500, Amount: 16},
	}
	got := expectedSessions(es, 1_000)
	want := []verify.Result{
		{Key: "a", WindowStart: 1_000, WindowEnd: 4_000, Count: 3, Sum: 7},
		{Key: "a", WindowStart: 4_001, WindowEnd: 5_001, Count: 1, Sum: 8},
		{Key: "b", WindowStart: 1_500, WindowEnd: 2_500, Count: 1, Sum: 16},
	}
	if !slices.Equal(got, want) {
		t.Errorf("sessions\n got %v\nwant %v", got, want)
	}
}

func TestExpectedPairs(t *testing.T) {
	es := []verify.Event{
		{Key: "a", TS: 1_000, Seq: 0}, // left
		{Key: "a", TS: 900, Seq: 1},   // right, a.ts-100: on the lower bound
		{Key: "a", TS: 1_300, Seq: 3}, // right, a.ts+300: on the upper bound
		{Key: "a", TS: 899, Seq: 5},   // right, below the band
		{Key: "a", TS: 1_301, Seq: 7}, // right, above the band
		{Key: "b", TS: 1_000, Seq: 9}, // right, another user
		{Key: "a", TS: 1_250, Seq: 2}, // left: joins 3 and 7 (1150..1550)
	}
	got := expectedPairs(es, -100, 300)
	want := []joinPair{
		{User: "a", L: 0, R: 1, LT: 1_000, RT: 900},
		{User: "a", L: 0, R: 3, LT: 1_000, RT: 1_300},
		{User: "a", L: 2, R: 3, LT: 1_250, RT: 1_300},
		{User: "a", L: 2, R: 7, LT: 1_250, RT: 1_301},
	}
	if !slices.Equal(got, want) {
		t.Errorf("pairs\n got %v\nwant %v", got, want)
	}
}

func TestParsePairs(t *testing.T) {
	got, err := parsePairs([][]byte{[]byte(`{"user":"u1","l":2,"r":5,"lt":10,"rt":12}`)})
	if err != nil || len(got) != 1 || got[0] != (joinPair{User: "u1", L: 2, R: 5, LT: 10, RT: 12}) {
		t.Fatalf("parsed %v, %v", got, err)
	}
	for _, bad := range []string{`{"user":"u1","l":2,"r":5,"lt":10}`, `nope`} {
		if _, err := parsePairs([][]byte{[]byte(bad)}); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}

func TestWorkloads(t *testing.T) {
	names := func(c Config) []string {
		var out []string
		for _, w := range workloads(c) {
			n := w.mode
			if w.checkOnly {
				n += " (check)"
			}
			out = append(out, n)
		}
		return out
	}
	c := QuickConfig()
	if got, want := names(c), []string{"ceiling", "window", "window", "passthrough", "passthrough", "sliding", "session", "interval-join", "dataflow", modePostgres, modePostgres}; !slices.Equal(got, want) {
		t.Errorf("quick workloads %v, want %v", got, want)
	}
	if got := names(DefaultConfig()); !slices.Contains(got, "interval-join (check)") || !slices.Contains(got, "dataflow") || got[len(got)-1] != modePostgres {
		t.Errorf("default workloads %v: want the interval join in the check only, and the dataflow and PostgreSQL workloads timed", got)
	}
	c.Only = []string{"postgres"}
	if got, want := names(c), []string{modePostgres, modePostgres}; !slices.Equal(got, want) {
		t.Errorf("-only postgres workloads %v, want %v", got, want)
	}
	c.Only = []string{"session", "interval"}
	c.IntervalJoin = false
	if got, want := names(c), []string{"session", "interval-join (check)"}; !slices.Equal(got, want) {
		t.Errorf("-only session,interval workloads %v, want %v", got, want)
	}
	c.Only = []string{"dataflow"}
	if got, want := names(c), []string{"dataflow"}; !slices.Equal(got, want) {
		t.Errorf("-only dataflow workloads %v, want %v", got, want)
	}
	c.Self, c.RepoRoot = "/bin/true", "/"
	if err := c.validate(); err != nil {
		t.Errorf("-only dataflow: %v", err)
	}
	c.Only = []string{"sliding", "joins"}
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), `only "joins" is not a workload`) {
		t.Errorf("unknown -only: %v", err)
	}
}
