package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

const recoveryJob = `name: recovery
brokers: %s
parallelism: 2
source:
  topic: %s
  start:
    mode: earliest
key_field: user
timestamp_field: ts
window:
  size: 1s
  out_of_orderness: 300ms
aggregate:
  value_field: amount
sink:
  topic: %s
delivery: exactly-once
checkpoint:
  interval: 1s
  timeout: 1m
  dir: %s
`

// BenchmarkExactlyOnceRecovery runs the exactly-once window job as a child
// process (`engine run`, checkpoints every 1 s) on a backlog in the real
// broker, kills it with SIGKILL once it commits, restarts it, and reports:
//
//	recovery-ms        from SIGKILL to the first commit of the new process
//	                   (its start, restore, fencing, replay, first epoch)
//	commit-p50-ms/p99  from barrier N reaching a sink to epoch N committed
//
//	go test ./integration -run XXX -bench ExactlyOnceRecovery -benchtime 3x
func BenchmarkExactlyOnceRecovery(b *testing.B) {
	bin := engineBinary(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	in, out := broker.Topic(b, 4), broker.Topic(b, 4)
	events, err := verify.Generate(verify.GenConfig{Seed: 1, Keys: 1000, Partitions: 4, Events: 2_000_000,
		Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: 300 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	if err := verify.Produce(ctx, broker.Shared().Bootstrap(), in, events, 4); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	jobFile := filepath.Join(dir, "job.yaml")
	job := fmt.Sprintf(recoveryJob, broker.Shared().Bootstrap(), in, out, filepath.Join(dir, "checkpoints"))
	if err := os.WriteFile(jobFile, []byte(job), 0o644); err != nil {
		b.Fatal(err)
	}
	// Each run's log, lines stamped as read, for seeing where recovery goes.
	logDir := b.TempDir()
	if d := os.Getenv("WEIR_BENCH_LOGS"); d != "" {
		logDir = d
	}
	var recoveries []time.Duration
	var mu sync.Mutex // commits is appended by the log readers
	var commits []time.Duration
	// start runs the engine and returns a channel that receives the time
	// of each "epoch committed" line, and the process.
	runs := 0
	start := func() (*exec.Cmd, <-chan time.Time) {
		runs++
		logFile, err := os.Create(filepath.Join(logDir, fmt.Sprintf("run-%d.log", runs)))
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--config", jobFile, "--status-interval", "0")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		committed := make(chan time.Time, 1024)
		go func() {
			defer logFile.Close()
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				line := sc.Text()
				fmt.Fprintf(logFile, "%s %s\n", time.Now().Format("15:04:05.000"), line)
				if !strings.Contains(line, "epoch committed") {
					continue
				}
				now := time.Now()
				if _, v, ok := strings.Cut(line, "after_barrier="); ok {
					if d, err := time.ParseDuration(strings.Fields(v)[0]); err == nil {
						mu.Lock()
						commits = append(commits, d)
						mu.Unlock()
					}
				}
				select {
				case committed <- now:
				default:
				}
			}
			close(committed)
		}()
		return cmd, committed
	}
	waitCommit := func(c <-chan time.Time) time.Time {
		select {
		case t, ok := <-c:
			if !ok {
				b.Fatal("the engine exited before it committed")
			}
			return t
		case <-ctx.Done():
			b.Fatal("no commit before the deadline")
		}
		return time.Time{}
	}
	cmd, committed := start()
	waitCommit(committed)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		killedAt := time.Now()
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		cmd, committed = start()
		recoveries = append(recoveries, waitCommit(committed).Sub(killedAt))
		// Let the new process commit a few more epochs before the next kill.
		for range 3 {
			waitCommit(committed)
		}
	}
	b.StopTimer()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	var sum time.Duration
	for _, r := range recoveries {
		sum += r
	}
	b.ReportMetric(float64(sum.Milliseconds())/float64(len(recoveries)), "recovery-ms")
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(commits)
	if n := len(commits); n > 0 {
		b.ReportMetric(float64(commits[n/2].Microseconds())/1000, "commit-p50-ms")
		b.ReportMetric(float64(commits[(n*99)/100].Microseconds())/1000, "commit-p99-ms")
		b.ReportMetric(float64(n), "epochs")
	}
}
