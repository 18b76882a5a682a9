package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// childResult is the one line a child run prints on stdout, after the
// prefix "WEIRBENCH " (weir, ceiling) or "FLINKBENCH " (the Flink peer).
// Times are milliseconds since the Unix epoch.
type childResult struct {
	StartMs       int64   `json:"start_ms"`        // the process started
	FirstRecordMs int64   `json:"first_record_ms"` // the first input record was seen
	EndMs         int64   `json:"end_ms"`          // the job ended (all results committed)
	LastRecordMs  int64   `json:"last_record_ms"`  // the last input record was read (0: unknown)
	RecordsIn     int64   `json:"records_in"`
	ResultsOut    int64   `json:"results_out"`
	CheckpointUs  []int64 `json:"checkpoint_us"` // durations of completed checkpoints
	// CPU time the process had used when the first record was seen and
	// at the end, in ms (so start-up can be told apart from the drain).
	CPUMsAtFirst int64 `json:"cpu_ms_at_first"`
	CPUMsAtEnd   int64 `json:"cpu_ms_at_end"`
	// PeakRSSKiB is the process's own VmHWM at the end. The kernel's
	// ru_maxrss of a child can include its parent's RSS (the parent's
	// memory is counted when a vfork-ed child execs), so it is not used.
	PeakRSSKiB int64 `json:"peak_rss_kib"`
}

// selfCPUMs returns the CPU time (user + system) this process has used, in
// ms.
func selfCPUMs() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return (ru.Utime.Nano() + ru.Stime.Nano()) / 1e6
}

// selfPeakRSSKiB returns VmHWM from /proc/self/status, or 0.
func selfPeakRSSKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	return vmHWM(b)
}

// vmHWM parses the VmHWM line of a /proc/<pid>/status file, in KiB.
func vmHWM(status []byte) int64 {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb
			}
		}
	}
	return 0
}

const (
	weirPrefix  = "WEIRBENCH "
	flinkPrefix = "FLINKBENCH "
)

// parseChildResult finds the line starting with prefix in out and decodes
// it.
func parseChildResult(out []byte, prefix string) (childResult, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			var r childResult
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				return childResult{}, fmt.Errorf("bench: child result %q: %w", abbrev(line, 200), err)
			}
			if r.FirstRecordMs <= 0 || r.EndMs < r.FirstRecordMs {
				return childResult{}, fmt.Errorf("bench: child result %q: no first record or end before it", abbrev(line, 200))
			}
			return r, nil
		}
	}
	return childResult{}, fmt.Errorf("bench: child printed no %q line", strings.TrimSpace(prefix))
}

// procUsage is what the kernel says a finished child used.
type procUsage struct {
	Wall      time.Duration
	CPU       time.Duration // user + system
	MaxRSSKiB int64
}

// runChild runs cmd to completion (within timeout), with stderr appended to
// logPath, and returns its stdout and usage. A non-zero exit is an error
// quoting the end of the log.
func runChild(ctx context.Context, cmd *exec.Cmd, logPath string, timeout time.Duration) ([]byte, procUsage, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, procUsage{}, fmt.Errorf("bench: child log dir: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, procUsage{}, fmt.Errorf("bench: child log: %w", err)
	}
	defer logf.Close()
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, procUsage{}, fmt.Errorf("bench: start %s: %w", filepath.Base(cmd.Path), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
		// Kill the child's process group (the child and anything it
		// started), then collect it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		return nil, procUsage{}, fmt.Errorf("bench: %s: killed after %v: %w; log %s", filepath.Base(cmd.Path), timeout, ctx.Err(), logPath)
	}
	u := procUsage{Wall: time.Since(start)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		u.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		u.MaxRSSKiB = ru.Maxrss // KiB on Linux
	}
	if werr != nil {
		return stdout.Bytes(), u, fmt.Errorf("bench: %s: %w; last log lines:\n%s", filepath.Base(cmd.Path), werr, tail(logPath, 15))
	}
	return stdout.Bytes(), u, nil
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func abbrev(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// errUsage is returned by ChildMain for bad child arguments.
var errUsage = errors.New("bench: usage")
