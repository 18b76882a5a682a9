package weir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/integration/verify"
	"github.com/weirstream/weir/txsink"
)

// passthroughSpec is a passthrough job from "in" to "out" over the
// fixture, from the earliest offsets.
func (f *fixture) passthroughSpec(name string) JobSpec {
	return JobSpec{
		Name: name, Brokers: f.brokers, Kind: KindPassthrough,
		Source: SourceSpec{Topic: "in", Start: StartSpec{Mode: StartEarliest}},
		Sink:   SinkSpec{Topic: "out"},
	}
}

// checkPassthrough reads "out" with read_committed and checks that it holds
// every input record exactly once, with the input's value bytes and record
// key, and for every key in input order.
func (f *fixture) checkPassthrough() {
	f.t.Helper()
	// The committed set, read to its end.
	values, err := verify.ReadAll(f.ctx, f.brokers, "out", verify.ReadCommitted)
	if err != nil {
		f.t.Fatal(err)
	}
	want := make(map[int64]verify.Event, len(f.events))
	for _, e := range f.events {
		want[e.Seq] = e
	}
	seen := make(map[int64]bool, len(values))
	for i, v := range values {
		e, err := verify.ParseEvent(v)
		if err != nil {
			f.t.Fatalf("output record %d: %v", i, err)
		}
		in, ok := want[e.Seq]
		switch {
		case !ok:
			f.t.Fatalf("output record %d (seq %d) is not an input record", i, e.Seq)
		case seen[e.Seq]:
			f.t.Fatalf("output record %d: seq %d appears twice", i, e.Seq)
		case string(v) != string(in.JSON()):
			f.t.Fatalf("output record %d: value %q, input value %q", i, v, in.JSON())
		}
		seen[e.Seq] = true
	}
	if len(seen) != len(want) {
		f.t.Fatalf("output holds %d of the %d input records", len(seen), len(want))
	}
	// The keys and the order per key, read again with the keys.
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers), kgo.ConsumeTopics("out"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		f.t.Fatal(err)
	}
	defer cl.Close()
	lastSeq := map[string]int64{}
	for n := 0; n < len(values); {
		fs := cl.PollFetches(f.ctx)
		if err := f.ctx.Err(); err != nil {
			f.t.Fatalf("read %d of %d records with their keys: %v", n, len(values), err)
		}
		for _, fe := range fs.Errors() {
			f.t.Fatalf("read out: partition %d: %v", fe.Partition, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			e, err := verify.ParseEvent(r.Value)
			if err != nil {
				f.t.Fatalf("out/%d offset %d: %v", r.Partition, r.Offset, err)
			}
			if string(r.Key) != e.Key {
				f.t.Fatalf("out/%d offset %d: record key %q, the input's key is %q", r.Partition, r.Offset, r.Key, e.Key)
			}
			if last, ok := lastSeq[e.Key]; ok && e.Seq <= last {
				f.t.Fatalf("out/%d offset %d: key %q seq %d after seq %d: input order lost", r.Partition, r.Offset, e.Key, e.Seq, last)
			}
			lastSeq[e.Key] = e.Seq
		})
	}
	f.t.Logf("output: all %d input records exactly once, keys and order per key kept", len(values))
}

// TestPassthroughOnKfake: a bounded passthrough job, at least once and
// exactly once, copies every record once and ends by itself.
func TestPassthroughOnKfake(t *testing.T) {
	for _, tc := range []struct {
		delivery Delivery
		p        int
	}{{AtLeastOnce, 1}, {AtLeastOnce, 3}, {ExactlyOnce, 2}} {
		t.Run(fmt.Sprintf("%s/parallelism=%d", tc.delivery, tc.p), func(t *testing.T) {
			f := newFixture(t, verify.GenConfig{Seed: 23, Keys: 100, Partitions: 4, Events: 20000})
			spec := f.passthroughSpec("copy")
			spec.Parallelism = tc.p
			spec.Delivery = tc.delivery
			spec.Source.Bounded = BoundLatest
			if tc.delivery == ExactlyOnce {
				spec.Checkpoint = CheckpointSpec{Interval: 30 * time.Millisecond, Dir: t.TempDir(), Timeout: time.Minute}
			}
			job, err := NewJob(spec, WithFlowControl(2, 256))
			if err != nil {
				t.Fatal(err)
			}
			if err := job.Run(f.ctx); err != nil { // bounded: ends by itself
				t.Fatal(err)
			}
			st := job.Stats()
			if n := int64(len(f.events)); st.RecordsIn != n || st.ResultsOut != n {
				t.Fatalf("stats %+v: want %d records in and out", st, n)
			}
			f.checkPassthrough()
			if tc.delivery == ExactlyOnce {
				checkNoSpill(t, spec.Checkpoint.Dir)
			}
		})
	}
}

// checkNoSpill: once every epoch is committed no spill file is left under
// checkpoint.dir (the directory itself exists: the exactly-once sinks
// kept their records there).
func checkNoSpill(t *testing.T, dir string) {
	t.Helper()
	names, err := os.ReadDir(filepath.Join(dir, actors.SpillDir))
	if err != nil {
		t.Fatalf("spill directory: %v", err)
	}
	for _, n := range names {
		t.Errorf("spill file left after the last commit: %s", n.Name())
	}
}

// TestPassthroughRestoreExactlyOnce: an exactly-once passthrough job reads
// the first half of the input and is stopped (cancelled, no drain) after a
// checkpoint; the second half is produced; the next run (same or another
// parallelism) restores the newest checkpoint, recommits what it
// pre-committed and drains. Every record exactly once.
func TestPassthroughRestoreExactlyOnce(t *testing.T) {
	for _, ps := range [][2]int{{2, 2}, {2, 3}, {3, 2}} {
		oldP, newP := ps[0], ps[1]
		t.Run(fmt.Sprintf("%dto%d", oldP, newP), func(t *testing.T) {
			f := newHeldFixture(t, verify.GenConfig{Seed: 29, Keys: 200, Partitions: 4, Events: 60000})
			spec := f.passthroughSpec("copy-restore")
			spec.Parallelism = oldP
			spec.Delivery = ExactlyOnce
			spec.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond, Dir: t.TempDir(), Timeout: time.Minute}
			half := int64(len(f.events) - len(f.held))
			st1 := f.runUntil(spec, func(job *Job, id uint64) bool {
				return id >= 3 && job.Stats().RecordsIn == half
			}, WithFlowControl(1, 64)).Stats()
			if err := f.produceHeld(); err != nil {
				t.Fatal(err)
			}
			spec.Parallelism = newP
			st2 := f.drain(spec).Stats()
			t.Logf("run 1: read %d, last checkpoint %d; run 2: restored %d, read %d",
				st1.RecordsIn, st1.LastCheckpoint, st2.RestoredFrom, st2.RecordsIn)
			if st2.RestoredFrom != st1.LastCheckpoint || st2.RestoredFrom == 0 {
				t.Fatalf("run 2 restored checkpoint %d, want %d", st2.RestoredFrom, st1.LastCheckpoint)
			}
			if st2.RecordsIn < int64(len(f.held)) || st2.RecordsIn >= int64(len(f.events)) {
				t.Fatalf("run 2 read %d records; want the %d produced after run 1 and not all %d", st2.RecordsIn, len(f.held), len(f.events))
			}
			f.checkPassthrough()
			checkNoSpill(t, spec.Checkpoint.Dir)
		})
	}
}

// TestPassthroughRefusesWindowCheckpoint: a checkpoint of a window job is
// not restored into a passthrough job of the same name and directory, nor
// the other way round; the error is one line and names the kind.
func TestPassthroughRefusesWindowCheckpoint(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 31, Keys: 10, Partitions: 2, Events: 2000})
	window := f.spec("kinds")
	window.Checkpoint = CheckpointSpec{Interval: 20 * time.Millisecond}
	pass := f.passthroughSpec("kinds")
	pass.Checkpoint = window.Checkpoint
	for _, tc := range []struct {
		name        string
		first, then JobSpec
		want        string
	}{
		{"window then passthrough", window, pass, "kind=passthrough"},
		{"passthrough then window", pass, window, "window(1000ms)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, then := tc.first, tc.then
			first.Checkpoint.Dir = t.TempDir()
			then.Checkpoint.Dir = first.Checkpoint.Dir
			f.runUntil(first, func(*Job, uint64) bool { return true })
			j, err := NewJob(then)
			if err != nil {
				t.Fatal(err)
			}
			err = j.Run(f.ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Run = %v; want a one-line refusal naming %s", err, tc.want)
			}
			if j.Stats().RecordsIn != 0 {
				t.Fatal("the job read records before refusing")
			}
			t.Logf("%v", err)
		})
	}
}

// TestFinalCheckpointWhenSourcesFinish: with a checkpoint interval of ten
// minutes (the longest the broker's transaction.max.timeout.ms allows), an exactly-once job whose sources finish (drained) after the first
// checkpoint still ends: the final checkpoint is triggered when every
// source has finished, not an interval later. The second half of the input
// is produced only after the first checkpoint completed, so it can only be
// committed by that final checkpoint.
func TestFinalCheckpointWhenSourcesFinish(t *testing.T) {
	for _, kind := range []JobKind{KindWindow, KindPassthrough} {
		t.Run(string(kind), func(t *testing.T) {
			f := newHeldFixture(t, verify.GenConfig{Seed: 37, Keys: 50, Partitions: 2, Events: 20000})
			spec := f.spec("final")
			if kind == KindPassthrough {
				spec = f.passthroughSpec("final")
			}
			spec.Delivery = ExactlyOnce
			spec.Parallelism = 2
			spec.Checkpoint = CheckpointSpec{Interval: 10 * time.Minute, Dir: t.TempDir(), Timeout: time.Minute}
			spec.Restart = RestartSpec{Strategy: "none"}
			var job *Job
			var first atomic.Bool
			produced := make(chan error, 1)
			job, err := NewJob(spec, WithCheckpointListener(func(id uint64, _ bool) {
				if first.Swap(true) {
					return
				}
				go func() {
					err := f.produceHeld()
					if err == nil {
						job.Drain()
					}
					produced <- err
				}()
			}))
			if err != nil {
				t.Fatal(err)
			}
			// Without the final checkpoint Run would wait for the next
			// periodic one, ten minutes away, and hit the fixture's deadline.
			if err := job.Run(f.ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-produced:
				if err != nil {
					t.Fatal(err)
				}
			case <-f.ctx.Done():
				t.Fatal("the second half of the input was never produced")
			}
			st := job.Stats()
			if st.Checkpoints < 2 || st.RecordsIn != int64(len(f.events)) {
				t.Fatalf("stats %+v: want the first and the final checkpoint and every record read", st)
			}
			if kind == KindPassthrough {
				f.checkPassthrough()
			} else {
				f.check(true)
			}
		})
	}
}

// TestPassthroughSpec: a passthrough spec needs no window keys, the default
// kind is window, and the Go-only Extract is refused with kind passthrough.
func TestPassthroughSpec(t *testing.T) {
	base := JobSpec{Name: "copy", Brokers: "127.0.0.1:9092", Kind: KindPassthrough,
		Source: SourceSpec{Topic: "in"}, Sink: SinkSpec{Topic: "out"}}
	if err := base.WithDefaults().Validate(); err != nil {
		t.Fatalf("minimal passthrough spec: %v", err)
	}
	win := base
	win.Kind = ""
	if got := win.WithDefaults().Kind; got != KindWindow {
		t.Fatalf("default kind %q, want %q", got, KindWindow)
	}
	if err := win.WithDefaults().Validate(); err == nil || !strings.HasPrefix(err.Error(), "key_field: required") {
		t.Fatalf("window spec without key_field: %v, want key_field: required", err)
	}
	ex := base
	ex.Extract = JSONExtract("user", "ts", "")
	_, err := NewJob(ex)
	var se *SpecError
	if !errors.As(err, &se) || se.Key != "kind" || strings.Contains(err.Error(), "\n") {
		t.Fatalf("passthrough with Extract: %v, want a one-line error naming kind", err)
	}
}

// TestPassthroughPendingLimit: an exactly-once passthrough epoch larger
// than sink.max_pending_bytes fails the job (restart: none) with one line
// naming the key, the epoch's size, the limit and the fix, instead of
// failing every checkpoint at the state backend's cap. The checkpoint
// interval is longer than the test, so the whole input is one epoch.
func TestPassthroughPendingLimit(t *testing.T) {
	f := newFixture(t, verify.GenConfig{Seed: 41, Keys: 10, Partitions: 2, Events: 2000})
	spec := f.passthroughSpec("pending")
	spec.Delivery = ExactlyOnce
	spec.Source.Bounded = BoundLatest
	spec.Checkpoint = CheckpointSpec{Interval: 10 * time.Minute, Dir: t.TempDir(), Timeout: time.Minute}
	spec.Restart = RestartSpec{Strategy: "none"}
	spec.Sink.MaxPendingBytes = 4 << 10
	job, err := NewJob(spec)
	if err != nil {
		t.Fatal(err)
	}
	err = job.Run(f.ctx)
	if err == nil {
		t.Fatal("Run ended without error; want the epoch refused over sink.max_pending_bytes")
	}
	t.Logf("%v", err)
	msg := err.Error()
	if !errors.Is(err, txsink.ErrPendingFull) || strings.Contains(msg, "\n") {
		t.Fatalf("Run = %v; want one line wrapping txsink.ErrPendingFull", err)
	}
	for _, want := range []string{"sink.max_pending_bytes 4096", "the epoch being written would hold", "raise sink.max_pending_bytes", "lower checkpoint.interval"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if f.ctx.Err() != nil {
		t.Fatalf("the fixture's deadline passed: %v", f.ctx.Err())
	}
}
