package verify

import (
	"slices"
	"strings"
	"testing"
)

// sessionCase is a hand-made session job run with gap 100ms:
//
//	a@1000 a@1050        session a[1000,1150) fires: count 2
//	a@1220               session a[1220,1320) fires: count 1
//	a@1140 (late, within the lateness) bridges them: a[1000,1320) count 4
//	a@500  (too late)    to the late topic
//	b@2000 b@2050        session b[2000,2150) fires: count 2
//	b@2020 (late, within the lateness) fires it again: count 3
func sessionCase() (input []Event, results []Result, late []Record) {
	input = []Event{
		{Key: "a", TS: 1000, Amount: 1, Seq: 1},
		{Key: "a", TS: 1050, Amount: 2, Seq: 2},
		{Key: "a", TS: 1220, Amount: 4, Seq: 3},
		{Key: "a", TS: 1140, Amount: 8, Seq: 4},
		{Key: "a", TS: 500, Amount: 16, Seq: 5},
		{Key: "b", TS: 2000, Amount: 32, Seq: 6},
		{Key: "b", TS: 2050, Amount: 64, Seq: 7},
		{Key: "b", TS: 2020, Amount: 128, Seq: 8},
	}
	results = []Result{
		{Key: "a", WindowStart: 1000, WindowEnd: 1150, Count: 2, Sum: 3},
		{Key: "b", WindowStart: 2000, WindowEnd: 2150, Count: 2, Sum: 96},
		{Key: "a", WindowStart: 1220, WindowEnd: 1320, Count: 1, Sum: 4},
		{Key: "a", WindowStart: 1000, WindowEnd: 1320, Count: 4, Sum: 15},
		{Key: "b", WindowStart: 2000, WindowEnd: 2150, Count: 3, Sum: 224},
	}
	late = []Record{{Partition: 0, Offset: 0, Key: []byte("a"), Value: input[4].JSON()}}
	return input, results, late
}

func TestCheckSessionsAcceptsAValidRun(t *testing.T) {
	input, results, late := sessionCase()
	v := CheckSessions(100, input, results, late)
	if !v.OK {
		t.Fatal(v.Report())
	}
	want := []Result{
		{Key: "a", WindowStart: 1000, WindowEnd: 1320, Count: 4, Sum: 15},
		{Key: "b", WindowStart: 2000, WindowEnd: 2150, Count: 3, Sum: 224},
	}
	if !slices.Equal(v.Final, want) || v.Refired != 1 || v.Merged != 2 {
		t.Fatalf("final %v refired %d merged %d; want final %v refired 1 merged 2", v.Final, v.Refired, v.Merged, want)
	}
	t.Log(v.String())
}

// TestCheckSessionsCatches: each broken output fails the check with the
// problem named.
func TestCheckSessionsCatches(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(input []Event, results []Result, late []Record) ([]Event, []Result, []Record)
		want   []string
	}{
		{"duplicate firing", func(in []Event, rs []Result, l []Record) ([]Event, []Result, []Record) {
			// An epoch replayed after a crash writes b's re-firing twice.
			return in, append(rs, rs[4]), l
		}, []string{`duplicate firing: key="b" window=[2000,2150) count=3`}},
		{"lost record", func(in []Event, rs []Result, l []Record) ([]Event, []Result, []Record) {
			// The late record is missing from the late topic.
			return in, rs, nil
		}, []string{`lost record: seq 5 (key "a" ts 500 amount 16)`, `key "a": final sessions count 4 sum 15, late topic 0 records sum 0; the input has 5 records sum 31`}},
		{"lost record in a session", func(in []Event, rs []Result, l []Record) ([]Event, []Result, []Record) {
			// b's re-firing was lost: b@2020 is nowhere.
			return in, rs[:4], l
		}, []string{`final session key="b" window=[2000,2150) count=2 sum=96: the input records in it that are not in the late topic are count 3 sum 224`}},
		{"counted twice", func(in []Event, rs []Result, l []Record) ([]Event, []Result, []Record) {
			// a replayed record counted again by restored state.
			rs[3].Count, rs[3].Sum = 5, 23
			return in, rs, l
		}, []string{`count 5, but the key has only 4 records in it`, `final session key="a" window=[1000,1320) count=5 sum=23`}},
		{"late record twice", func(in []Event, rs []Result, l []Record) ([]Event, []Result, []Record) {
			return in, rs, append(l, Record{Partition: 0, Offset: 1, Key: l[0].Key, Value: l[0].Value})
		}, []string{"late topic: seq 5 written twice (partition 0 offsets 0 and 1)"}},
		{"late record changed", func(in []Event, rs []Result, l []Record) ([]Event, []Result, []Record) {
			l[0].Value = []byte(` {"user":"a","ts":500,"amount":16,"seq":5}`)
			return in, rs, l
		}, []string{`late topic partition 0 offset 0: key "a" value " {\"user\"`, `but the input record seq 5 was`}},
		{"impossible window", func(in []Event, rs []Result, l []Record) ([]Event, []Result, []Record) {
			return in, append(rs, Result{Key: "b", WindowStart: 2010, WindowEnd: 2150, Count: 1, Sum: 1}), l
		}, []string{`impossible window: key="b" window=[2010,2150) count=1 sum=1: no record of the key at ts 2010 (its start)`}},
		{"session not merged", func(in []Event, rs []Result, l []Record) ([]Event, []Result, []Record) {
			// a@1140 added to a[1000,1150) only, as a[1000,1240), which
			// overlaps a[1220,1320).
			rs[3] = Result{Key: "a", WindowStart: 1000, WindowEnd: 1240, Count: 3, Sum: 11}
			return in, rs, l
		}, []string{`final sessions overlap: key="a" window=[1000,1240) count=3 sum=11 and key="a" window=[1220,1320) count=1 sum=4`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input, results, late := tc.mutate(sessionCase())
			v := CheckSessions(100, input, results, late)
			if v.OK {
				t.Fatalf("the check passed: %s", v.Report())
			}
			report := v.Report()
			for _, w := range tc.want {
				if !strings.Contains(report, w) {
					t.Errorf("the report does not say %q:\n%s", w, report)
				}
			}
			t.Log(report)
		})
	}
}
