package main

import (
	"bytes"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/weirstream/weir"
)

// TestSetMemoryLimit: engine run sets the process's soft memory limit
// (read back with debug.SetMemoryLimit(-1)) from --memory-limit, else
// leaves GOMEMLIMIT's (which the runtime applied), else from memory.limit,
// else the default; it logs the one in use and warns about those that lost.
func TestSetMemoryLimit(t *testing.T) {
	const (
		gib     = 1 << 30
		runtime = 5 * gib // what the runtime set from GOMEMLIMIT, in this test
	)
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	def := func() (int64, string, bool) { return 3 * gib, "75% of the machine's memory 4GiB", true }
	noDef := func() (int64, string, bool) { return 0, "", false }
	for _, tc := range []struct {
		name     string
		flag     int64
		env      string
		spec     int64
		def      func() (int64, string, bool)
		want     int64
		from     string
		logs     []string
		warnings int
	}{
		{"default", 0, "", 0, def, 3 * gib, "default: 75% of the machine's memory 4GiB",
			[]string{`msg="soft memory limit" limit=3GiB from="default: 75% of the machine's memory 4GiB"`}, 0},
		{"job file", 0, "", 2 * gib, def, 2 * gib, "memory.limit",
			[]string{`limit=2GiB from=memory.limit`}, 0},
		{"job file off", 0, "", weir.NoMemoryLimit, def, weir.NoMemoryLimit, "memory.limit",
			[]string{`limit=off from=memory.limit`}, 0},
		{"GOMEMLIMIT", 0, "5GiB", 0, def, runtime, "GOMEMLIMIT=5GiB",
			[]string{`limit=5GiB from="GOMEMLIMIT=5GiB"`}, 0},
		{"GOMEMLIMIT over the job file", 0, "5GiB", 2 * gib, def, runtime, "GOMEMLIMIT=5GiB",
			[]string{`memory.limit is not used; GOMEMLIMIT=5GiB takes precedence`, `limit=5GiB from="GOMEMLIMIT=5GiB"`}, 1},
		{"flag over both", 1 * gib, "5GiB", 2 * gib, def, 1 * gib, "--memory-limit",
			[]string{`GOMEMLIMIT=5GiB is not used`, `memory.limit is not used`, `limit=1GiB from=--memory-limit`}, 2},
		{"flag off", weir.NoMemoryLimit, "", 0, def, weir.NoMemoryLimit, "--memory-limit",
			[]string{`limit=off from=--memory-limit`}, 0},
		{"no default", 0, "", 0, noDef, 0, "",
			[]string{`no soft memory limit: the memory available to the process is unknown`}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The runtime's limit as the process started: GOMEMLIMIT's,
			// or none.
			start := int64(weir.NoMemoryLimit)
			if tc.env != "" {
				start = runtime
			}
			debug.SetMemoryLimit(start)
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			spec := weir.JobSpec{Memory: weir.MemorySpec{Limit: tc.spec}}
			getenv := func(k string) string {
				if k == memoryLimitEnv {
					return tc.env
				}
				return ""
			}
			m := setMemoryLimit(tc.flag, spec, getenv, tc.def, log)
			want := tc.want
			if want == 0 {
				want = start // no limit found: the process's is left alone
			}
			if got := debug.SetMemoryLimit(-1); got != want {
				t.Errorf("limit after setMemoryLimit: %d, want %d", got, want)
			}
			if m.limit != tc.want || m.from != tc.from {
				t.Errorf("setMemoryLimit = %d from %q, want %d from %q", m.limit, m.from, tc.want, tc.from)
			}
			out := buf.String()
			for _, l := range tc.logs {
				if !strings.Contains(out, l) {
					t.Errorf("log does not say %q:\n%s", l, out)
				}
			}
			if n := strings.Count(out, "level=WARN"); n != tc.warnings {
				t.Errorf("%d warnings, want %d:\n%s", n, tc.warnings, out)
			}
		})
	}
}
