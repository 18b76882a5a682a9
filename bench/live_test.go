package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJSONInt(t *testing.T) {
	for _, c := range []struct {
		in, field string
		want      int64
		ok        bool
	}{
		{`{"user":"u1","ts":1764028800123,"amount":5}`, `"ts":`, 1764028800123, true},
		{`{"key":"u1","window_start":10000,"window_end":20000,"count":3}`, `"window_end":`, 20000, true},
		{`{"key":"u1","window_end":-5}`, `"window_end":`, -5, true},
		{`{"user":"u1"}`, `"ts":`, 0, false},
		{`{"ts":"x"}`, `"ts":`, 0, false},
	} {
		got, ok := jsonInt([]byte(c.in), []byte(c.field))
		if got != c.want || ok != c.ok {
			t.Errorf("jsonInt(%s, %s) = %d, %v; want %d, %v", c.in, c.field, got, ok, c.want, c.ok)
		}
	}
}

func TestComparePassthrough(t *testing.T) {
	b := func(ss ...string) [][]byte {
		out := make([][]byte, len(ss))
		for i, s := range ss {
			out[i] = []byte(s)
		}
		return out
	}
	for _, c := range []struct {
		want, got []string
		ok        bool
		verdict   string
	}{
		{[]string{"a", "b", "b"}, []string{"b", "a", "b"}, true, "OK input=3 output=3 duplicates=0 missing=0 unexpected=0"},
		{[]string{"a", "b"}, []string{"a", "a", "b"}, false, "duplicates=1 missing=0"},
		{[]string{"a", "b"}, []string{"a"}, false, "duplicates=0 missing=1"},
		{[]string{"a"}, []string{"a", "z"}, false, "unexpected=1"},
	} {
		ok, v := comparePassthrough(b(c.want...), b(c.got...))
		if ok != c.ok || !strings.Contains(v, c.verdict) {
			t.Errorf("comparePassthrough(%q, %q) = %v, %q; want %v and %q", c.want, c.got, ok, v, c.ok, c.verdict)
		}
	}
}

func TestLatestFlinkCheckpoint(t *testing.T) {
	dir := t.TempDir()
	if got := latestFlinkCheckpoint(dir); got != "" {
		t.Errorf("empty dir: %q", got)
	}
	mk := func(rel string, meta bool) {
		d := filepath.Join(dir, rel)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if meta {
			if err := os.WriteFile(filepath.Join(d, "_metadata"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("job1/chk-9", true)
	mk("job1/chk-10", true)
	mk("job1/chk-11", false) // in progress: no _metadata
	mk("job1/shared", false)
	if got, want := latestFlinkCheckpoint(dir), filepath.Join(dir, "job1", "chk-10"); got != want {
		t.Errorf("latest = %q, want %q (chk-11 has no _metadata; 10 > 9 numerically)", got, want)
	}
}
