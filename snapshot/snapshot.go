package snapshot

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/internal/privfs"
)

// Names inside a task's checkpoint directory.
const (
	// dbDirName holds the Pebble checkpoint of the task's store.
	dbDirName = "db"
	// opStateName is the task's operator state, a framed, checksummed file.
	opStateName = "opstate"
)

// MaxOpStateBytes bounds the operator state of one task. Operators whose
// state can grow large bound it below this with a limit of their own that
// names their setting (weir's exactly-once sink: sink.max_pending_bytes,
// at most MaxOpStateBytes - 1 MiB), so that limit trips first.
const MaxOpStateBytes = 256 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FileInfo names one file of a task's snapshot.
type FileInfo struct {
	// Name is the file's path relative to the task's checkpoint directory,
	// with "/" as separator: "opstate", "db/000007.sst", "db/MANIFEST-000001".
	Name string `json:"name"`
	// Size is the file's length in bytes.
	Size int64 `json:"size"`
	// CRC32C is the Castagnoli CRC of the whole file.
	CRC32C uint32 `json:"crc32c"`
}

// Handle describes the snapshot of one task: every file it consists of, with
// size and checksum. It is what a task acks to the coordinator, and what the
// checkpoint's metadata records per task. It marshals to JSON.
type Handle struct {
	// Files lists the files of the snapshot, sorted by name.
	Files []FileInfo `json:"files"`
	// NewBytes is the total size of the files this snapshot added compared
	// with the store's previous one (new sstables, MANIFEST, WAL, OPTIONS,
	// operator state): the bytes this checkpoint had to write or read to
	// checksum. Informational.
	NewBytes int64 `json:"newBytes"`
}

// Size returns the total size of the snapshot's files.
func (h Handle) Size() int64 {
	var n int64
	for _, f := range h.Files {
		n += f.Size
	}
	return n
}

// PendingSnapshot is a snapshot whose asynchronous part may still run.
type PendingSnapshot struct {
	dest     string
	captured chan struct{}
	done     chan struct{}
	h        Handle
	err      error
}

// Captured is closed when the database capture (flush and links) has finished
// and writes go to the database again.
func (p *PendingSnapshot) Captured() <-chan struct{} { return p.captured }

// Done is closed when the snapshot has finished, successfully or not.
func (p *PendingSnapshot) Done() <-chan struct{} { return p.done }

// Wait waits for the snapshot to finish, or for ctx to end, and returns its
// handle. The caller gives ctx a deadline.
func (p *PendingSnapshot) Wait(ctx context.Context) (Handle, error) {
	select {
	case <-p.done:
		return p.h, p.err
	case <-ctx.Done():
		return Handle{}, fmt.Errorf("snapshot: waiting for snapshot to %s: %w", p.dest, ctx.Err())
	}
}

// Snapshot takes a snapshot of the store into dest (the task's directory of
// the checkpoint, see TaskDir), together with the operator state opState.
//
// The synchronous part only marks the capture point: from now on, writes are
// held in memory (bounded) and the database is frozen. The asynchronous part
// flushes the memtable, hard-links the sstables and copies the MANIFEST into
// dest/db (pebble's Checkpoint), applies the held writes, writes the operator
// state, and checksums the files that are new since the store's previous
// snapshot. The snapshot holds exactly the state at the capture point: writes
// made after Snapshot returns are not in it. See doc.go, "Consistency".
//
// dest must not exist. opState is copied.
func (s *Store) Snapshot(dest string, opState []byte) (*PendingSnapshot, error) {
	if dest == "" {
		return nil, errors.New("snapshot: snapshot to an empty directory name")
	}
	if len(opState) > MaxOpStateBytes {
		return nil, fmt.Errorf("snapshot: snapshot to %s: operator state is %d bytes, more than the limit %d",
			dest, len(opState), MaxOpStateBytes)
	}
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if s.mu.ov != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("snapshot: snapshot to %s: %w", dest, ErrCaptureInProgress)
	}
	ov := &overlay{b: s.db.NewIndexedBatch()}
	s.mu.ov = ov
	s.mu.ovDone = make(chan struct{})
	s.mu.seq++
	seq := s.mu.seq
	sums := s.mu.sums // replaced, never mutated: safe to share
	// A store never written holds no key at the capture point: its
	// snapshot is the operator state alone (Restore opens an empty store
	// for it), without the flush, links and syncs of a Pebble checkpoint.
	empty := !s.mu.written
	p := &PendingSnapshot{
		dest:     dest,
		captured: make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.mu.pending[p] = struct{}{}
	s.mu.Unlock()

	go s.runSnapshot(p, ov, seq, sums, slices.Clone(opState), empty)
	return p, nil
}

// runSnapshot is the asynchronous part of a snapshot.
func (s *Store) runSnapshot(p *PendingSnapshot, ov *overlay, seq uint64, sums map[string]FileInfo, opState []byte, empty bool) {
	defer func() {
		s.mu.Lock()
		delete(s.mu.pending, p)
		s.mu.Unlock()
		close(p.done)
	}()

	var existed bool
	capErr := func() error {
		if _, err := s.fs.Stat(p.dest); err == nil {
			existed = true
			return fmt.Errorf("%s already exists", p.dest)
		} else if !isNotExist(err) {
			return err
		}
		if err := makeTaskDir(s.fs, p.dest); err != nil {
			return err
		}
		if empty {
			return nil
		}
		return s.capture(p.dest)
	}()
	relErr := s.release(ov)
	close(p.captured)

	err := errors.Join(capErr, relErr)
	var h Handle
	if err == nil {
		h, err = s.finish(p.dest, opState, sums, empty)
	}
	if err != nil {
		if !existed {
			// Best effort: free the space of what was written. Whatever stays
			// behind has no metadata, is never taken for complete, and
			// Retain deletes it.
			_ = s.fs.RemoveAll(p.dest)
		}
		p.err = fmt.Errorf("snapshot: snapshot of %s to %s: %w", s.dir, p.dest, err)
		return
	}

	s.mu.Lock()
	if seq > s.mu.sumsSeq {
		s.mu.sums = immutableSums(h)
		s.mu.sumsSeq = seq
	}
	s.mu.Unlock()
	p.h = h
}

// makeTaskDir creates dest, a task's directory root/chk-<N>/<task>. While
// root exists nothing is synced here: finish syncs dest once its files are
// in, and WriteMetadata syncs root and the checkpoint's directory before the
// checkpoint counts as complete (Pebble's checkpoint would sync every
// directory above dest/db it creates, one fsync each). A missing root is
// created and synced with its parents.
func makeTaskDir(fs vfs.FS, dest string) error {
	if _, err := fs.Stat(fs.PathDir(fs.PathDir(dest))); err != nil {
		if !isNotExist(err) {
			return fmt.Errorf("stat %s: %w", fs.PathDir(fs.PathDir(dest)), err)
		}
		return mkdirAllSync(fs, dest)
	}
	if err := fs.MkdirAll(dest, privfs.DirMode); err != nil {
		return fmt.Errorf("create directory %s: %w", dest, err)
	}
	return nil
}

// capture flushes the memtable and checkpoints the (frozen) database into
// dest/db.
func (s *Store) capture(dest string) error {
	flushed, err := s.db.AsyncFlush()
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	timer := time.NewTimer(s.opts.CaptureTimeout)
	defer timer.Stop()
	select {
	case <-flushed:
	case <-timer.C:
		return fmt.Errorf("flush did not finish within %s", s.opts.CaptureTimeout)
	}
	if err := s.db.Checkpoint(s.fs.PathJoin(dest, dbDirName)); err != nil {
		return fmt.Errorf("pebble checkpoint: %w", err)
	}
	return nil
}

// release applies the writes held during the capture to the database and
// lets writes go to the database again.
func (s *Store) release(ov *overlay) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if !ov.b.Empty() {
		// Copy: the overlay stays readable by the iterators still open on it.
		nb := s.db.NewBatch()
		err = nb.Apply(ov.b, nil)
		if err == nil {
			err = s.db.Apply(nb, pebble.NoSync)
		}
		err = errors.Join(err, nb.Close())
	}
	if err != nil {
		err = fmt.Errorf("applying the writes held during the capture: %w", err)
		s.mu.broken = fmt.Errorf("snapshot: store %s is unusable: %w", s.dir, err)
	}
	s.mu.ov = nil
	ov.applied = true
	if ov.refs == 0 {
		err = errors.Join(err, ov.b.Close())
	}
	close(s.mu.ovDone)
	return err
}

// finish writes the operator state, checksums the files (of the database
// part too, unless empty), and syncs them and dest: the files Pebble wrote
// were not synced (scratchFS), so this is what makes the snapshot durable.
func (s *Store) finish(dest string, opState []byte, sums map[string]FileInfo, empty bool) (Handle, error) {
	fs := s.fs
	frame := encodeFrame(frameOpState, opState)
	// Checksum before writing: a vfs.File may scribble over the buffer it was
	// given (pebble's MemFS does with invariants on).
	h := Handle{Files: []FileInfo{{
		Name:   opStateName,
		Size:   int64(len(frame)),
		CRC32C: crc32c(frame),
	}}}
	h.NewBytes = int64(len(frame))
	opPath := fs.PathJoin(dest, opStateName)
	if err := writeFile(fs, opPath, frame, false); err != nil {
		return Handle{}, err
	}
	files, dirs := []string{opPath}, []string{dest}
	var names []string
	dbDir := fs.PathJoin(dest, dbDirName)
	if !empty {
		var err error
		if names, err = fs.List(dbDir); err != nil {
			return Handle{}, fmt.Errorf("list %s: %w", dbDir, err)
		}
		slices.Sort(names)
		for _, name := range names {
			files = append(files, fs.PathJoin(dbDir, name))
		}
		dirs = append(dirs, dbDir)
	}
	// The syncs run while the new files are checksummed.
	synced := make(chan error, 1)
	go func() { synced <- syncSnapshot(fs, files, dirs) }()
	h, err := s.checksumDB(h, dbDir, names, sums)
	if serr := <-synced; serr != nil {
		return Handle{}, serr
	}
	if err != nil {
		return Handle{}, err
	}
	slices.SortFunc(h.Files, func(a, b FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return h, nil
}

// checksumDB adds the files names of dbDir to h, with the checksums of the
// immutable ones known from sums and the others read.
func (s *Store) checksumDB(h Handle, dbDir string, names []string, sums map[string]FileInfo) (Handle, error) {
	fs := s.fs
	for _, name := range names {
		path := fs.PathJoin(dbDir, name)
		st, err := fs.Stat(path)
		if err != nil {
			return Handle{}, fmt.Errorf("stat %s: %w", path, err)
		}
		if st.IsDir() {
			return Handle{}, fmt.Errorf("unexpected directory %s in a pebble checkpoint", path)
		}
		fi := FileInfo{Name: dbDirName + "/" + name, Size: st.Size()}
		if old, ok := sums[fi.Name]; ok && old.Size == fi.Size && immutableFile(name) {
			fi.CRC32C = old.CRC32C
		} else {
			if fi.CRC32C, err = checksumFile(context.Background(), fs, path, fi.Size); err != nil {
				return Handle{}, err
			}
			h.NewBytes += fi.Size
		}
		h.Files = append(h.Files, fi)
	}
	return h, nil
}

// immutableFile reports whether a file of a pebble directory never changes
// once written under its name (sstables and blob files; file numbers are not
// reused within a store's lineage).
func immutableFile(name string) bool {
	return strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob")
}

// immutableSums returns the checksums of h's immutable files, by name.
func immutableSums(h Handle) map[string]FileInfo {
	m := make(map[string]FileInfo, len(h.Files))
	for _, f := range h.Files {
		if strings.HasPrefix(f.Name, dbDirName+"/") && immutableFile(f.Name) {
			m[f.Name] = f
		}
	}
	return m
}

// checksumFile returns the CRC32C of the file at path, which must be a
// regular file of size bytes. It stops when ctx ends.
func checksumFile(ctx context.Context, fs vfs.FS, path string, size int64) (uint32, error) {
	if _, err := statRegular(fs, path); err != nil {
		return 0, err
	}
	f, err := fs.Open(path, vfs.SequentialReadsOption)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	buf := make([]byte, 256<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
		k, err := f.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if n != size {
		return 0, fmt.Errorf("%s: read %d bytes, expected %d (truncated or changed while reading)", path, n, size)
	}
	return h.Sum32(), nil
}

// writeFileSync creates path with data and syncs it.
func writeFileSync(fs vfs.FS, path string, data []byte) error {
	return writeFile(fs, path, data, true)
}

// writeFile creates the file at path with data, and syncs it if sync.
func writeFile(fs vfs.FS, path string, data []byte, sync bool) error {
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return fmt.Errorf("sync %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// syncDir fsyncs a directory, making the entries created in it durable.
func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	return syncClose(d, err, "directory "+dir)
}

// syncFile fsyncs the regular file at path.
func syncFile(fs vfs.FS, path string) error {
	f, err := fs.Open(path)
	return syncClose(f, err, path)
}

// syncClose syncs and closes f, just opened with err; what names it in
// errors.
func syncClose(f vfs.File, err error, what string) error {
	if err != nil {
		return fmt.Errorf("open %s: %w", what, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", what, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", what, err)
	}
	return nil
}

// mkdirAllSync creates dir and its missing parents, and syncs every parent up
// to and including the closest one that already existed, so that the new
// entries are durable.
func mkdirAllSync(fs vfs.FS, dir string) error {
	var parents []string
	for p := fs.PathDir(dir); ; p = fs.PathDir(p) {
		parents = append(parents, p)
		if fs.PathDir(p) == p {
			break
		}
		if _, err := fs.Stat(p); err == nil {
			break
		} else if !isNotExist(err) {
			return fmt.Errorf("stat %s: %w", p, err)
		}
	}
	if err := fs.MkdirAll(dir, privfs.DirMode); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	for _, p := range parents {
		if err := syncDir(fs, p); err != nil {
			return err
		}
	}
	return nil
}
