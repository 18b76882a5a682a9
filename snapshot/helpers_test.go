package snapshot

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

var seedFlag = flag.Uint64("seed", 0, "seed for the randomized tests (0: pick one and print it)")

// testSeed returns the seed for a randomized test and logs how to replay it.
func testSeed(t testing.TB) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed=%d)", seed, seed)
	return seed
}

// testLogger keeps pebble quiet unless something goes wrong.
type testLogger struct{ t testing.TB }

func (testLogger) Infof(string, ...any)                     {}
func (l testLogger) Errorf(f string, args ...any)           { l.t.Logf("pebble: "+f, args...) }
func (l testLogger) Fatalf(f string, args ...any)           { panic(fmt.Sprintf("pebble fatal: "+f, args...)) }
func (l testLogger) Eventf(context.Context, string, ...any) {}

func testStoreOptions(t testing.TB) StoreOptions {
	return StoreOptions{
		DeferredWaitTimeout: 30 * time.Second,
		CaptureTimeout:      30 * time.Second,
		CloseTimeout:        30 * time.Second,
		Tune: func(o *pebble.Options) {
			// Deterministic file numbers and operation order.
			o.DisableAutomaticCompactions = true
			o.Logger = testLogger{t}
		},
	}
}

// kv is one write: a set, or a delete when del is set.
type kv struct {
	key, val string
	del      bool
}

func set(k, v string) kv { return kv{key: k, val: v} }
func del(k string) kv    { return kv{key: k, del: true} }

// stateKey prefixes a key with a 2-byte key group, as the engine does.
func stateKey(k string) []byte {
	g := uint16(len(k)*31+int(k[len(k)-1])) % 128
	return append([]byte{byte(g >> 8), byte(g)}, k...)
}

// apply commits writes to s and to the model.
func apply(t testing.TB, s *Store, model map[string]string, writes ...kv) {
	t.Helper()
	b := s.NewBatch()
	defer b.Close()
	for _, w := range writes {
		if w.del {
			if err := b.Delete(stateKey(w.key)); err != nil {
				t.Fatal(err)
			}
			delete(model, w.key)
		} else {
			if err := b.Set(stateKey(w.key), []byte(w.val)); err != nil {
				t.Fatal(err)
			}
			model[w.key] = w.val
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

// dump returns every key of s (without its key group) and value.
func dump(t testing.TB, s *Store) map[string]string {
	t.Helper()
	it, err := s.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.Value()
		if err != nil {
			t.Fatal(err)
		}
		out[string(it.Key()[2:])] = string(v)
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// diffState describes how got differs from want, or "" if equal.
func diffState(got, want map[string]string) string {
	if maps.Equal(got, want) {
		return ""
	}
	var b strings.Builder
	keys := slices.Sorted(maps.Keys(got))
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	n := 0
	for _, k := range slices.Compact(keys) {
		g, gok := got[k]
		w, wok := want[k]
		if g == w && gok == wok {
			continue
		}
		if n++; n > 5 {
			b.WriteString("...")
			break
		}
		fmt.Fprintf(&b, "%s: got %q(%v) want %q(%v); ", k, g, gok, w, wok)
	}
	return b.String()
}

// waitCtx returns a context with a generous deadline for Wait.
func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// hookFS calls hook before every operation that changes the filesystem
// (kind is mkdir-all, create, link, rename, remove, remove-all, sync,
// sync-dir or write). A hook error fails the operation.
type hookFS struct {
	vfs.FS
	hook func(kind, path string) error
}

func (h *hookFS) Unwrap() vfs.FS { return h.FS }

func (h *hookFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := h.hook("create", name); err != nil {
		return nil, err
	}
	f, err := h.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return &hookFile{File: f, fs: h, path: name}, nil
}

func (h *hookFS) Link(oldname, newname string) error {
	if err := h.hook("link", newname); err != nil {
		return err
	}
	return h.FS.Link(oldname, newname)
}

func (h *hookFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := h.FS.OpenReadWrite(name, c, opts...)
	if err != nil {
		return nil, err
	}
	return &hookFile{File: f, fs: h, path: name}, nil
}

func (h *hookFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := h.FS.Open(name, opts...)
	if err != nil {
		return nil, err
	}
	return &hookFile{File: f, fs: h, path: name}, nil
}

func (h *hookFS) OpenDir(name string) (vfs.File, error) {
	f, err := h.FS.OpenDir(name)
	if err != nil {
		return nil, err
	}
	return &hookFile{File: f, fs: h, path: name, dir: true}, nil
}

func (h *hookFS) Remove(name string) error {
	if err := h.hook("remove", name); err != nil {
		return err
	}
	return h.FS.Remove(name)
}

func (h *hookFS) RemoveAll(name string) error {
	if err := h.hook("remove-all", name); err != nil {
		return err
	}
	return h.FS.RemoveAll(name)
}

func (h *hookFS) Rename(oldname, newname string) error {
	if err := h.hook("rename", oldname+" -> "+newname); err != nil {
		return err
	}
	return h.FS.Rename(oldname, newname)
}

func (h *hookFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := h.hook("rename", oldname+" -> "+newname); err != nil {
		return nil, err
	}
	f, err := h.FS.ReuseForWrite(oldname, newname, c)
	if err != nil {
		return nil, err
	}
	return &hookFile{File: f, fs: h, path: newname}, nil
}

func (h *hookFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := h.hook("mkdir-all", dir); err != nil {
		return err
	}
	return h.FS.MkdirAll(dir, perm)
}

type hookFile struct {
	vfs.File
	fs   *hookFS
	path string
	dir  bool
}

func (f *hookFile) Write(p []byte) (int, error) {
	if err := f.fs.hook("write", f.path); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *hookFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.hook("write", f.path); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *hookFile) Sync() error {
	kind := "sync"
	if f.dir {
		kind = "sync-dir"
	}
	if err := f.fs.hook(kind, f.path); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *hookFile) SyncData() error {
	if err := f.fs.hook("sync", f.path); err != nil {
		return err
	}
	return f.File.SyncData()
}

var _ io.Closer = (*hookFile)(nil)

// newRand returns a seeded generator.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// env is a job with a few tasks whose stores and checkpoints share one FS.
type env struct {
	t      testing.TB
	fs     vfs.FS
	base   string
	root   string
	job    string
	fp     string
	tasks  []string
	stores map[string]*Store
	models map[string]map[string]string
	// snaps[id][task] is the state checkpoint id captured.
	snaps map[uint64]map[string]map[string]string
	ops   map[uint64]map[string]string
}

func newEnv(t testing.TB, fs vfs.FS, tasks ...string) *env {
	return newEnvIn(t, fs, "/", tasks...)
}

// newEnvIn is newEnv with every directory under base.
func newEnvIn(t testing.TB, fs vfs.FS, base string, tasks ...string) *env {
	t.Helper()
	e := &env{t: t, fs: fs, base: base, root: fs.PathJoin(base, "ckpt"), job: "job", fp: "fp", tasks: tasks,
		stores: map[string]*Store{}, models: map[string]map[string]string{},
		snaps: map[uint64]map[string]map[string]string{}, ops: map[uint64]map[string]string{}}
	for _, task := range tasks {
		s, err := OpenStore(fs, fs.PathJoin(base, "live", task), testStoreOptions(t))
		if err != nil {
			t.Fatal(err)
		}
		e.stores[task] = s
		e.models[task] = map[string]string{}
	}
	return e
}

func (e *env) write(task string, w ...kv) { apply(e.t, e.stores[task], e.models[task], w...) }

// fill writes n keys with values tagged by tag into every task.
func (e *env) fill(n int, tag string) {
	for _, task := range e.tasks {
		var w []kv
		for i := range n {
			w = append(w, set(fmt.Sprintf("k%05d", i), fmt.Sprintf("%s-%s-%d", tag, task, i)))
		}
		e.write(task, w...)
	}
}

// snapshotAll snapshots every task into checkpoint id and returns the
// metadata to write (not written).
func (e *env) snapshotAll(id uint64) (Metadata, error) {
	m := Metadata{JobName: e.job, GraphFingerprint: e.fp, ID: id, Time: time.Unix(int64(1000+id), 0).UTC(),
		Tasks: map[string]Handle{}}
	e.snaps[id] = map[string]map[string]string{}
	e.ops[id] = map[string]string{}
	for _, task := range e.tasks {
		snap := make(map[string]string, len(e.models[task]))
		maps.Copy(snap, e.models[task])
		op := fmt.Sprintf("opstate %s %d", task, id)
		e.snaps[id][task] = snap
		e.ops[id][task] = op
		p, err := e.stores[task].Snapshot(TaskDir(e.fs, e.root, id, task), []byte(op))
		if err != nil {
			return Metadata{}, err
		}
		h, err := p.Wait(waitCtx(e.t))
		if err != nil {
			return Metadata{}, err
		}
		m.Tasks[task] = h
	}
	return m, nil
}

// checkpoint snapshots every task and completes checkpoint id.
func (e *env) checkpoint(id uint64, savepoint bool) Metadata {
	e.t.Helper()
	m, err := e.snapshotAll(id)
	if err != nil {
		e.t.Fatal(err)
	}
	m.Savepoint = savepoint
	if err := WriteMetadata(e.fs, e.root, m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// checkRestore restores every task of m and compares with what it captured.
func (e *env) checkRestore(m Metadata) {
	e.t.Helper()
	for _, task := range e.tasks {
		live := e.fs.PathJoin(e.base, "restored", fmt.Sprintf("%d-%s", m.ID, task))
		s, op, err := Restore(context.Background(), e.fs, e.root, m, task, live, testStoreOptions(e.t))
		if err != nil {
			e.t.Fatalf("restore %s from checkpoint %d: %v", task, m.ID, err)
		}
		if d := diffState(dump(e.t, s), e.snaps[m.ID][task]); d != "" {
			e.t.Fatalf("restore %s from checkpoint %d: %s", task, m.ID, d)
		}
		if string(op) != e.ops[m.ID][task] {
			e.t.Fatalf("restore %s from checkpoint %d: operator state %q, want %q", task, m.ID, op, e.ops[m.ID][task])
		}
		if err := s.Close(); err != nil {
			e.t.Fatal(err)
		}
	}
}

// latest runs Latest and checks that it picked want.
func (e *env) latest(want uint64) (Metadata, []Problem) {
	e.t.Helper()
	m, problems, err := Latest(context.Background(), e.fs, e.root, e.job, e.fp)
	if err != nil {
		e.t.Fatalf("Latest: %v (problems %v)", err, problems)
	}
	if m.ID != want {
		e.t.Fatalf("Latest picked checkpoint %d, want %d (problems %v)", m.ID, want, problems)
	}
	return m, problems
}

func (e *env) close() {
	for _, task := range e.tasks {
		if err := e.stores[task].Close(); err != nil {
			e.t.Fatal(err)
		}
	}
}
