package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir/integration/verify"
)

// LiveMeasurement is one live run of one system on one workload: the job
// runs unbounded over an input produced at a fixed rate, a read_committed
// consumer notes when each output becomes visible, and then the job is
// killed with SIGKILL and started again.
type LiveMeasurement struct {
	Workload string `json:"workload"`
	System   string `json:"system"`
	// Rate is the input rate in events per second.
	Rate int `json:"rate"`
	// Samples is the number of outputs the latency figures are made of.
	Samples int `json:"samples"`
	// LatencyP50Ms and LatencyP99Ms: for Q0, from a record's production
	// (its "ts") to its copy being visible to a read_committed consumer;
	// for Q1, from the moment a window can first fire (its end plus the
	// watermark bound, as event time is the production time) to its
	// result being visible.
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	// RecoverySeconds runs from the SIGKILL (the new process is started
	// at once) to the first output of the restarted job that needs input
	// from after the kill: for Q0 a record produced after the kill, for
	// Q1 the result of the first window that can fire after the kill (the
	// kill is placed 1 s before such a window's firing time). 0 when not
	// measured.
	RecoverySeconds float64 `json:"recovery_seconds"`
	// PeakRSSMiB is the job process's VmHWM at the end of the measured
	// interval (before the kill): its memory at a steady rate, where
	// Measurement.PeakRSSMiB is that of a backlog drain.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// Restored says what the restarted process restored from.
	Restored string `json:"restored,omitempty"`
}

// outputSample is one output seen by the watcher: when it became visible
// and its reference time (Q0: the input's ts; Q1: window end), both in ms.
type outputSample struct {
	visibleMs int64
	refMs     int64
}

// maxSamples bounds the watcher's memory (16 bytes a sample).
const maxSamples = 8 << 20

// watcher reads an output topic from its beginning (read_committed) until
// stopped, noting every output's visibility time and reference time.
type watcher struct {
	field []byte // `"ts":` or `"window_end":`

	mu      sync.Mutex
	samples []outputSample
	dropped int64
	err     error
	notify  chan struct{} // closed and replaced on every new batch

	stop chan struct{}
	done chan struct{}
}

func startWatcher(brokers, topic string, partitions int, field string) (*watcher, error) {
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":   brokers,
		"group.id":            "weirbench-watch-" + topic,
		"enable.auto.commit":  false,
		"isolation.level":     "read_committed",
		"fetch.wait.max.ms":   20,
		"enable.metrics.push": false,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: watch %q: %w", topic, err)
	}
	var tps []kafka.TopicPartition
	for p := 0; p < partitions; p++ {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: int32(p), Offset: kafka.OffsetBeginning})
	}
	if err := c.Assign(tps); err != nil {
		c.Close()
		return nil, fmt.Errorf("bench: watch %q: assign: %w", topic, err)
	}
	w := &watcher{
		field:  []byte(`"` + field + `":`),
		notify: make(chan struct{}),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go func() {
		defer close(w.done)
		defer c.Close()
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			ev := c.Poll(50)
			switch m := ev.(type) {
			case *kafka.Message:
				now := time.Now().UnixMilli()
				ref, ok := jsonInt(m.Value, w.field)
				w.mu.Lock()
				switch {
				case !ok:
					if w.err == nil {
						w.err = fmt.Errorf("bench: watch %q: output %q has no %s", topic, abbrev(string(m.Value), 120), w.field)
					}
				case len(w.samples) < maxSamples:
					w.samples = append(w.samples, outputSample{visibleMs: now, refMs: ref})
				default:
					w.dropped++
				}
				close(w.notify)
				w.notify = make(chan struct{})
				w.mu.Unlock()
			case kafka.Error:
				if m.IsFatal() {
					w.mu.Lock()
					w.err = fmt.Errorf("bench: watch %q: %w", topic, m)
					w.mu.Unlock()
					return
				}
			}
		}
	}()
	return w, nil
}

// jsonInt finds field (`"name":`) in a flat JSON object and parses the
// integer after it.
func jsonInt(b, field []byte) (int64, bool) {
	i := bytes.Index(b, field)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(field):]
	j := 0
	for j < len(b) && (b[j] == '-' || (b[j] >= '0' && b[j] <= '9')) {
		j++
	}
	v, err := strconv.ParseInt(string(b[:j]), 10, 64)
	return v, err == nil
}

func (w *watcher) close() {
	close(w.stop)
	<-w.done
}

// snapshot returns a copy of the samples so far and the first error.
func (w *watcher) snapshot() ([]outputSample, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]outputSample(nil), w.samples...), w.err
}

// waitFor waits until some sample satisfies ok, and returns it.
func (w *watcher) waitFor(ctx context.Context, timeout time.Duration, ok func(outputSample) bool) (outputSample, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	from := 0
	for {
		w.mu.Lock()
		err := w.err
		for ; from < len(w.samples); from++ {
			if ok(w.samples[from]) {
				s := w.samples[from]
				w.mu.Unlock()
				return s, nil
			}
		}
		ch := w.notify
		w.mu.Unlock()
		if err != nil {
			return outputSample{}, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return outputSample{}, fmt.Errorf("bench: no such output within %v: %w", timeout, ctx.Err())
		}
	}
}

// rateProducer writes generated events with ts = the wall clock at a fixed
// rate until stopped.
type rateProducer struct {
	p     *kafka.Producer
	stop  chan struct{}
	done  chan struct{}
	errMu sync.Mutex
	err   error
}

func startRateProducer(brokers, topic string, partitions, keys, size, rate int, seed uint64) (*rateProducer, error) {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":            brokers,
		"acks":                         "all",
		"enable.idempotence":           true,
		"linger.ms":                    2,
		"queue.buffering.max.messages": 200_000,
		"go.delivery.report.fields":    "none",
		"client.id":                    "weirbench-rate",
		"enable.metrics.push":          false,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: rate producer: %w", err)
	}
	rp := &rateProducer{p: p, stop: make(chan struct{}), done: make(chan struct{})}
	fail := func(err error) {
		rp.errMu.Lock()
		if rp.err == nil {
			rp.err = err
		}
		rp.errMu.Unlock()
	}
	go func() {
		for ev := range p.Events() {
			switch m := ev.(type) {
			case *kafka.Message:
				if m.TopicPartition.Error != nil {
					fail(fmt.Errorf("bench: rate producer: %w", m.TopicPartition.Error))
				}
			case kafka.Error:
				if m.IsFatal() {
					fail(fmt.Errorf("bench: rate producer: %w", m))
				}
			}
		}
	}()
	go func() {
		defer close(rp.done)
		rng := rand.New(rand.NewPCG(seed, 7))
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		start := time.Now()
		var seq int64
		for {
			select {
			case <-rp.stop:
				return
			case now := <-t.C:
				due := int64(now.Sub(start).Seconds() * float64(rate))
				for ; seq < due; seq++ {
					e := verify.Event{Key: "u" + strconv.Itoa(rng.IntN(keys)), TS: time.Now().UnixMilli(), Amount: int64(rng.IntN(100)), Seq: seq}
					msg := &kafka.Message{
						TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: verify.Partition(e, partitions)},
						Key:            []byte(e.Key),
						Value:          appendEvent(nil, e, size),
						Timestamp:      time.UnixMilli(e.TS),
					}
					if err := p.Produce(msg, nil); err != nil {
						var kerr kafka.Error
						if errors.As(err, &kerr) && kerr.Code() == kafka.ErrQueueFull {
							break // behind: catch up on the next tick
						}
						fail(fmt.Errorf("bench: rate producer: %w", err))
						return
					}
				}
			}
		}
	}()
	return rp, nil
}

func (rp *rateProducer) close() error {
	close(rp.stop)
	<-rp.done
	rp.p.Flush(5000)
	rp.p.Close()
	rp.errMu.Lock()
	defer rp.errMu.Unlock()
	return rp.err
}

// liveChild is a job process running in the background.
type liveChild struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func startLiveChild(cmd *exec.Cmd, logPath string) (*liveChild, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("bench: child log dir: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bench: child log: %w", err)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: start %s: %w", filepath.Base(cmd.Path), err)
	}
	c := &liveChild{cmd: cmd, done: make(chan struct{}), log: logf}
	go func() { _ = cmd.Wait(); close(c.done) }()
	return c, nil
}

// exited says whether the child has ended on its own.
func (c *liveChild) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the child's process group and waits (bounded) for
// it to be gone.
func (c *liveChild) kill() error {
	defer c.log.Close()
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-c.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("bench: child %d still running 30s after SIGKILL", c.cmd.Process.Pid)
	}
}

// latestFlinkCheckpoint returns the newest retained checkpoint (chk-N with
// a _metadata file) under dir, or "".
func latestFlinkCheckpoint(dir string) string {
	ms, _ := filepath.Glob(filepath.Join(dir, "*", "chk-*", "_metadata"))
	best, bestN := "", int64(-1)
	for _, m := range ms {
		d := filepath.Dir(m)
		n, err := strconv.ParseInt(filepath.Base(d)[len("chk-"):], 10, 64)
		if err == nil && n > bestN {
			best, bestN = d, n
		}
	}
	return best
}

// live measures latency at a fixed rate and recovery after SIGKILL for one
// workload on one system.
func (r *runner) live(ctx context.Context, w workload, sys string) (LiveMeasurement, error) {
	cfg := r.cfg
	r.seq++
	id := fmt.Sprintf("%s-live-%s-%d", sys, w.mode, r.seq)
	in, out := "in-"+id, "out-"+id
	for _, t := range []string{in, out} {
		if err := r.cl.CreateTopic(ctx, t, cfg.Partitions, nil); err != nil {
			return LiveMeasurement{}, fmt.Errorf("bench: %w", err)
		}
	}
	field := "ts"
	if w.mode == "window" {
		field = "window_end"
	}
	wt, err := startWatcher(r.cl.Bootstrap(), out, cfg.Partitions, field)
	if err != nil {
		return LiveMeasurement{}, err
	}
	defer wt.close()

	mkCmd := func(restore string) (*exec.Cmd, error) {
		cmd, _, err := r.command(ctx, sys, w.mode, w.delivery, in, out, id, "", true, restore)
		return cmd, err
	}
	logPath := filepath.Join(cfg.WorkDir, "logs", id+".log")
	cmd, err := mkCmd("")
	if err != nil {
		return LiveMeasurement{}, err
	}
	child, err := startLiveChild(cmd, logPath)
	if err != nil {
		return LiveMeasurement{}, err
	}
	defer func() { _ = child.kill() }()
	rp, err := startRateProducer(r.cl.Bootstrap(), in, cfg.Partitions, w.keys, cfg.EventBytes, cfg.LiveRate, uint64(cfg.Seed))
	if err != nil {
		return LiveMeasurement{}, err
	}
	prodStopped := false
	defer func() {
		if !prodStopped {
			_ = rp.close()
		}
	}()
	start := time.Now()
	from := start.Add(cfg.LiveWarmup).UnixMilli()
	to := start.Add(cfg.LiveWarmup + cfg.LiveMeasure).UnixMilli()
	ooo := cfg.OutOfOrderness.Milliseconds()
	refOf := func(s outputSample) int64 { // when the output could first exist
		if w.mode == "window" {
			return s.refMs + ooo
		}
		return s.refMs
	}
	// Wait until the measured interval's last output is visible.
	if _, err := wt.waitFor(ctx, cfg.LiveWarmup+cfg.LiveMeasure+2*cfg.WindowSize+time.Minute, func(s outputSample) bool {
		return refOf(s) >= to
	}); err != nil {
		return LiveMeasurement{}, fmt.Errorf("bench: live run: waiting for output: %w; log %s:\n%s", err, logPath, tail(logPath, 15))
	}
	if child.exited() {
		return LiveMeasurement{}, fmt.Errorf("bench: live run: the job ended; log %s:\n%s", logPath, tail(logPath, 15))
	}
	samples, err := wt.snapshot()
	if err != nil {
		return LiveMeasurement{}, err
	}
	var lat []float64
	for _, s := range samples {
		if ref := refOf(s); ref >= from && ref < to {
			lat = append(lat, float64(s.visibleMs-ref))
		}
	}
	if len(lat) == 0 {
		return LiveMeasurement{}, fmt.Errorf("bench: live run: no output in the measured interval")
	}
	lm := LiveMeasurement{
		Workload: w.name, System: sys, Rate: cfg.LiveRate, Samples: len(lat),
		LatencyP50Ms: percentile(lat, 50), LatencyP99Ms: percentile(lat, 99),
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", child.cmd.Process.Pid)); err == nil {
		lm.PeakRSSMiB = float64(vmHWM(st)) / 1024
	}
	if !cfg.Recovery {
		return lm, nil
	}

	// Recovery: kill, restart at once, wait for the first output that
	// needs input from after the kill.
	kill := time.Now()
	var needRef int64
	if w.mode == "window" {
		size := cfg.WindowSize.Milliseconds()
		end := (kill.UnixMilli()/size + 1) * size
		for end+ooo-1000 < kill.UnixMilli()+200 {
			end += size
		}
		kill = time.UnixMilli(end + ooo - 1000)
		needRef = end
		select {
		case <-time.After(time.Until(kill)):
		case <-ctx.Done():
			return lm, ctx.Err()
		}
	} else {
		needRef = kill.UnixMilli() + 1
	}
	if err := child.kill(); err != nil {
		return lm, err
	}
	killedAt := time.Now()
	restore := ""
	if sys == SystemFlink {
		restore = latestFlinkCheckpoint(filepath.Join(cfg.WorkDir, "checkpoints", id))
		lm.Restored = restore
		if restore == "" {
			lm.Restored = "nothing (no retained checkpoint)"
		}
	} else {
		lm.Restored = "the newest checkpoint in its checkpoint dir"
	}
	cmd, err = mkCmd(restore)
	if err != nil {
		return lm, err
	}
	child, err = startLiveChild(cmd, logPath)
	if err != nil {
		return lm, err
	}
	s, err := wt.waitFor(ctx, 3*time.Minute, func(s outputSample) bool { return s.refMs >= needRef })
	if err != nil {
		return lm, fmt.Errorf("bench: recovery: %w; log %s:\n%s", err, logPath, tail(logPath, 15))
	}
	lm.RecoverySeconds = float64(s.visibleMs-killedAt.UnixMilli()) / 1000
	prodStopped = true
	if err := rp.close(); err != nil {
		return lm, err
	}
	return lm, nil
}
