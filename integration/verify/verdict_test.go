package verify

import (
	"strings"
	"testing"
)

func res(key string, start, count int64, sum float64) Result {
	return Result{Key: key, WindowStart: start, WindowEnd: start + 1000, Count: count, Sum: sum}
}

var want3 = []Result{res("u0", 0, 2, 30), res("u1", 0, 1, 5), res("u0", 1000, 3, 51)}

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		name       string
		got        []Result
		ok         bool
		line       string
		d, m, w, u int
		example    string
	}{
		{
			name: "correct, any order",
			got:  []Result{want3[2], want3[0], want3[1]},
			ok:   true,
			line: "verdict: exactly-once OK input=6 results=3 duplicates=0 missing=0 wrong=0",
		},
		{
			name:    "duplicate with equal values",
			got:     []Result{want3[0], want3[1], want3[2], want3[1]},
			d:       1,
			line:    "verdict: FAILED input=6 results=4 duplicates=1 missing=0 wrong=0",
			example: `duplicate: key="u1" window_start=0 written 2 times`,
		},
		{
			name:    "missing",
			got:     []Result{want3[0], want3[2]},
			m:       1,
			line:    "verdict: FAILED input=6 results=2 duplicates=0 missing=1 wrong=0",
			example: `missing: key="u1" window=[0,1000) count=1 sum=5`,
		},
		{
			name:    "wrong sum",
			got:     []Result{want3[0], want3[1], res("u0", 1000, 3, 50)},
			w:       1,
			line:    "verdict: FAILED input=6 results=3 duplicates=0 missing=0 wrong=1",
			example: `wrong: got key="u0" window=[1000,2000) count=3 sum=50, want key="u0" window=[1000,2000) count=3 sum=51`,
		},
		{
			name: "wrong count",
			got:  []Result{want3[0], want3[1], res("u0", 1000, 4, 51)},
			w:    1,
			line: "verdict: FAILED input=6 results=3 duplicates=0 missing=0 wrong=1",
		},
		{
			name: "wrong window end",
			got:  []Result{want3[0], want3[1], {Key: "u0", WindowStart: 1000, WindowEnd: 3000, Count: 3, Sum: 51}},
			w:    1,
			line: "verdict: FAILED input=6 results=3 duplicates=0 missing=0 wrong=1",
		},
		{
			name:    "unexpected key",
			got:     []Result{want3[0], want3[1], want3[2], res("u9", 0, 1, 1)},
			u:       1,
			line:    "verdict: FAILED input=6 results=4 duplicates=0 missing=0 wrong=0 unexpected=1",
			example: `unexpected: key="u9" window=[0,1000) count=1 sum=1`,
		},
		{
			name: "unexpected window of a known key",
			got:  []Result{want3[0], want3[1], want3[2], res("u1", 2000, 1, 1)},
			u:    1,
			line: "verdict: FAILED input=6 results=4 duplicates=0 missing=0 wrong=0 unexpected=1",
		},
		{
			name: "a duplicate that differs is also wrong",
			got:  []Result{want3[0], want3[1], want3[2], res("u0", 0, 1, 10)},
			d:    1, w: 1,
			line: "verdict: FAILED input=6 results=4 duplicates=1 missing=0 wrong=1",
		},
		{
			name: "nothing written",
			m:    3,
			line: "verdict: FAILED input=6 results=0 duplicates=0 missing=3 wrong=0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Compare(6, want3, tc.got)
			if v.OK != tc.ok || v.Duplicates != tc.d || v.Missing != tc.m || v.Wrong != tc.w || v.Unexpected != tc.u {
				t.Fatalf("got %+v", v)
			}
			if v.String() != tc.line {
				t.Errorf("String:\n got %q\nwant %q", v.String(), tc.line)
			}
			if tc.ok != (len(v.Examples) == 0) {
				t.Errorf("examples %q for OK=%v", v.Examples, tc.ok)
			}
			if tc.example != "" && (len(v.Examples) == 0 || v.Examples[0] != tc.example) {
				t.Errorf("examples %q, want first %q", v.Examples, tc.example)
			}
		})
	}
}

func TestCompareSumTolerance(t *testing.T) {
	got := []Result{want3[0], want3[1], res("u0", 1000, 3, 51.0000000000001)}
	if v := Compare(6, want3, got); !v.OK {
		t.Fatalf("float noise rejected: %s", v.Report())
	}
}

func TestCompareLatest(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []Result
		line string
	}{
		{
			name: "duplicates tolerated",
			got:  []Result{want3[0], want3[1], want3[0], want3[2], want3[1]},
			line: "verdict: latest OK input=6 results=5 duplicates=2 missing=0 wrong=0",
		},
		{
			name: "no duplicates reads as exactly-once",
			got:  want3,
			line: "verdict: exactly-once OK input=6 results=3 duplicates=0 missing=0 wrong=0",
		},
		{
			name: "an earlier wrong copy is overwritten",
			got:  []Result{res("u0", 0, 1, 10), want3[0], want3[1], want3[2]},
			line: "verdict: latest OK input=6 results=4 duplicates=1 missing=0 wrong=0",
		},
		{
			name: "the last copy is wrong",
			got:  []Result{want3[0], res("u0", 0, 1, 10), want3[1], want3[2]},
			line: "verdict: FAILED input=6 results=4 duplicates=1 missing=0 wrong=1",
		},
		{
			name: "missing",
			got:  []Result{want3[0], want3[0], want3[2]},
			line: "verdict: FAILED input=6 results=3 duplicates=1 missing=1 wrong=0",
		},
		{
			name: "unexpected",
			got:  []Result{want3[0], want3[1], want3[2], res("u7", 0, 1, 1), res("u7", 0, 1, 1)},
			line: "verdict: FAILED input=6 results=5 duplicates=1 missing=0 wrong=0 unexpected=1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := CompareLatest(6, want3, tc.got)
			if v.String() != tc.line {
				t.Fatalf("String:\n got %q\nwant %q\n%s", v.String(), tc.line, v.Report())
			}
			if v.OK == strings.Contains(tc.line, "FAILED") {
				t.Fatalf("OK=%v for %q", v.OK, tc.line)
			}
		})
	}
}

func TestVerdictExamplesBoundedAndMixed(t *testing.T) {
	var want, got []Result
	for i := range int64(20) {
		want = append(want, res("u0", i*1000, 1, 1))
		got = append(got, res("u1", i*1000, 1, 1)) // all unexpected
	}
	got = append(got, want[0], want[0]) // one duplicate, rest missing
	v := Compare(20, want, got)
	if v.OK || v.Missing != 19 || v.Unexpected != 20 || v.Duplicates != 1 {
		t.Fatalf("got %+v", v)
	}
	if len(v.Examples) != ExamplesMax {
		t.Fatalf("%d examples, want %d: %q", len(v.Examples), ExamplesMax, v.Examples)
	}
	kinds := map[string]bool{}
	for _, e := range v.Examples {
		kinds[e[:strings.Index(e, ":")]] = true
	}
	for _, k := range []string{"missing", "duplicate", "unexpected"} {
		if !kinds[k] {
			t.Errorf("no %s example among %q", k, v.Examples)
		}
	}
	if !strings.HasPrefix(v.Report(), v.String()+"\n  ") {
		t.Errorf("Report %q", v.Report())
	}
}
