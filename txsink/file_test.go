package txsink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

const fileDir = "/data/out"

var fileIDs = []string{"p-job-sink-0-0", "p-job-sink-0-1"}

var errCrashed = errors.New("test: process crashed")

// fsFaults is an errorfs injector: it counts operations, can crash the
// process after operation crashAt (the MemFS is crash-cloned then and
// every later operation fails), fails the next operation of a kind, and
// can make the disk full.
type fsFaults struct {
	mu       sync.Mutex
	mem      *vfs.MemFS
	ops      int
	crashAt  int // -1: never
	crashCfg vfs.CrashCloneCfg
	crashed  *vfs.MemFS
	next     map[errorfs.OpKind]bool
	full     bool
}

func newFaults(mem *vfs.MemFS) *fsFaults {
	return &fsFaults{mem: mem, crashAt: -1, next: map[errorfs.OpKind]bool{}}
}

func (f *fsFaults) String() string { return "txsink test faults" }

func (f *fsFaults) MaybeError(op errorfs.Op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crashed != nil {
		return errCrashed
	}
	if f.crashAt >= 0 && f.ops >= f.crashAt {
		f.crashed = f.mem.CrashClone(f.crashCfg)
		return errCrashed
	}
	f.ops++
	if f.next[op.Kind] {
		delete(f.next, op.Kind)
		return errorfs.ErrInjected
	}
	if f.full {
		switch op.Kind {
		case errorfs.OpCreate, errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpRename, errorfs.OpMkdirAll:
			return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
		}
	}
	return nil
}

func (f *fsFaults) failNext(k errorfs.OpKind) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next[k] = true
}

func (f *fsFaults) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.next)
	f.full = false
}

func (f *fsFaults) setFull(full bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.full = full
}

func newFileSink(t testing.TB, fs vfs.FS) (*Sink, error) {
	t.Helper()
	b, err := NewFile(FileConfig{FS: fs, Dir: fileDir, IDs: fileIDs})
	if err != nil {
		return nil, err
	}
	return New(b, Config{Owner: "job/sink/0"})
}

// published returns the values of every published record, by owner and
// epoch, and the epochs of the parts.
func filePublished(t testing.TB, fs vfs.FS) ([]string, []uint64) {
	t.Helper()
	parts, err := FileParts(fs, fileDir)
	if err != nil {
		t.Fatal(err)
	}
	var vals []string
	var epochs []uint64
	for _, p := range parts {
		if p.Owner != "job/sink/0" {
			t.Fatalf("part %s has owner %q", p.Name, p.Owner)
		}
		recs, err := ReadFilePart(fs, fileDir, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			vals = append(vals, string(r.Value))
		}
		epochs = append(epochs, p.Epoch)
	}
	return vals, epochs
}

func fileTemps(t testing.TB, fs vfs.FS) []string {
	t.Helper()
	names, err := fs.List(fileDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, ".txn-") {
			out = append(out, n)
		}
	}
	return out
}

func fileSeq(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func fileRecs(from, to int) []Record {
	var out []Record
	for i := from; i < to; i++ {
		out = append(out, Record{Key: []byte("k"), Value: []byte(strconv.Itoa(i))})
	}
	return out
}

func TestFileNames(t *testing.T) {
	for _, owner := range []string{"job/sink/0", "a-b-7", "x%2Fy", "weird name+é"} {
		name := PartName(owner, 42)
		if strings.ContainsAny(name, "/ +é") {
			t.Errorf("PartName(%q) = %q is not one clean path element", owner, name)
		}
		fs := vfs.NewMem()
		if err := fs.MkdirAll(fileDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{name, "part-x.jsonl", "part-a-1.jsonl", ".txn-x-1-1.tmp", "other"} {
			f, err := fs.Create(fs.PathJoin(fileDir, n), vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		parts, err := FileParts(fs, fileDir)
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) != 1 || parts[0].Owner != owner || parts[0].Epoch != 42 || parts[0].Name != name {
			t.Errorf("FileParts for owner %q = %+v, want only %s", owner, parts, name)
		}
	}
	for _, id := range []string{"p-job-sink-0-1", "a/b-3", "%41"} {
		name := fmt.Sprintf(".txn-%s-%d-%d.tmp", escapeName(id), 7, 9)
		gotID, gen, ok := parseTemp(name)
		if !ok || gotID != id || gen != 7 {
			t.Errorf("parseTemp(%q) = %q, %d, %v; want %q, 7", name, gotID, gen, ok, id)
		}
	}
	if _, err := NewFile(FileConfig{FS: vfs.NewMem(), Dir: fileDir, IDs: []string{"a", "a"}}); !errors.Is(err, ErrConfig) {
		t.Errorf("duplicate ids: %v, want ErrConfig", err)
	}
	if _, err := NewFile(FileConfig{FS: vfs.NewMem(), IDs: []string{"a"}}); !errors.Is(err, ErrConfig) {
		t.Errorf("no dir: %v, want ErrConfig", err)
	}
}

// fileModel is the randomized contract scenario of contract_test.go
// (model) run against the File backend on a crashable MemFS: writes,
// barriers, completes (some lost, some out of order), crashes that lose
// unsynced data, zombies, aborts and injected filesystem faults. The
// published parts must hold every record exactly once, in order.
type fileModel struct {
	t      *testing.T
	rng    *rand.Rand
	mem    *vfs.MemFS
	faults *fsFaults
	fs     vfs.FS

	sink   *Sink
	pos    int
	epoch  uint64
	cands  []checkpoint
	latest checkpoint
	log    []string
}

func (m *fileModel) logf(format string, args ...any) {
	m.log = append(m.log, fmt.Sprintf(format, args...))
}

func (m *fileModel) dump() string { return strings.Join(m.log, "\n") }

func (m *fileModel) setFS(mem *vfs.MemFS) {
	m.mem = mem
	m.faults = newFaults(mem)
	m.fs = errorfs.Wrap(mem, m.faults)
}

func (m *fileModel) restart(ctx context.Context) {
	for attempt := 0; ; attempt++ {
		if attempt > 20 {
			m.t.Fatalf("no recovery after 20 attempts:\n%s", m.dump())
		}
		m.pos = m.latest.pos
		m.cands = nil
		s, err := newFileSink(m.t, m.fs)
		if err == nil {
			var states [][]byte
			if m.latest.state != nil {
				states = append(states, m.latest.state)
			}
			err = s.Recover(ctx, states...)
		}
		if err != nil {
			m.logf("recover from %d failed: %v", m.latest.id, err)
			continue
		}
		m.sink = s
		m.logf("recovered from checkpoint %d at pos %d", m.latest.id, m.pos)
		return
	}
}

var fileFaultOps = []errorfs.OpKind{
	errorfs.OpCreate, errorfs.OpFileWrite, errorfs.OpFileSync, errorfs.OpFileClose,
	errorfs.OpRename, errorfs.OpRemove, errorfs.OpList, errorfs.OpOpen,
	errorfs.OpOpenDir, errorfs.OpLock, errorfs.OpStat, errorfs.OpFileRead,
}

func (m *fileModel) step(ctx context.Context) {
	var err error
	switch r := m.rng.IntN(100); {
	case r < 40:
		n := m.rng.IntN(4)
		if err = m.sink.Write(ctx, fileRecs(m.pos, m.pos+n)); err == nil {
			m.pos += n
		}
		m.logf("write %d -> pos %d: %v", n, m.pos, err)
	case r < 60:
		m.epoch++
		var st []byte
		st, err = m.sink.PreCommit(ctx, m.epoch)
		if err == nil {
			m.cands = append(m.cands, checkpoint{m.epoch, m.pos, st})
		}
		m.logf("precommit %d at pos %d: %v", m.epoch, m.pos, err)
	case r < 75:
		if len(m.cands) == 0 {
			return
		}
		i := 0
		if m.rng.IntN(3) == 0 {
			i = m.rng.IntN(len(m.cands))
		}
		m.latest = m.cands[i]
		m.cands = m.cands[i+1:]
		if m.rng.IntN(4) == 0 {
			m.logf("complete %d, notification lost", m.latest.id)
			return
		}
		err = m.sink.Commit(ctx, m.latest.id)
		m.logf("complete %d, commit: %v", m.latest.id, err)
	case r < 80: // the machine crashes: unsynced data is lost at random
		pct := []int{0, 50, 100}[m.rng.IntN(3)]
		m.logf("crash keeping %d%% of unsynced data", pct)
		m.setFS(m.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: m.rng}))
		m.restart(ctx)
		return
	case r < 90:
		op := fileFaultOps[m.rng.IntN(len(fileFaultOps))]
		m.faults.failNext(op)
		m.logf("arm fault on op %d", op)
	case r < 94:
		old := m.sink
		m.logf("zombie")
		m.restart(ctx)
		zerr := old.Write(ctx, []Record{{Value: []byte("zombie")}})
		if zerr == nil {
			m.epoch++
			_, zerr = old.PreCommit(ctx, m.epoch)
		}
		if zerr == nil {
			zerr = old.Commit(ctx, m.epoch)
		}
		vals, _ := filePublished(m.t, m.fs)
		if slices.Contains(vals, "zombie") {
			m.t.Fatalf("a zombie's record was published:\n%s", m.dump())
		}
		m.logf("zombie stopped: %v", zerr)
		return
	default:
		m.faults.clear()
		err = m.sink.Abort(ctx)
		m.logf("abort: %v", err)
		m.restart(ctx)
		return
	}
	if err != nil {
		m.restart(ctx)
	}
}

func (m *fileModel) finish(ctx context.Context) {
	m.faults.clear()
	for attempt := 0; ; attempt++ {
		if attempt > 5 {
			m.t.Fatalf("could not finish:\n%s", m.dump())
		}
		m.epoch++
		st, err := m.sink.PreCommit(ctx, m.epoch)
		if err == nil {
			m.latest = checkpoint{m.epoch, m.pos, st}
			err = m.sink.Commit(ctx, m.epoch)
		}
		if err == nil {
			return
		}
		m.logf("finish: %v", err)
		m.restart(ctx)
	}
}

func (m *fileModel) check() {
	want := fileSeq(0, m.pos)
	vals, epochs := filePublished(m.t, m.fs)
	if !slices.Equal(vals, want) {
		m.t.Fatalf("published %v (epochs %v), want %d records 0..%d in order\n%s", vals, epochs, m.pos, m.pos-1, m.dump())
	}
	if err := m.sink.Close(); err != nil {
		m.t.Fatalf("close: %v\n%s", err, m.dump())
	}
	if tmp := fileTemps(m.t, m.fs); len(tmp) != 0 {
		m.t.Fatalf("temporary files left after close: %v\n%s", tmp, m.dump())
	}
	// Every commit was durable: a crash now loses nothing.
	crashed := m.mem.CrashClone(vfs.CrashCloneCfg{})
	if vals, _ := filePublished(m.t, crashed); !slices.Equal(vals, want) {
		m.t.Fatalf("after a crash the published output is %v, want %d records\n%s", vals, m.pos, m.dump())
	}
}

// TestFileContractRandomized runs the randomized contract scenario against
// the File backend. A failure prints the seed; -seed replays it, -runs and
// -steps size it (the File runs are a quarter of -runs).
func TestFileContractRandomized(t *testing.T) {
	seeds := []uint64{*seedFlag}
	if *seedFlag == 0 {
		base := uint64(time.Now().UnixNano())
		seeds = seeds[:0]
		for i := range max(1, *runsFlag/4) {
			seeds = append(seeds, base+uint64(i))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	records, events := 0, map[string]int{}
	for _, seed := range seeds {
		m := &fileModel{rng: rand.New(rand.NewPCG(seed, seed))}
		m.setFS(vfs.NewCrashableMem())
		m.logf("seed %d", seed)
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			m.t = t
			m.restart(ctx)
			for range *stepsFlag {
				m.step(ctx)
			}
			m.finish(ctx)
			m.check()
		})
		if !ok {
			t.Fatalf("failed with seed %d; replay with: go test ./txsink -run TestFileContractRandomized -seed %d", seed, seed)
		}
		records += m.pos
		for _, l := range m.log {
			for _, k := range []string{"crash", "zombie stopped", "recovered", "complete", "failed"} {
				if strings.Contains(l, k) {
					events[k]++
				}
			}
		}
	}
	t.Logf("%d seeds passed (first %d); replay one with -seed; %d records published; events %v", len(seeds), seeds[0], records, events)
	if len(seeds) >= 10 && (records == 0 || events["crash"] == 0 || events["zombie stopped"] == 0 || events["failed"] == 0) {
		t.Fatalf("the scenario degenerated: %d records, events %v", records, events)
	}
}

// crashRun is what the process achieved before it crashed.
type crashRun struct {
	states     map[uint64][]byte // checkpoint -> sink state (0: none)
	pos        map[uint64]int    // checkpoint -> source position
	committing uint64            // highest checkpoint whose Commit was called
	err        error             // the failure the crash caused, if any
}

const crashRecords = 9

// crashScenario runs three epochs of three records, with a commit that
// lags one epoch: W(1) PC(1) W(2) PC(2) C(2) W(3) PC(3) C(3). It stops at
// the first error.
func crashScenario(ctx context.Context, t testing.TB, fs vfs.FS) crashRun {
	run := crashRun{states: map[uint64][]byte{0: nil}, pos: map[uint64]int{0: 0}}
	s, err := newFileSink(t, fs)
	if err == nil {
		err = s.Recover(ctx)
	}
	pos := 0
	for e := uint64(1); e <= 3 && err == nil; e++ {
		if err = s.Write(ctx, fileRecs(pos, pos+2)); err != nil {
			break
		}
		if err = s.Write(ctx, fileRecs(pos+2, pos+3)); err != nil {
			break
		}
		pos += 3
		var st []byte
		if st, err = s.PreCommit(ctx, e); err != nil {
			break
		}
		run.states[e], run.pos[e] = st, pos
		if e >= 2 {
			run.committing = e
			err = s.Commit(ctx, e)
		}
	}
	run.err = err
	return run
}

// recoverAndFinish recovers a new process from checkpoint cp on fs, checks
// that exactly the epochs up to cp are published, then lets the source
// replay the rest and checks every record is published once, in order.
func recoverAndFinish(ctx context.Context, t *testing.T, fs vfs.FS, run crashRun, cp uint64, label string) {
	s, err := newFileSink(t, fs)
	if err != nil {
		t.Fatalf("%s: new sink after crash: %v", label, err)
	}
	var states [][]byte
	if run.states[cp] != nil {
		states = append(states, run.states[cp])
	}
	if err := s.Recover(ctx, states...); err != nil {
		t.Fatalf("%s: recover from checkpoint %d: %v", label, cp, err)
	}
	pos := run.pos[cp]
	if vals, epochs := filePublished(t, fs); !slices.Equal(vals, fileSeq(0, pos)) {
		t.Fatalf("%s: after recovery from checkpoint %d published %v (epochs %v), want records 0..%d", label, cp, vals, epochs, pos-1)
	}
	if err := s.Write(ctx, fileRecs(pos, crashRecords)); err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	if _, err := s.PreCommit(ctx, 100); err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	if err := s.Commit(ctx, 100); err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("%s: close: %v", label, err)
	}
	if vals, epochs := filePublished(t, fs); !slices.Equal(vals, fileSeq(0, crashRecords)) {
		t.Fatalf("%s: published %v (epochs %v), want records 0..%d once in order", label, vals, epochs, crashRecords-1)
	}
	if tmp := fileTemps(t, fs); len(tmp) != 0 {
		t.Fatalf("%s: temporary files left: %v", label, tmp)
	}
}

// TestFileCrashEveryOp crashes the process after filesystem operation k of
// the scenario, for every k (through Fence, Begin, Write, Prepare and
// Commit), with none, half (seeded) or all of the unsynced data kept, and
// recovers a fresh Sink on the crashed filesystem from every checkpoint
// that may have been the latest complete one.
func TestFileCrashEveryOp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d; replay with -seed %d", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	mem := vfs.NewCrashableMem()
	f := newFaults(mem)
	if run := crashScenario(ctx, t, errorfs.Wrap(mem, f)); run.err != nil {
		t.Fatalf("scenario without crash: %v", run.err)
	}
	total := f.ops
	if vals, _ := filePublished(t, mem); !slices.Equal(vals, fileSeq(0, crashRecords)) {
		t.Fatalf("scenario without crash published %v", vals)
	}
	t.Logf("%d filesystem operations", total)
	recoveries := 0
	for k := 0; k <= total; k++ {
		for _, pct := range []int{0, 50, 100} {
			mem := vfs.NewCrashableMem()
			f := newFaults(mem)
			f.crashAt = k
			f.crashCfg = vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rng}
			run := crashScenario(ctx, t, errorfs.Wrap(mem, f))
			if f.crashed == nil {
				if k < total {
					t.Fatalf("crash after op %d: never reached (%d ops)", k, f.ops)
				}
				f.crashed = mem.CrashClone(f.crashCfg)
			} else if !errors.Is(run.err, errCrashed) {
				t.Fatalf("crash after op %d: scenario error %v does not wrap the crash", k, run.err)
			}
			for cp := range run.states {
				if cp < run.committing {
					continue // checkpoint committing was complete
				}
				fs := f.crashed.CrashClone(vfs.CrashCloneCfg{}) // a copy: the crashed state is all synced
				label := fmt.Sprintf("seed %d: crash after op %d of %d keeping %d%% unsynced, recover from checkpoint %d (err %v)", seed, k, total, pct, cp, run.err)
				recoverAndFinish(ctx, t, fs, run, cp, label)
				recoveries++
			}
		}
	}
	t.Logf("%d recoveries from %d crash points passed", recoveries, total+1)
}

// TestFileDiskFull fills the disk before epoch 2 is pre-committed: Prepare
// fails with ENOSPC, nothing of the epoch is published, recovery fails
// cleanly while the disk is full and, once space is freed, replays epoch 1
// (pre-committed, never committed) from the checkpoint.
func TestFileDiskFull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mem := vfs.NewMem()
	f := newFaults(mem)
	fs := errorfs.Wrap(mem, f)
	s, err := newFileSink(t, fs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, fileRecs(0, 3)); err != nil {
		t.Fatal(err)
	}
	st1, err := s.PreCommit(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Checkpoint 1 completes but its notification is lost.
	if err := s.Write(ctx, fileRecs(3, 6)); err != nil {
		t.Fatal(err)
	}
	f.setFull(true)
	_, err = s.PreCommit(ctx, 2)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "prepare") || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("pre-commit on a full disk: %v, want a prepare error wrapping ENOSPC", err)
	}
	if !errors.Is(s.Err(), syscall.ENOSPC) {
		t.Fatalf("sink not failed by the full disk: %v", s.Err())
	}
	if vals, _ := filePublished(t, fs); len(vals) != 0 {
		t.Fatalf("published %v on a full disk", vals)
	}

	// The restart fails cleanly while the disk is full...
	s2, err := newFileSink(t, fs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Recover(ctx, st1); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("recover on a full disk: %v, want ENOSPC", err)
	}
	// ...and replays epoch 1 once space is freed.
	f.setFull(false)
	s3, err := newFileSink(t, fs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.Recover(ctx, st1); err != nil {
		t.Fatal(err)
	}
	if vals, _ := filePublished(t, fs); !slices.Equal(vals, fileSeq(0, 3)) {
		t.Fatalf("after recovery published %v, want epoch 1 (0..2)", vals)
	}
	if err := s3.Write(ctx, fileRecs(3, 6)); err != nil {
		t.Fatal(err)
	}
	if _, err := s3.PreCommit(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := s3.Commit(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}
	if vals, _ := filePublished(t, fs); !slices.Equal(vals, fileSeq(0, 6)) {
		t.Fatalf("published %v, want 0..5 once in order", vals)
	}
	if tmp := fileTemps(t, fs); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
}

// TestFileZombie runs a second instance over the same directory while the
// first keeps going, on a MemFS and on the real disk (fcntl locks): the
// first can neither commit nor begin, its temporary files are removed, its
// epoch is published once by the second, and a Fence waits (bounded) for
// an identity's lock held by a commit in flight.
func TestFileZombie(t *testing.T) {
	for _, disk := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", disk), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var fs vfs.FS = vfs.NewMem()
			dir := fileDir
			if disk {
				fs, dir = vfs.Default, t.TempDir()
			}
			newSink := func() (*Sink, *File) {
				b, err := NewFile(FileConfig{FS: fs, Dir: dir, IDs: fileIDs, LockTimeout: 10 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				s, err := New(b, Config{Owner: "job/sink/0"})
				if err != nil {
					t.Fatal(err)
				}
				return s, b
			}
			read := func() []string {
				parts, err := FileParts(fs, dir)
				if err != nil {
					t.Fatal(err)
				}
				var vals []string
				for _, p := range parts {
					rs, err := ReadFilePart(fs, dir, p)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range rs {
						vals = append(vals, string(r.Value))
					}
				}
				return vals
			}
			tempCount := func() int {
				names, err := fs.List(dir)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, name := range names {
					if strings.HasPrefix(name, ".txn-") {
						n++
					}
				}
				return n
			}

			a, ab := newSink()
			if err := a.Recover(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.Write(ctx, fileRecs(0, 3)); err != nil {
				t.Fatal(err)
			}
			st1, err := a.PreCommit(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Write(ctx, []Record{{Value: []byte("zombie")}}); err != nil {
				t.Fatal(err)
			}
			if n := tempCount(); n != 2 {
				t.Fatalf("%d temporary files for two open transactions", n)
			}

			// B takes over from checkpoint 1 while A is alive.
			b, _ := newSink()
			if err := b.Recover(ctx, st1); err != nil {
				t.Fatal(err)
			}
			if n := tempCount(); n != 0 {
				t.Fatalf("%d temporary files left after the fence", n)
			}
			if err := a.Commit(ctx, 1); !errors.Is(err, ErrFenced) {
				t.Fatalf("zombie commit: %v, want ErrFenced", err)
			}
			if err := a.Abort(ctx); err != nil {
				t.Fatalf("zombie abort (its files are gone): %v", err)
			}
			if _, err := ab.Begin(ctx, 1); !errors.Is(err, ErrFenced) {
				t.Fatalf("zombie begin: %v, want ErrFenced", err)
			}
			if got := read(); !slices.Equal(got, fileSeq(0, 3)) {
				t.Fatalf("published %v, want epoch 1 once (0..2)", got)
			}

			if err := b.Write(ctx, fileRecs(3, 5)); err != nil { // B's open epoch
				t.Fatal(err)
			}

			// A commit in flight holds the identity's lock: a Fence waits
			// for it, bounded by its context.
			l, err := fs.Lock(fs.PathJoin(dir, ".lock-"+escapeName(fileIDs[0])))
			if err != nil {
				t.Fatal(err)
			}
			_, cb := newSink()
			short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
			err = cb.Fence(short, nil)
			cancelShort()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("fence while the lock is held: %v, want a bounded wait", err)
			}
			done := make(chan error, 1)
			go func() { done <- cb.Fence(ctx, nil) }()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("fence after the lock was released: %v", err)
			}
			// C's fence made B a zombie too.
			if _, err := b.PreCommit(ctx, 2); !errors.Is(err, ErrFenced) {
				t.Fatalf("pre-commit of a fenced instance: %v, want ErrFenced", err)
			}
			if got := read(); !slices.Equal(got, fileSeq(0, 3)) {
				t.Fatalf("published %v, want only epoch 1", got)
			}
		})
	}
}

// TestFileCommitOutcomeUnknown fails the directory sync right after the
// commit's rename: the commit reports ErrCommit though the part is
// visible. Recovery must not publish the epoch again, and must make the
// part durable (a crash right after loses nothing).
func TestFileCommitOutcomeUnknown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mem := vfs.NewCrashableMem()
	f := newFaults(mem)
	fs := errorfs.Wrap(mem, f)
	s, err := newFileSink(t, fs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, fileRecs(0, 4)); err != nil {
		t.Fatal(err)
	}
	st, err := s.PreCommit(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	f.failNext(errorfs.OpFileSync) // the commit's only sync: the directory's, after the rename
	if err := s.Commit(ctx, 1); !errors.Is(err, ErrCommit) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("commit with a failing directory sync: %v, want ErrCommit", err)
	}
	if vals, _ := filePublished(t, fs); !slices.Equal(vals, fileSeq(0, 4)) {
		t.Fatalf("the rename is visible before recovery: published %v", vals)
	}
	s2, err := newFileSink(t, fs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Recover(ctx, st); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	for _, fs := range []vfs.FS{fs, crashed} {
		if vals, epochs := filePublished(t, fs); !slices.Equal(vals, fileSeq(0, 4)) || !slices.Equal(epochs, []uint64{1}) {
			t.Fatalf("after recovery published %v (epochs %v), want epoch 1 (0..3) once", vals, epochs)
		}
	}
}
