package weir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// MemorySpec is the soft memory limit of the process (job file: memory).
type MemorySpec struct {
	// Limit is the Go runtime's soft memory limit (runtime/debug.SetMemoryLimit,
	// the GOMEMLIMIT of the go command) that `engine run` sets for its
	// process (job file: memory.limit): as the heap nears it, the garbage
	// collector runs more often instead of letting the process grow. It
	// bounds the memory the Go runtime manages, not librdkafka's or
	// Pebble's (C) memory, which the engine bounds with its own defaults.
	//
	// 0 means the default: engine run uses GOMEMLIMIT when that variable
	// is set, else DefaultMemoryLimit. NoMemoryLimit (job file: off) turns
	// the limit off. Else at least MinMemoryLimit.
	//
	// The limit is process-wide, so a program that embeds weir does not get
	// it from the spec: it opts in with WithMemoryLimit.
	Limit int64
}

// Memory limit settings (MemorySpec.Limit, job file: memory.limit).
const (
	// NoMemoryLimit turns the soft memory limit off (job file: off); it is
	// the Go runtime's own "no limit".
	NoMemoryLimit = math.MaxInt64
	// MinMemoryLimit is the least limit accepted: below it the garbage
	// collector would run all the time (and a bare number, which counts
	// bytes, is more likely a unit left out).
	MinMemoryLimit = 64 << 20
	// DefaultMemoryLimitPercent is the share of the memory available to the
	// process (its cgroup's limit, else the machine's memory) that
	// DefaultMemoryLimit gives the Go runtime. The rest is left to what the
	// limit does not count: librdkafka's queues, Pebble's caches, thread
	// stacks and the other processes of the container.
	DefaultMemoryLimitPercent = 75
)

// validMemoryLimit checks a MemorySpec.Limit; 0 (the default) is valid.
func validMemoryLimit(n int64) error {
	if n == 0 || n == NoMemoryLimit || n >= MinMemoryLimit {
		return nil
	}
	if n < 0 {
		return fmt.Errorf("%d is negative; give a size such as 2GiB, or off for no limit", n)
	}
	return fmt.Errorf("%s is below the least, %s (a bare number counts bytes); give e.g. 2GiB, or off for no limit",
		FormatBytes(n), FormatBytes(MinMemoryLimit))
}

// ParseMemoryLimit parses a memory limit as the job file's memory.limit
// and engine run's --memory-limit take it: a size with a binary unit
// (512MiB, 1.5GiB) or a number of bytes, at least MinMemoryLimit; or off
// (NoMemoryLimit). The error is one line saying how to write it.
func ParseMemoryLimit(text string) (int64, error) {
	if strings.EqualFold(strings.TrimSpace(text), "off") {
		return NoMemoryLimit, nil
	}
	f := &field{kind: kindSize, bound: positive, example: "2GiB"}
	n, err := parseSize("", f, text, 0)
	if err != nil {
		var je *JobFileError
		if errors.As(err, &je) {
			return 0, errors.New(je.Msg + ", or off for no limit")
		}
		return 0, err
	}
	if err := validMemoryLimit(n); err != nil {
		return 0, err
	}
	return n, nil
}

// FormatMemoryLimit writes a memory limit as ParseMemoryLimit reads it:
// off for NoMemoryLimit, else as FormatBytes.
func FormatMemoryLimit(n int64) string {
	if n == NoMemoryLimit {
		return "off"
	}
	return FormatBytes(n)
}

// WithMemoryLimit sets the Go runtime's soft memory limit
// (runtime/debug.SetMemoryLimit) to n bytes while the job runs: Run sets
// it when it starts and, when it returns, puts back the limit it found
// unless something else changed it meanwhile. The limit is process-wide,
// which is why the library never sets one unless asked: `engine run` sets
// one by default (MemorySpec.Limit). n is at least MinMemoryLimit, or
// NoMemoryLimit to turn a limit (such as GOMEMLIMIT's) off; 0 leaves the
// process's limit alone. DefaultMemoryLimit gives engine run's default.
func WithMemoryLimit(n int64) Option { return func(o *options) { o.memoryLimit = n } }

// setMemoryLimit sets the process's soft memory limit to n (0: leaves it)
// and returns what puts the previous one back.
func setMemoryLimit(n int64) (restore func()) {
	if n == 0 {
		return func() {}
	}
	prev := debug.SetMemoryLimit(n)
	return func() {
		if debug.SetMemoryLimit(-1) == n {
			debug.SetMemoryLimit(prev)
		}
	}
}

// DefaultMemoryLimit is the soft memory limit `engine run` sets when
// neither the job file (memory.limit), --memory-limit nor GOMEMLIMIT gives
// one: DefaultMemoryLimitPercent of the memory available to the process,
// which is its cgroup's memory limit (cgroup v2 memory.max, v1
// memory.limit_in_bytes, the least along the cgroup's path) when one is set
// below the machine's memory, else the machine's memory (MemTotal of
// /proc/meminfo). from says which, e.g. "75% of the cgroup memory limit
// 2GiB". ok is false where neither can be read (not Linux): then there is
// no default limit.
func DefaultMemoryLimit() (limit int64, from string, ok bool) {
	return defaultMemoryLimit(os.DirFS("/"))
}

// defaultMemoryLimit is DefaultMemoryLimit reading the files of root.
func defaultMemoryLimit(root fs.FS) (limit int64, from string, ok bool) {
	avail, what, ok := availableMemory(root)
	if !ok {
		return 0, "", false
	}
	limit = int64(float64(avail)*DefaultMemoryLimitPercent/100) &^ (1<<20 - 1) // whole MiB
	limit = max(limit, MinMemoryLimit)
	return limit, fmt.Sprintf("%d%% of the %s %s", DefaultMemoryLimitPercent, what, approxBytes(avail)), true
}

// approxBytes writes n as FormatBytes does when that is short (4GiB),
// else in GiB or MiB with one decimal (23.5GiB).
func approxBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}} {
		if n%u.size == 0 {
			return FormatBytes(n)
		}
		if n >= u.size {
			return strconv.FormatFloat(float64(n)/float64(u.size), 'f', 1, 64) + u.name
		}
	}
	return FormatBytes(n)
}

// availableMemory returns the memory available to the process: its
// cgroup's limit if below the machine's memory, else the machine's.
func availableMemory(root fs.FS) (bytes int64, what string, ok bool) {
	total, okTotal := memTotal(root)
	cg, okCg := cgroupMemoryLimit(root)
	switch {
	case okCg && (!okTotal || cg < total):
		return cg, "cgroup memory limit", true
	case okTotal:
		return total, "machine's memory", true
	}
	return 0, "", false
}

// memTotal reads MemTotal from proc/meminfo.
func memTotal(root fs.FS) (int64, bool) {
	data, err := fs.ReadFile(root, "proc/meminfo")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb <= 0 || kb > math.MaxInt64>>10 {
			return 0, false
		}
		return kb << 10, true
	}
	return 0, false
}

// cgroupMemoryLimit returns the least memory limit set on the process's
// cgroup and its ancestors, read from proc/self/cgroup and sys/fs/cgroup
// (v2: memory.max; v1: memory.limit_in_bytes). In a container the
// cgroup's path is often not below the mount (cgroup namespaces, or a v1
// hierarchy mounted at the cgroup itself): then the mount's own files
// are read.
func cgroupMemoryLimit(root fs.FS) (int64, bool) {
	data, err := fs.ReadFile(root, "proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	var v1, v2 string // the cgroup's path in each hierarchy
	var haveV1, haveV2 bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2, haveV2 = parts[2], true
		case hasController(parts[1], "memory"):
			v1, haveV1 = parts[2], true
		}
	}
	if haveV1 {
		if n, ok := leastLimit(root, "sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"); ok {
			return n, true
		}
	}
	if haveV2 {
		if n, ok := leastLimit(root, "sys/fs/cgroup", v2, "memory.max"); ok {
			return n, true
		}
	}
	return 0, false
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// leastLimit reads file in the cgroup directory mount/cg and in each of
// its ancestors up to mount, and returns the least limit set. When mount/cg
// does not exist, only mount's own file is read.
func leastLimit(root fs.FS, mount, cg, file string) (int64, bool) {
	dir := path.Join(mount, path.Clean("/" + cg)[1:])
	if _, err := fs.Stat(root, dir); err != nil {
		dir = mount
	}
	least, found := int64(0), false
	for {
		if n, ok := readLimit(root, path.Join(dir, file)); ok && (!found || n < least) {
			least, found = n, true
		}
		if dir == mount || !strings.HasPrefix(dir, mount+"/") {
			break
		}
		dir = path.Dir(dir)
	}
	return least, found
}

// readLimit reads a cgroup memory limit file: a number of bytes, or "max"
// (v2) for none. v1 writes "no limit" as a number near 2^63, rounded to
// the page size, which is treated as none too.
func readLimit(root fs.FS, name string) (int64, bool) {
	data, err := fs.ReadFile(root, name)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= math.MaxInt64/2 {
		return 0, false
	}
	return n, true
}
