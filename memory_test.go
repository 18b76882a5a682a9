package weir

import (
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/weirstream/weir/integration/verify"
)

// TestDefaultMemoryLimit: the default is DefaultMemoryLimitPercent of the
// cgroup's limit (the least along its path, v1 or v2; the mount's own file
// in a cgroup namespace) when it is below the machine's memory, else of
// the machine's memory; none where neither can be read.
func TestDefaultMemoryLimit(t *testing.T) {
	const gib = 1 << 30
	meminfo := &fstest.MapFile{Data: []byte("MemTotal:       25165824 kB\nMemFree:  1000 kB\n")} // 24 GiB
	v1Unlimited := &fstest.MapFile{Data: []byte("9223372036854771712\n")}
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, tc := range []struct {
		name  string
		files fstest.MapFS
		want  int64 // 0: no default
		from  string
	}{
		{"no files", fstest.MapFS{}, 0, ""},
		{"machine only", fstest.MapFS{"proc/meminfo": meminfo}, 18 * gib, "75% of the machine's memory 24GiB"},
		{"v2 limit", fstest.MapFS{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": file("0::/job.slice/weir\n"),
			"sys/fs/cgroup/job.slice/weir/memory.max": file("4294967296\n"),
			"sys/fs/cgroup/job.slice/memory.max":      file("max\n"),
		}, 3 * gib, "75% of the cgroup memory limit 4GiB"},
		{"v2 parent is less", fstest.MapFS{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": file("0::/job.slice/weir\n"),
			"sys/fs/cgroup/job.slice/weir/memory.max": file("max\n"),
			"sys/fs/cgroup/job.slice/memory.max":      file("2147483648\n"),
		}, 3 * gib / 2, "75% of the cgroup memory limit 2GiB"},
		{"v2 namespaced", fstest.MapFS{
			"proc/meminfo":             meminfo,
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("1073741824\n"),
		}, 3 * gib / 4, "75% of the cgroup memory limit 1GiB"},
		{"v2 no limit", fstest.MapFS{
			"proc/meminfo":             meminfo,
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("max\n"),
		}, 18 * gib, "75% of the machine's memory 24GiB"},
		{"v1 unlimited (this sandbox's layout)", fstest.MapFS{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": file("5:devices:/\n4:memory:/process_api/abb9\n3:cpuset:/\n0::/\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": v1Unlimited,
		}, 18 * gib, "75% of the machine's memory 24GiB"},
		{"v1 mounted at the cgroup", fstest.MapFS{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": file("4:memory:/kubepods/pod1/c1\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("536870912\n"),
		}, 384 << 20, "75% of the cgroup memory limit 512MiB"},
		{"v1 nested", fstest.MapFS{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": file("4:cpu,memory:/a/b\n"),
			"sys/fs/cgroup/memory/a/b/memory.limit_in_bytes": v1Unlimited,
			"sys/fs/cgroup/memory/a/memory.limit_in_bytes":   file("8589934592\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes":     v1Unlimited,
		}, 6 * gib, "75% of the cgroup memory limit 8GiB"},
		{"cgroup above the machine", fstest.MapFS{
			"proc/meminfo":             meminfo,
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("68719476736\n"),
		}, 18 * gib, "75% of the machine's memory 24GiB"},
		{"cgroup without meminfo", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("1073741824\n"),
		}, 3 * gib / 4, "75% of the cgroup memory limit 1GiB"},
		{"tiny cgroup gets the least", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("16777216\n"),
		}, MinMemoryLimit, "75% of the cgroup memory limit 16MiB"},
		{"odd sizes round down to MiB", fstest.MapFS{
			"proc/meminfo": file("MemTotal:       24683524 kB\n"),
		}, 18078 << 20, "75% of the machine's memory 23.5GiB"},
		{"garbage", fstest.MapFS{
			"proc/meminfo":             file("MemTotal: lots\n"),
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("-5\n"),
		}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, from, ok := defaultMemoryLimit(tc.files)
			if ok != (tc.want != 0) || got != tc.want || from != tc.from {
				t.Errorf("defaultMemoryLimit = %d (%s), %q, %v; want %d (%s), %q", got, FormatBytes(got), from, ok, tc.want, FormatBytes(tc.want), tc.from)
			}
		})
	}
}

// TestParseMemoryLimit: sizes as the job file writes them, off, and
// one-line errors saying how to write one.
func TestParseMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"2GiB", 2 << 30, ""},
		{"512MiB", 512 << 20, ""},
		{"off", NoMemoryLimit, ""},
		{" Off ", NoMemoryLimit, ""},
		{"67108864", MinMemoryLimit, ""},
		{"1MiB", 0, "1MiB is below the least, 64MiB"},
		{"512", 0, "a bare number counts bytes"},
		{"2GB", 0, "write a binary unit, e.g. 2GiB"},
		{"", 0, "is not a size"},
		{"-1GiB", 0, "must be positive"},
		{"none", 0, "or off for no limit"},
	} {
		got, err := ParseMemoryLimit(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n")):
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want one line containing %q", tc.in, got, err, tc.err)
		}
	}
	if FormatMemoryLimit(NoMemoryLimit) != "off" || FormatMemoryLimit(3<<30) != "3GiB" {
		t.Errorf("FormatMemoryLimit: %s, %s", FormatMemoryLimit(NoMemoryLimit), FormatMemoryLimit(3<<30))
	}
}

// TestWithMemoryLimitRefused: a limit under the least, or negative, is
// refused by NewJob and Env.Build with an error naming the option; so is
// JobSpec.Memory.Limit, naming memory.limit.
func TestWithMemoryLimitRefused(t *testing.T) {
	spec := JobSpec{Name: "m", Brokers: "127.0.0.1:9092", Kind: KindPassthrough,
		Source: SourceSpec{Topic: "in"}, Sink: SinkSpec{Topic: "out"}}
	for _, n := range []int64{-1, 1000, MinMemoryLimit - 1} {
		if _, err := NewJob(spec, WithMemoryLimit(n)); err == nil || !strings.Contains(err.Error(), "WithMemoryLimit") {
			t.Errorf("NewJob(WithMemoryLimit(%d)) = %v; want an error naming WithMemoryLimit", n, err)
		}
		env := NewEnv("m", Brokers("127.0.0.1:9092"), JobOptions(WithMemoryLimit(n)))
		ToKafka(FromKafka(env, "in", Raw()), "out", Raw())
		if _, err := env.Build(); err == nil || !strings.Contains(err.Error(), "WithMemoryLimit") {
			t.Errorf("Env.Build with WithMemoryLimit(%d) = %v; want an error naming WithMemoryLimit", n, err)
		}
		s := spec
		s.Memory.Limit = n
		if _, err := NewJob(s); err == nil || !strings.HasPrefix(err.Error(), "memory.limit: ") {
			t.Errorf("NewJob with Memory.Limit %d = %v; want an error naming memory.limit", n, err)
		}
	}
	for _, n := range []int64{0, MinMemoryLimit, NoMemoryLimit} {
		if _, err := NewJob(spec, WithMemoryLimit(n)); err != nil {
			t.Errorf("NewJob(WithMemoryLimit(%d)): %v", n, err)
		}
	}
}

// TestWithMemoryLimitOnKfake runs a job end to end with WithMemoryLimit:
// the process's limit is the one asked for while the job runs (read at
// each checkpoint) and the previous one again when Run returns. Without
// the option the library leaves the limit alone.
func TestWithMemoryLimitOnKfake(t *testing.T) {
	const want = 3 << 30
	prev := debug.SetMemoryLimit(-1)
	if prev == want {
		t.Fatalf("the test's limit %d is already set", want)
	}
	defer debug.SetMemoryLimit(prev)
	for _, opt := range []bool{true, false} {
		f := newFixture(t, verify.GenConfig{Seed: 5, Keys: 20, Partitions: 2, Events: 2000})
		spec := f.passthroughSpec("memlimit")
		spec.Delivery = ExactlyOnce
		spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: t.TempDir(), Timeout: time.Minute}
		var seen, checkpoints atomic.Int64
		opts := []Option{WithCheckpointListener(func(uint64, bool) {
			checkpoints.Add(1)
			seen.Store(debug.SetMemoryLimit(-1))
		})}
		if opt {
			opts = append(opts, WithMemoryLimit(want))
		}
		f.drain(spec, opts...)
		f.checkPassthrough()
		if checkpoints.Load() == 0 {
			t.Fatal("no checkpoint completed: the limit was never read while the job ran")
		}
		switch got := seen.Load(); {
		case opt && got != want:
			t.Errorf("limit while the job ran with WithMemoryLimit(%d): %d", want, got)
		case !opt && got != prev:
			t.Errorf("limit while the job ran without WithMemoryLimit: %d, want the process's %d", got, prev)
		}
		if got := debug.SetMemoryLimit(-1); got != prev {
			t.Errorf("limit after Run (option %v): %d, want the previous %d back", opt, got, prev)
		}
	}
}
