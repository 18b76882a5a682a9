package verify

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseResult(t *testing.T) {
	want := Result{Key: "u17", WindowStart: 1764028800000, WindowEnd: 1764028810000, Count: 3, Sum: 51}
	for _, in := range []string{
		`{"key":"u17","window_start":1764028800000,"window_end":1764028810000,"count":3,"sum":51}`,
		`{"key":"u17","window_start":1764028800000,"window_end":1764028810000,"count":3,"sum":51.0}`,
		` {"sum":5.1e1,"count":3,"window_end":1764028810000,"window_start":1764028800000,"key":"u17","extra":true} `,
		string(want.JSON()),
	} {
		got, err := ParseResult([]byte(in))
		if err != nil || got != want {
			t.Errorf("ParseResult(%s) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if got := string(want.JSON()); got != `{"key":"u17","window_start":1764028800000,"window_end":1764028810000,"count":3,"sum":51}` {
		t.Errorf("JSON %s", got)
	}
}

func TestParseResultErrors(t *testing.T) {
	for _, tc := range []struct{ in, msg string }{
		{``, "not a JSON object"},
		{`[1,2]`, "not a JSON object"},
		{`{"key":"u1"`, "unexpected end"},
		{`{"key":"u1","window_start":0,"window_end":10,"count":1,"sum":1} x`, "invalid character"},
		{`{"key":"u1","window_start":0,"window_end":10,"count":1.5,"sum":1}`, "count"},
		{`{"key":7,"window_start":0,"window_end":10,"count":1,"sum":1}`, "key"},
		{`{"key":"u1","window_start":0,"window_end":10,"count":1,"sum":"1"}`, "sum"},
		{`{"key":"u1","window_start":0,"window_end":10,"count":1}`, `missing or null field ["sum"]`},
		{`{"key":"u1","window_start":null,"count":1,"sum":2}`, `missing or null field ["window_start" "window_end"]`},
		{`{}`, `missing or null field ["key" "window_start" "window_end" "count" "sum"]`},
	} {
		_, err := ParseResult([]byte(tc.in))
		if err == nil {
			t.Errorf("ParseResult(%s): no error", tc.in)
			continue
		}
		if !strings.HasPrefix(err.Error(), "verify: parse result ") || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseResult(%s): %v; want it to mention %q", tc.in, err, tc.msg)
		}
		if strings.Contains(tc.msg, "missing") != errors.Is(err, ErrMissingField) {
			t.Errorf("ParseResult(%s): errors.Is(ErrMissingField) wrong for %v", tc.in, err)
		}
	}
}

func TestExpected(t *testing.T) {
	events := []Event{
		{Key: "u1", TS: 10_999, Amount: 5},
		{Key: "u0", TS: 10_000, Amount: 1},
		{Key: "u0", TS: 19_999, Amount: 2},
		{Key: "u0", TS: 20_000, Amount: 4},
		{Key: "u0", TS: 5_000, Amount: 8},
		{Key: "u1", TS: 0, Amount: 16},
	}
	got := Expected(events, 10*time.Second)
	want := []Result{
		{Key: "u0", WindowStart: 0, WindowEnd: 10_000, Count: 1, Sum: 8},
		{Key: "u1", WindowStart: 0, WindowEnd: 10_000, Count: 1, Sum: 16},
		{Key: "u0", WindowStart: 10_000, WindowEnd: 20_000, Count: 2, Sum: 3},
		{Key: "u1", WindowStart: 10_000, WindowEnd: 20_000, Count: 1, Sum: 5},
		{Key: "u0", WindowStart: 20_000, WindowEnd: 30_000, Count: 1, Sum: 4},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d: got %v, want %v", i, got[i], want[i])
		}
	}
	if v := Compare(len(events), want, got); !v.OK {
		t.Errorf("%s", v.Report())
	}
	closed := ExpectedBefore(got, 20_000)
	if len(closed) != 4 || closed[3] != want[3] {
		t.Errorf("ExpectedBefore: %v", closed)
	}
	if WindowStart(-1, 10) != -10 || WindowStart(25, 10) != 20 {
		t.Errorf("WindowStart(-1,10)=%d WindowStart(25,10)=%d", WindowStart(-1, 10), WindowStart(25, 10))
	}
}
