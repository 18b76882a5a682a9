package snapshot

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2/vfs"
)

const (
	crashRoot = "/ckpt"
	crashJob  = "job"
	crashFP   = "fp1"
)

var crashTasks = []string{"window-1", "window-2"}

// crashRun is one run of the crash scenario.
type crashRun struct {
	trace []string   // the steps of checkpoint 2's write path under the root
	clone *vfs.MemFS // the filesystem as a crash before step `at` leaves it
	// want[id][task] is the state checkpoint id must restore for task.
	want   map[uint64]map[string]map[string]string
	wantOp map[uint64]map[string]string
	live   map[string]map[string]string // the live state after the run
}

// runCrashScenario writes checkpoint 1 (state A), then checkpoint 2 (state B)
// while the tasks keep writing (state C) after Snapshot returns, and crashes
// the filesystem (CrashClone with cfg) just before step at of checkpoint 2's
// write path, or after the last step when at is past it.
func runCrashScenario(t testing.TB, at int, cfg func(step int) vfs.CrashCloneCfg) crashRun {
	t.Helper()
	defer func(n int) { syncParallel = n }(syncParallel)
	syncParallel = 1 // one step after the other, in the same order each run
	mem := vfs.NewCrashableMem()
	r := crashRun{
		want:   map[uint64]map[string]map[string]string{1: {}, 2: {}},
		wantOp: map[uint64]map[string]string{1: {}, 2: {}},
		live:   map[string]map[string]string{},
	}
	var armed atomic.Bool
	step := 0
	fs := &hookFS{FS: mem, hook: func(kind, path string) error {
		if !armed.Load() || kind == "write" || (path != crashRoot && !strings.HasPrefix(path, crashRoot+"/")) {
			return nil
		}
		if step == at {
			r.clone = mem.CrashClone(cfg(step))
		}
		rel := strings.ReplaceAll(path, crashRoot+"/", "")
		if path == crashRoot {
			rel = "<root>"
		}
		r.trace = append(r.trace, kind+" "+rel)
		step++
		return nil
	}}

	stores := map[string]*Store{}
	models := map[string]map[string]string{}
	for _, task := range crashTasks {
		s, err := OpenStore(fs, "/live/"+task, testStoreOptions(t))
		if err != nil {
			t.Fatal(err)
		}
		stores[task] = s
		models[task] = map[string]string{}
	}
	copyModel := func(m map[string]string) map[string]string {
		out := make(map[string]string, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	checkpoint := func(id uint64, during func(task string)) {
		m := Metadata{JobName: crashJob, GraphFingerprint: crashFP, ID: id,
			Time: time.Unix(int64(id), 0).UTC(), Tasks: map[string]Handle{}}
		for _, task := range crashTasks {
			op := fmt.Sprintf("offsets of %s at %d", task, id)
			r.want[id][task] = copyModel(models[task])
			r.wantOp[id][task] = op
			p, err := stores[task].Snapshot(TaskDir(fs, crashRoot, id, task), []byte(op))
			if err != nil {
				t.Fatal(err)
			}
			if during != nil {
				during(task)
			}
			h, err := p.Wait(waitCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			m.Tasks[task] = h
		}
		if err := WriteMetadata(fs, crashRoot, m); err != nil {
			t.Fatal(err)
		}
	}

	// State A, checkpoint 1.
	for _, task := range crashTasks {
		var w []kv
		for i := range 50 {
			w = append(w, set(fmt.Sprintf("k%03d", i), fmt.Sprintf("A-%s-%d", task, i)))
		}
		apply(t, stores[task], models[task], w...)
	}
	checkpoint(1, nil)

	// State B, checkpoint 2, with writes C after each Snapshot call.
	for _, task := range crashTasks {
		var w []kv
		for i := range 10 {
			w = append(w, set(fmt.Sprintf("k%03d", i), fmt.Sprintf("B-%s-%d", task, i)))
			w = append(w, del(fmt.Sprintf("k%03d", 10+i)), set(fmt.Sprintf("k%03d", 50+i), "B"))
		}
		apply(t, stores[task], models[task], w...)
	}
	armed.Store(true)
	checkpoint(2, func(task string) {
		var w []kv
		for i := range 5 {
			w = append(w, set(fmt.Sprintf("k%03d", i), "C"), del(fmt.Sprintf("k%03d", 20+i)),
				set(fmt.Sprintf("k%03d", 60+i), "C"))
		}
		apply(t, stores[task], models[task], w...)
	})
	armed.Store(false)
	if r.clone == nil {
		r.clone = mem.CrashClone(cfg(step))
	}
	for _, task := range crashTasks {
		r.live[task] = dump(t, stores[task])
		if d := diffState(r.live[task], models[task]); d != "" {
			t.Fatalf("live state of %s after the run: %s", task, d)
		}
		if err := stores[task].Close(); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// checkRecovery runs Latest and Restore on fs and checks the restored state
// against r. It returns the id Latest picked and the problems, summarized.
func checkRecovery(t testing.TB, fs vfs.FS, r crashRun) (uint64, []Problem) {
	t.Helper()
	m, problems, err := Latest(context.Background(), fs, crashRoot, crashJob, crashFP)
	if err != nil {
		t.Fatalf("Latest: %v (problems %v)", err, problems)
	}
	for _, task := range crashTasks {
		s, op, err := Restore(context.Background(), fs, crashRoot, m, task, "/restored/"+task, testStoreOptions(t))
		if err != nil {
			t.Fatalf("Restore %s from %d: %v", task, m.ID, err)
		}
		if d := diffState(dump(t, s), r.want[m.ID][task]); d != "" {
			t.Fatalf("checkpoint %d, task %s restored wrong state: %s", m.ID, task, d)
		}
		if string(op) != r.wantOp[m.ID][task] {
			t.Fatalf("checkpoint %d, task %s: operator state %q, want %q", m.ID, task, op, r.wantOp[m.ID][task])
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Restoring never modifies the checkpoint.
	if err := Verify(context.Background(), fs, crashRoot, m); err != nil {
		t.Fatalf("checkpoint %d no longer verifies after restore: %v", m.ID, err)
	}
	return m.ID, problems
}

func exactCrash(int) vfs.CrashCloneCfg { return vfs.CrashCloneCfg{} }

// TestCrashGolden crashes (keeping only synced data) before each step of
// checkpoint 2's write path. The steps and the outcome of each crash are the
// golden file testdata/crash; the test also asserts the outcome directly.
func TestCrashGolden(t *testing.T) {
	datadriven.RunTest(t, "testdata/crash", func(t *testing.T, d *datadriven.TestData) string {
		switch d.Cmd {
		case "crash-each":
			full := runCrashScenario(t, -1, exactCrash)
			n := len(full.trace)
			if n == 0 {
				t.Fatal("no steps recorded")
			}
			var b strings.Builder
			for k := 0; k <= n; k++ {
				r := runCrashScenario(t, k, exactCrash)
				if strings.Join(r.trace, "\n") != strings.Join(full.trace, "\n") {
					t.Fatalf("step order differs between runs:\n%s\nvs\n%s", strings.Join(r.trace, "\n"), strings.Join(full.trace, "\n"))
				}
				id, problems := checkRecovery(t, r.clone, r)
				if want := map[bool]uint64{true: 2, false: 1}[k == n]; id != want {
					t.Fatalf("crash before step %d: Latest picked checkpoint %d, want %d", k, id, want)
				}
				label := "after the last step"
				if k < n {
					label = fmt.Sprintf("before %s", full.trace[k])
				}
				fmt.Fprintf(&b, "%2d %s: latest=%d state=ok\n", k, label, id)
				for _, p := range problems {
					fmt.Fprintf(&b, "     skipped chk-%d: %v\n", p.ID, p.Err)
				}
			}
			return b.String()
		default:
			return fmt.Sprintf("unknown command %q", d.Cmd)
		}
	})
}

// TestCrashRandomUnsynced crashes before each step keeping a random part of
// the unsynced data and directory entries (seeded; -seed replays). Whatever
// survives, Latest picks a complete checkpoint that restores exactly, and
// checkpoint 2 only once its metadata rename has happened.
func TestCrashRandomUnsynced(t *testing.T) {
	seed := testSeed(t)
	full := runCrashScenario(t, -1, exactCrash)
	rename := -1
	for i, s := range full.trace {
		if strings.HasPrefix(s, "rename ") && strings.HasSuffix(s, metadataName) {
			rename = i
		}
	}
	if rename < 0 {
		t.Fatalf("no metadata rename in the trace:\n%s", strings.Join(full.trace, "\n"))
	}
	for k := 0; k <= len(full.trace); k++ {
		cfg := func(step int) vfs.CrashCloneCfg {
			return vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: newRand(seed + uint64(step))}
		}
		r := runCrashScenario(t, k, cfg)
		id, problems := checkRecovery(t, r.clone, r)
		if id == 2 && k <= rename {
			t.Fatalf("seed %d: crash before step %d (%s) yet checkpoint 2 was picked", seed, k, full.trace[k])
		}
		if k == len(full.trace) && id != 2 {
			t.Fatalf("seed %d: crash after the last step, Latest picked %d (problems %v)", seed, id, problems)
		}
	}
}
