package txsink

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/internal/privfs"
)

// FileConfig configures the file backend of one sink subtask.
type FileConfig struct {
	// FS is the filesystem; nil means the operating system's (vfs.Default).
	// Tests pass a vfs.NewCrashableMem or an errorfs wrapper. What the
	// backend creates on it is private to the engine's user, whatever the
	// umask: directories 0700, files 0600 (the temporary files hold output
	// not committed yet; see internal/privfs).
	FS vfs.FS
	// Dir receives the published parts and the backend's bookkeeping
	// files. Required; it is created if missing. Every writer of the same
	// owners must use the same Dir.
	Dir string
	// IDs are the transactional identities of the subtask's slots, e.g.
	// TransactionalIDs(prefix, job, sink, subtask, subtask+1, 2). Required,
	// stable across restarts, unique among the writers of Dir.
	IDs []string
	// LockTimeout bounds each wait for an identity's lock (held by another
	// instance's Fence, Begin or Commit). Default 30s.
	LockTimeout time.Duration
}

// File is a Backend that commits each transaction as one file of a
// directory, published atomically by rename:
//
//   - Begin creates the temporary file .txn-<id>-<gen>-<seq>.tmp;
//   - Write appends JSON lines {"key":..,"value":..} (base64) to it;
//   - Prepare flushes and fsyncs it and the directory;
//   - Commit renames it to part-<owner>-<epoch>.jsonl (epoch zero-padded to
//     20 digits, owner path-escaped) and fsyncs the directory. The progress
//     marker (owner, epoch) is the published file's name, so data and marker
//     become visible together.
//
// Fencing: each identity has a generation, kept in .gen-<id>, and a lock
// file .lock-<id> (vfs.FS.Lock, fcntl on a real disk) held only during
// Fence, Begin and Commit. Fence bumps the generation; Begin, Prepare and
// Commit check it (Commit under the lock, right before the rename), so an
// earlier instance that is still running — a zombie — gets ErrFenced and
// publishes nothing, and a commit in flight is waited for.
//
// Readers list the part-*.jsonl files (FileParts) and ignore names that
// start with a dot. A File is used by one goroutine at a time.
type File struct {
	fs     vfs.FS
	cfg    FileConfig
	gens   []uint64 // generation of each slot, set by Fence
	open   []*fileTxn
	seq    uint64
	fenced bool
	closed bool
}

// NewFile checks cfg and creates the directory (made durable).
func NewFile(cfg FileConfig) (*File, error) {
	cfg.FS = privfs.Wrap(cfg.FS)
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: file: Dir is required", ErrConfig)
	}
	if len(cfg.IDs) == 0 {
		return nil, fmt.Errorf("%w: file: IDs is required", ErrConfig)
	}
	seen := map[string]bool{}
	for _, id := range cfg.IDs {
		if id == "" || seen[id] {
			return nil, fmt.Errorf("%w: file: transactional ids must be non-empty and distinct: %q", ErrConfig, cfg.IDs)
		}
		seen[id] = true
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = 30 * time.Second
	}
	cfg.IDs = slices.Clone(cfg.IDs)
	f := &File{fs: cfg.FS, cfg: cfg, gens: make([]uint64, len(cfg.IDs)), open: make([]*fileTxn, len(cfg.IDs))}
	if err := f.mkdir(cfg.Dir); err != nil {
		return nil, fmt.Errorf("txsink: file: create %s: %w", cfg.Dir, err)
	}
	return f, nil
}

// mkdir creates dir and the missing parents and syncs the parent of each
// directory it created, so the directory survives a crash.
func (b *File) mkdir(dir string) error {
	var created []string
	for p := dir; ; {
		if _, err := b.fs.Stat(p); err == nil {
			break
		} else if !errors.Is(err, iofs.ErrNotExist) {
			return err
		}
		created = append(created, p)
		parent := b.fs.PathDir(p)
		if parent == p {
			break
		}
		p = parent
	}
	if len(created) == 0 {
		return nil
	}
	if err := b.fs.MkdirAll(dir, privfs.DirMode); err != nil {
		return err
	}
	for _, p := range created {
		if parent := b.fs.PathDir(p); parent != p {
			if err := syncDir(b.fs, parent); err != nil {
				return err
			}
		}
	}
	return nil
}

// IDs implements Backend.
func (b *File) IDs() []string { return slices.Clone(b.cfg.IDs) }

// Fence implements Backend: it bumps the generation of every id of ids and
// of this backend (under each id's lock, so a commit in flight finishes
// first), then removes the temporary files of earlier generations.
func (b *File) Fence(ctx context.Context, ids []string) error {
	if b.closed {
		return fmt.Errorf("txsink: file: fence: backend closed")
	}
	all := append(slices.Clone(ids), b.cfg.IDs...)
	slices.Sort(all)
	all = slices.Compact(all)
	gens := make(map[string]uint64, len(all))
	for _, id := range all {
		if id == "" {
			return fmt.Errorf("txsink: file: fence: empty transactional id")
		}
		err := b.locked(ctx, id, func() error {
			g, err := b.readGen(id)
			if err != nil {
				return err
			}
			g++
			if err := b.writeGen(id, g); err != nil {
				return err
			}
			gens[id] = g
			return nil
		})
		if err != nil {
			return fmt.Errorf("txsink: file: fence %s: %w", id, err)
		}
	}
	// Every Begin of an earlier generation ran under the lock before the
	// bump, so its temporary file is listed now; a later generation's (an
	// instance that fenced us meanwhile) is left alone.
	names, err := b.fs.List(b.cfg.Dir)
	if err != nil {
		return fmt.Errorf("txsink: file: fence: list %s: %w", b.cfg.Dir, err)
	}
	for _, name := range names {
		id, gen, ok := parseTemp(name)
		if g, fenced := gens[id]; !ok || !fenced || gen >= g {
			continue
		}
		if err := b.fs.Remove(b.path(name)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return fmt.Errorf("txsink: file: fence %s: remove %s: %w", id, name, err)
		}
	}
	for i, id := range b.cfg.IDs {
		if t := b.open[i]; t != nil && t.f != nil {
			t.f.Close() // its file is removed; the transaction is over
			t.f = nil
		}
		b.gens[i] = gens[id]
		b.open[i] = nil
	}
	b.fenced = true
	return nil
}

// Committed implements Backend: the highest epoch of each owner's
// published parts. It syncs the directory first, so what it reports is
// durable even if the commit that published it failed before its sync.
func (b *File) Committed(ctx context.Context, owners []string) (map[string]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("txsink: file: read progress: %w", err)
	}
	if err := syncDir(b.fs, b.cfg.Dir); err != nil {
		return nil, fmt.Errorf("txsink: file: read progress: %w", err)
	}
	parts, err := FileParts(b.fs, b.cfg.Dir)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(owners))
	for _, o := range owners {
		out[o] = 0
	}
	for _, p := range parts {
		if e, ok := out[p.Owner]; ok {
			out[p.Owner] = max(e, p.Epoch)
		}
	}
	return out, nil
}

// Begin implements Backend: it creates the slot's temporary file.
func (b *File) Begin(ctx context.Context, slot int) (Txn, error) {
	if !b.fenced || b.closed {
		return nil, fmt.Errorf("txsink: file: begin on slot %d before fence or after close", slot)
	}
	if slot < 0 || slot >= len(b.cfg.IDs) {
		return nil, fmt.Errorf("txsink: file: begin: no slot %d of %d", slot, len(b.cfg.IDs))
	}
	id := b.cfg.IDs[slot]
	if t := b.open[slot]; t != nil && !t.done {
		return nil, fmt.Errorf("txsink: file: begin %s: a transaction is already open", id)
	}
	b.seq++
	t := &fileTxn{b: b, slot: slot, id: id, gen: b.gens[slot]}
	t.tmp = fmt.Sprintf(".txn-%s-%d-%d.tmp", escapeName(id), t.gen, b.seq)
	err := b.locked(ctx, id, func() error {
		if err := b.checkGen(id, t.gen); err != nil {
			return err
		}
		f, err := b.fs.Create(b.path(t.tmp), vfs.WriteCategoryUnspecified)
		if err != nil {
			return err
		}
		t.f, t.w = f, bufio.NewWriterSize(f, 64<<10)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("txsink: file: begin %s: %w", id, err)
	}
	b.open[slot] = t
	return t, nil
}

// Close implements Backend: it closes the open temporary files and leaves
// them to the next Fence.
func (b *File) Close() error {
	var first error
	for i, t := range b.open {
		if t != nil && t.f != nil {
			if err := t.f.Close(); err != nil && first == nil {
				first = fmt.Errorf("txsink: file: close %s: %w", t.tmp, err)
			}
			t.f = nil
		}
		b.open[i] = nil
	}
	b.closed = true
	return first
}

func (b *File) path(name string) string { return b.fs.PathJoin(b.cfg.Dir, name) }

func (b *File) genName(id string) string { return ".gen-" + escapeName(id) }

// readGen returns id's generation (0 if it was never fenced).
func (b *File) readGen(id string) (uint64, error) {
	f, err := openRegular(b.fs, b.path(b.genName(id)))
	if errors.Is(err, iofs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read generation: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64))
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("read generation: %w", err)
	}
	g, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read generation: corrupt %s: %w", b.genName(id), err)
	}
	return g, nil
}

// writeGen replaces id's generation durably (temporary file, fsync,
// rename, directory fsync).
func (b *File) writeGen(id string, g uint64) error {
	name := b.path(b.genName(id))
	f, err := b.fs.Create(name+".tmp", vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("write generation: %w", err)
	}
	_, err = f.Write([]byte(strconv.FormatUint(g, 10) + "\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = b.fs.Rename(name+".tmp", name)
	}
	if err == nil {
		err = syncDir(b.fs, b.cfg.Dir)
	}
	if err != nil {
		return fmt.Errorf("write generation %d: %w", g, err)
	}
	return nil
}

// checkGen returns ErrFenced if id's generation is no longer gen.
func (b *File) checkGen(id string, gen uint64) error {
	g, err := b.readGen(id)
	if err != nil {
		return err
	}
	if g != gen {
		return fmt.Errorf("generation %d replaced by %d: %w", gen, g, ErrFenced)
	}
	return nil
}

// locked runs fn holding id's lock, waiting for it at most LockTimeout and
// until ctx is done.
func (b *File) locked(ctx context.Context, id string, fn func() error) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.LockTimeout)
	defer cancel()
	name := b.path(".lock-" + escapeName(id))
	delay := time.Millisecond
	for {
		l, err := b.fs.Lock(name)
		if err == nil {
			ferr := fn()
			if cerr := l.Close(); cerr != nil && ferr == nil {
				ferr = fmt.Errorf("unlock: %w", cerr)
			}
			return ferr
		}
		if !lockBusy(err) {
			return fmt.Errorf("lock %s: %w", name, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("lock %s held by another instance (%v): %w", name, err, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// lockBusy reports whether a Lock error means another holder.
func lockBusy(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "lock held by current process") // vfs.Default, same process
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// fileTxn is one transaction of File: a temporary file.
type fileTxn struct {
	b     *File
	slot  int
	id    string
	gen   uint64
	tmp   string // name in Dir
	f     vfs.File
	w     *bufio.Writer
	owner string
	epoch uint64
	// prepared: flushed, synced and closed; done: committed or aborted.
	prepared, done bool
}

type fileLine struct {
	Key   []byte `json:"key,omitempty"`
	Value []byte `json:"value"`
}

// Write implements Txn: it appends JSON lines through a bounded buffer.
func (t *fileTxn) Write(_ context.Context, recs []Record) error {
	if t.done || t.prepared || t.f == nil {
		return fmt.Errorf("txsink: file: write %s: transaction prepared, ended or closed", t.tmp)
	}
	for _, r := range recs {
		line, err := json.Marshal(fileLine{Key: r.Key, Value: r.Value})
		if err != nil {
			return fmt.Errorf("txsink: file: write %s: encode: %w", t.tmp, err)
		}
		line = append(line, '\n')
		if _, err := t.w.Write(line); err != nil {
			return fmt.Errorf("txsink: file: write %s: %w", t.tmp, err)
		}
	}
	return nil
}

// Prepare implements Txn: it checks the generation, flushes, fsyncs and
// closes the temporary file and fsyncs the directory. The marker (owner,
// epoch) is the name Commit publishes under.
func (t *fileTxn) Prepare(ctx context.Context, owner string, epoch uint64) error {
	if t.done || t.prepared || t.f == nil {
		return fmt.Errorf("txsink: file: prepare %s: transaction prepared, ended or closed", t.tmp)
	}
	if owner == "" || epoch == 0 {
		return fmt.Errorf("txsink: file: prepare %s: marker needs an owner and an epoch > 0", t.tmp)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("txsink: file: prepare %s: %w", t.tmp, err)
	}
	b := t.b
	if err := b.checkGen(t.id, t.gen); err != nil {
		return fmt.Errorf("txsink: file: prepare %s: %w", t.tmp, err)
	}
	err := t.w.Flush()
	if err == nil {
		err = t.f.Sync()
	}
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	t.f = nil
	if err == nil {
		err = syncDir(b.fs, b.cfg.Dir)
	}
	if err != nil {
		return fmt.Errorf("txsink: file: prepare %s epoch %d of %s: %w", t.tmp, epoch, owner, err)
	}
	t.prepared, t.owner, t.epoch = true, owner, epoch
	return nil
}

// Commit implements Txn: under the identity's lock it checks the
// generation, renames the temporary file to its part name and fsyncs the
// directory.
func (t *fileTxn) Commit(ctx context.Context) error {
	if t.done || !t.prepared {
		return fmt.Errorf("txsink: file: commit %s: transaction not prepared or ended", t.tmp)
	}
	b := t.b
	part := PartName(t.owner, t.epoch)
	err := b.locked(ctx, t.id, func() error {
		if err := b.checkGen(t.id, t.gen); err != nil {
			return err
		}
		if _, err := b.fs.Stat(b.path(part)); err == nil {
			return fmt.Errorf("%s is already published", part)
		} else if !errors.Is(err, iofs.ErrNotExist) {
			return err
		}
		if err := b.fs.Rename(b.path(t.tmp), b.path(part)); err != nil {
			return err
		}
		t.done = true // published; the sync below only decides durability
		return syncDir(b.fs, b.cfg.Dir)
	})
	if err != nil {
		return fmt.Errorf("txsink: file: commit %s as %s: %w", t.tmp, part, err)
	}
	return nil
}

// Abort implements Txn: it closes and removes the temporary file.
func (t *fileTxn) Abort(context.Context) error {
	if t.done {
		return fmt.Errorf("txsink: file: abort %s: transaction already ended", t.tmp)
	}
	t.done = true
	var err error
	if t.f != nil {
		err = t.f.Close()
		t.f = nil
	}
	if rerr := t.b.fs.Remove(t.b.path(t.tmp)); rerr != nil && !errors.Is(rerr, iofs.ErrNotExist) && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("txsink: file: abort %s: %w", t.tmp, err)
	}
	return nil
}

// FilePart is one published transaction of the File backend.
type FilePart struct {
	Name  string // file name in the directory
	Owner string
	Epoch uint64
}

// PartName is the file name under which the File backend publishes
// owner's epoch.
func PartName(owner string, epoch uint64) string {
	return fmt.Sprintf("part-%s-%020d.jsonl", escapeName(owner), epoch)
}

// FileParts lists the parts published in dir, ordered by owner then epoch.
func FileParts(fs vfs.FS, dir string) ([]FilePart, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("txsink: file: list %s: %w", dir, err)
	}
	var parts []FilePart
	for _, name := range names {
		rest, ok := strings.CutPrefix(name, "part-")
		if !ok {
			continue
		}
		rest, ok = strings.CutSuffix(rest, ".jsonl")
		i := strings.LastIndexByte(rest, '-')
		if !ok || i < 0 {
			continue
		}
		owner, err := url.PathUnescape(rest[:i])
		epoch, eerr := strconv.ParseUint(rest[i+1:], 10, 64)
		if err != nil || eerr != nil || PartName(owner, epoch) != name {
			continue // not ours
		}
		parts = append(parts, FilePart{Name: name, Owner: owner, Epoch: epoch})
	}
	slices.SortFunc(parts, func(a, b FilePart) int {
		return cmp.Or(cmp.Compare(a.Owner, b.Owner), cmp.Compare(a.Epoch, b.Epoch))
	})
	return parts, nil
}

// ReadFilePart returns the records of a published part.
func ReadFilePart(fs vfs.FS, dir string, p FilePart) ([]Record, error) {
	f, err := openRegular(fs, fs.PathJoin(dir, p.Name))
	if err != nil {
		return nil, fmt.Errorf("txsink: file: read %s: %w", p.Name, err)
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(f))
	var recs []Record
	for {
		var l fileLine
		if err := dec.Decode(&l); err == io.EOF {
			return recs, nil
		} else if err != nil {
			return nil, fmt.Errorf("txsink: file: read %s: record %d: %w", p.Name, len(recs), err)
		}
		recs = append(recs, Record{Key: l.Key, Value: l.Value})
	}
}

// openRegular opens path for reading if it is a regular file: a named pipe
// is refused rather than opened (the open would block until a writer
// comes).
func openRegular(fs vfs.FS, path string) (vfs.File, error) {
	st, err := fs.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (mode %s); remove it", path, st.Mode())
	}
	return fs.Open(path)
}

// escapeName keeps [A-Za-z0-9._-] and escapes every other byte as %XX,
// so names are single path elements that url.PathUnescape decodes.
func escapeName(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
			sb.WriteByte(c)
		default:
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}

// parseTemp parses .txn-<id>-<gen>-<seq>.tmp.
func parseTemp(name string) (id string, gen uint64, ok bool) {
	rest, ok1 := strings.CutPrefix(name, ".txn-")
	rest, ok2 := strings.CutSuffix(rest, ".tmp")
	if !ok1 || !ok2 {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return "", 0, false
	}
	j := strings.LastIndexByte(rest[:i], '-')
	if j < 0 {
		return "", 0, false
	}
	gen, err := strconv.ParseUint(rest[j+1:i], 10, 64)
	if err != nil {
		return "", 0, false
	}
	id, err = url.PathUnescape(rest[:j])
	if err != nil {
		return "", 0, false
	}
	return id, gen, true
}

var _ Backend = (*File)(nil)
