package snapshot

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// randomWrites returns n random sets and deletes over keys k000..k299.
func randomWrites(rng interface{ IntN(int) int }, n int, tag string) []kv {
	w := make([]kv, 0, n)
	for i := range n {
		k := fmt.Sprintf("k%03d", rng.IntN(300))
		if rng.IntN(4) == 0 {
			w = append(w, del(k))
		} else {
			w = append(w, set(k, fmt.Sprintf("%s-%d-%d", tag, i, rng.IntN(1000))))
		}
	}
	return w
}

// checkGets compares Get on every key with the model.
func checkGets(t *testing.T, s *Store, model map[string]string) {
	t.Helper()
	for i := range 300 {
		k := fmt.Sprintf("k%03d", i)
		v, ok, err := s.Get(stateKey(k))
		if err != nil {
			t.Fatal(err)
		}
		if want, wok := model[k]; ok != wok || string(v) != want {
			t.Fatalf("Get(%s) = %q, %v; model %q, %v", k, v, ok, want, wok)
		}
	}
}

// TestRestoreRoundTripRandom takes checkpoints while random writes continue
// after each Snapshot call, restores from the middle of the history and goes
// on, and checks that every checkpoint restores exactly the state at its
// capture point. Seeded; -seed replays.
func TestRestoreRoundTripRandom(t *testing.T) {
	seed := testSeed(t)
	rng := newRand(seed)
	e := newEnv(t, vfs.NewMem(), "window-1")
	defer e.close()
	const task = "window-1"
	var metas []Metadata
	for id := uint64(1); id <= 8; id++ {
		e.write(task, randomWrites(rng, 1+rng.IntN(300), fmt.Sprintf("pre%d", id))...)
		e.snaps[id] = map[string]map[string]string{task: maps.Clone(e.models[task])}
		e.ops[id] = map[string]string{task: fmt.Sprintf("offsets %d", rng.IntN(1<<20))}
		p, err := e.stores[task].Snapshot(TaskDir(e.fs, e.root, id, task), []byte(e.ops[id][task]))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		// Writes after the capture point, checked through Get and iterators
		// while the capture may still be running.
		for range 1 + rng.IntN(4) {
			e.write(task, randomWrites(rng, 1+rng.IntN(100), fmt.Sprintf("post%d", id))...)
			checkGets(t, e.stores[task], e.models[task])
			if d := diffState(dump(t, e.stores[task]), e.models[task]); d != "" {
				t.Fatalf("seed %d: live state during snapshot %d: %s", seed, id, d)
			}
		}
		h, err := p.Wait(waitCtx(t))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		m := Metadata{JobName: e.job, GraphFingerprint: e.fp, ID: id, Time: time.Unix(int64(id), 0),
			Tasks: map[string]Handle{task: h}}
		if err := WriteMetadata(e.fs, e.root, m); err != nil {
			t.Fatal(err)
		}
		metas = append(metas, m)
		if id == 4 {
			// Crash-restart from checkpoint 3: the live store is rebuilt from
			// it, and the history goes on from there.
			if err := e.stores[task].Close(); err != nil {
				t.Fatal(err)
			}
			s, op, err := Restore(context.Background(), e.fs, e.root, metas[2], task, "/live/"+task, testStoreOptions(t))
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if string(op) != e.ops[3][task] {
				t.Fatalf("seed %d: operator state %q, want %q", seed, op, e.ops[3][task])
			}
			e.stores[task] = s
			e.models[task] = maps.Clone(e.snaps[3][task])
		}
	}
	for _, m := range metas {
		if err := Verify(context.Background(), e.fs, e.root, m); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		e.checkRestore(m)
	}
	e.latest(8)
}

// TestCaptureInFlight holds the capture at its first filesystem operation and
// checks what the task sees meanwhile: its own writes, a refusal of a second
// snapshot, bounded deferred writes, iterators that outlive the capture.
func TestCaptureInFlight(t *testing.T) {
	gate := make(chan struct{})
	held := make(chan struct{}, 1)
	mem := vfs.NewMem()
	fs := &hookFS{FS: mem, hook: func(kind, path string) error {
		if !strings.HasPrefix(path, "/ckpt/chk-1/") {
			return nil
		}
		select {
		case held <- struct{}{}:
		default:
		}
		select {
		case <-gate:
			return nil
		case <-time.After(time.Minute):
			return errors.New("test gate never opened")
		}
	}}
	opts := testStoreOptions(t)
	opts.MaxDeferredBytes = 4 << 10
	opts.DeferredWaitTimeout = time.Millisecond
	s, err := OpenStore(fs, "/live", opts)
	if err != nil {
		t.Fatal(err)
	}
	model := map[string]string{}
	for i := range 100 {
		apply(t, s, model, set(fmt.Sprintf("k%03d", i), "A"))
	}
	atCapture := maps.Clone(model)
	p, err := s.Snapshot(TaskDir(fs, "/ckpt", 1, "t"), []byte("op"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(time.Minute):
		t.Fatal("capture never reached the filesystem")
	}
	if _, err := s.Snapshot(TaskDir(fs, "/ckpt", 2, "t"), nil); !errors.Is(err, ErrCaptureInProgress) {
		t.Fatalf("second snapshot during a capture: %v", err)
	}
	apply(t, s, model, set("k000", "B"), del("k001"), set("k200", "B"))
	checkGets(t, s, model)
	it, err := s.NewIter(stateKey("k200")[:2])
	if err != nil {
		t.Fatal(err)
	}
	// The deferred writes are bounded.
	big := s.NewBatch()
	if err := big.Set(stateKey("k299"), make([]byte, 8<<10)); err != nil {
		t.Fatal(err)
	}
	if err := big.Commit(); !errors.Is(err, ErrDeferredFull) {
		t.Fatalf("commit past the bound: %v", err)
	}
	close(gate)
	h, err := p.Wait(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	// The capture is over: the same batch now goes to the database.
	if err := big.Commit(); err != nil {
		t.Fatal(err)
	}
	model["k299"] = string(make([]byte, 8<<10))
	_ = big.Close()
	// The iterator opened during the capture still works.
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := s.Close(); err == nil || !strings.Contains(err.Error(), "iterators still open") {
		t.Fatalf("close with an open iterator: %v", err)
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("iterator opened during the capture saw nothing")
	}
	checkGets(t, s, model)
	if err := WriteMetadata(fs, "/ckpt", Metadata{JobName: "j", ID: 1, Tasks: map[string]Handle{"t": h}}); err != nil {
		t.Fatal(err)
	}
	m, problems, err := Latest(context.Background(), fs, "/ckpt", "j", "")
	if err != nil {
		t.Fatalf("%v (problems %v)", err, problems)
	}
	r, op, err := Restore(context.Background(), fs, "/ckpt", m, "t", "/restored", testStoreOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if d := diffState(dump(t, r), atCapture); d != "" || string(op) != "op" {
		t.Fatalf("restored %s, op %q", d, op)
	}
	for _, st := range []*Store{r, s} {
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Get([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}
}

// TestIncrementalOnDisk checks on the real filesystem that a second
// checkpoint hard-links the sstables it shares with the first, only reads
// what is new, and survives the deletion of the first.
func TestIncrementalOnDisk(t *testing.T) {
	dir := t.TempDir()
	fs := vfs.Default
	e := newEnvIn(t, fs, dir, "window-1")
	defer e.close()

	e.fill(20000, "A")
	m1 := e.checkpoint(1, false)
	h1 := m1.Tasks["window-1"]
	if h1.NewBytes != h1.Size() {
		t.Fatalf("first checkpoint: new bytes %d, size %d", h1.NewBytes, h1.Size())
	}
	var w []kv
	for i := 0; i < 20000; i += 100 {
		w = append(w, set(fmt.Sprintf("k%05d", i), "B"))
	}
	e.write("window-1", w...)
	m2 := e.checkpoint(2, false)
	h2 := m2.Tasks["window-1"]
	t.Logf("checkpoint 2: %d bytes, %d new", h2.Size(), h2.NewBytes)

	old := map[string]FileInfo{}
	for _, f := range h1.Files {
		old[f.Name] = f
	}
	shared := 0
	var sharedBytes int64
	for _, f := range h2.Files {
		o, ok := old[f.Name]
		if !ok || !strings.HasSuffix(f.Name, ".sst") {
			continue
		}
		shared++
		sharedBytes += f.Size
		if o != f {
			t.Fatalf("%s: %+v in checkpoint 1, %+v in 2", f.Name, o, f)
		}
		a, err := os.Stat(filePath(fs, TaskDir(fs, e.root, 1, "window-1"), f.Name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.Stat(filePath(fs, TaskDir(fs, e.root, 2, "window-1"), f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(a, b) {
			t.Fatalf("%s is a copy, not a hard link", f.Name)
		}
	}
	if shared == 0 {
		t.Fatal("no sstable shared between the checkpoints")
	}
	if h2.NewBytes > h2.Size()-sharedBytes {
		t.Fatalf("checkpoint 2 counted %d new bytes, but %d of its %d are shared", h2.NewBytes, sharedBytes, h2.Size())
	}
	if err := Retain(fs, e.root, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(CheckpointDir(fs, e.root, 1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("checkpoint 1 still there: %v", err)
	}
	if err := Verify(context.Background(), fs, e.root, m2); err != nil {
		t.Fatal(err)
	}
	e.checkRestore(m2)
}

// TestSnapshotOfUnwrittenStore: a store never written (a source's or a
// sink's) snapshots its operator state alone, with no Pebble files; it
// restores as an empty store. Once written, its snapshots hold the
// database again, and a store reopened over keys counts as written.
func TestSnapshotOfUnwrittenStore(t *testing.T) {
	e := newEnv(t, vfs.NewMem(), "source-0", "window-0")
	defer e.close()
	e.write("window-0", set("a", "1"))
	m1 := e.checkpoint(1, false)
	if fs := m1.Tasks["source-0"].Files; len(fs) != 1 || fs[0].Name != opStateName {
		t.Fatalf("checkpoint 1 of the unwritten source-0 holds %v, want only %s", fs, opStateName)
	}
	if !hasDBFiles(m1.Tasks["window-0"]) {
		t.Fatalf("checkpoint 1 of window-0 holds %v, want its Pebble files", m1.Tasks["window-0"].Files)
	}
	e.checkRestore(m1)

	// Restored from the opstate alone, the store is empty and writable.
	s, op, err := Restore(context.Background(), e.fs, e.root, m1, "source-0", "/restored-src", testStoreOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if string(op) != "opstate source-0 1" {
		t.Fatalf("operator state %q", op)
	}
	apply(t, s, map[string]string{}, set("b", "2"))
	p, err := s.Snapshot(TaskDir(e.fs, e.root, 9, "source-0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p.Wait(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !hasDBFiles(h) {
		t.Fatalf("snapshot after a write holds %v, want Pebble files", h.Files)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened over its keys, the store snapshots them.
	s, err = OpenStore(e.fs, "/restored-src", testStoreOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if d := diffState(dump(t, s), map[string]string{"b": "2"}); d != "" {
		t.Fatal(d)
	}
	s.mu.Lock()
	written := s.mu.written
	s.mu.Unlock()
	if !written {
		t.Fatal("a store reopened over a key counts as unwritten: its next snapshot would lose the key")
	}

	// Later writes to the source make its next checkpoint hold them.
	e.write("source-0", set("c", "3"))
	m2 := e.checkpoint(2, false)
	if !hasDBFiles(m2.Tasks["source-0"]) {
		t.Fatalf("checkpoint 2 of source-0 after a write holds %v, want Pebble files", m2.Tasks["source-0"].Files)
	}
	e.checkRestore(m2)
	e.checkRestore(m1)
}

func hasDBFiles(h Handle) bool {
	for _, f := range h.Files {
		if strings.HasPrefix(f.Name, dbDirName+"/") {
			return true
		}
	}
	return false
}

// TestDeleteRangeRestores: a range deletion removes exactly the keys in
// [start, end), both straight to the database and deferred during a
// capture, and a snapshot taken after it restores without them.
func TestDeleteRangeRestores(t *testing.T) {
	fs := vfs.NewMem()
	s, err := OpenStore(fs, "/live", testStoreOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	key := func(k string) []byte { return append([]byte{0, 7}, k...) }
	model := map[string]string{}
	b := s.NewBatch()
	for i := range 100 {
		k := fmt.Sprintf("k%03d", i)
		if err := b.Set(key(k), []byte("v")); err != nil {
			t.Fatal(err)
		}
		model[k] = "v"
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	delRange := func(from, to int) {
		t.Helper()
		if err := b.DeleteRange(key(fmt.Sprintf("k%03d", from)), key(fmt.Sprintf("k%03d", to))); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			delete(model, fmt.Sprintf("k%03d", i))
		}
	}
	delRange(20, 50) // straight to the database
	p, err := s.Snapshot(TaskDir(fs, "/ckpt", 1, "t"), nil)
	if err != nil {
		t.Fatal(err)
	}
	delRange(60, 70) // deferred while the capture may still run
	if _, err := p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if d := diffState(dump(t, s), model); d != "" {
		t.Fatalf("live store after the range deletions: %s", d)
	}
	p, err = s.Snapshot(TaskDir(fs, "/ckpt", 2, "t"), nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p.Wait(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	if err := WriteMetadata(fs, "/ckpt", Metadata{JobName: "j", ID: 2, Tasks: map[string]Handle{"t": h}}); err != nil {
		t.Fatal(err)
	}
	m, problems, err := Latest(context.Background(), fs, "/ckpt", "j", "")
	if err != nil {
		t.Fatalf("%v (problems %v)", err, problems)
	}
	r, _, err := Restore(context.Background(), fs, "/ckpt", m, "t", "/restored", testStoreOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if d := diffState(dump(t, r), model); d != "" || len(model) != 60 {
		t.Fatalf("restored after the range deletions (%d keys expected): %s", len(model), d)
	}
	for _, st := range []*Store{r, s} {
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
