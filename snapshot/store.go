package snapshot

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/internal/privfs"
)

// Defaults for StoreOptions.
const (
	// DefaultMaxDeferredBytes bounds the writes a store holds in memory while a
	// snapshot captures its database.
	DefaultMaxDeferredBytes = 64 << 20
	// DefaultDeferredWaitTimeout is how long Batch.Commit waits for a capture to
	// finish when the deferred writes are at their bound.
	DefaultDeferredWaitTimeout = time.Minute
	// DefaultCaptureTimeout bounds the flush of the memtable during a capture.
	DefaultCaptureTimeout = 5 * time.Minute
	// DefaultCloseTimeout bounds how long Close waits for snapshots in flight.
	DefaultCloseTimeout = time.Minute
)

// Errors returned by the store.
var (
	// ErrCaptureInProgress is returned by Snapshot while the previous snapshot
	// of the same store is still capturing its database (flush and links). The
	// caller may decline the checkpoint or retry later.
	ErrCaptureInProgress = errors.New("snapshot: previous snapshot of this store is still capturing")
	// ErrDeferredFull is returned by Batch.Commit when the writes deferred during
	// a capture reached StoreOptions.MaxDeferredBytes and the capture did not
	// finish within StoreOptions.DeferredWaitTimeout.
	ErrDeferredFull = errors.New("snapshot: writes deferred during a snapshot reached their bound")
	// ErrClosed is returned by every method of a closed store.
	ErrClosed = errors.New("snapshot: store is closed")
)

// StoreOptions configures a Store. The zero value is usable.
type StoreOptions struct {
	// MaxDeferredBytes bounds the writes held in memory while a snapshot
	// captures the database (see doc.go, "Consistency"). Zero means
	// DefaultMaxDeferredBytes.
	MaxDeferredBytes int
	// DeferredWaitTimeout is how long Batch.Commit waits for the capture to
	// finish when MaxDeferredBytes is reached. Zero means
	// DefaultDeferredWaitTimeout.
	DeferredWaitTimeout time.Duration
	// CaptureTimeout bounds the memtable flush of a capture. Zero means
	// DefaultCaptureTimeout.
	CaptureTimeout time.Duration
	// CloseTimeout bounds how long Close waits for snapshots in flight. Zero
	// means DefaultCloseTimeout.
	CloseTimeout time.Duration
	// Tune, if set, is called on the Pebble options before the database is
	// opened (tests and benchmarks use it, e.g. to disable compactions). It
	// must not change FS.
	Tune func(*pebble.Options)
}

func (o StoreOptions) withDefaults() StoreOptions {
	if o.MaxDeferredBytes <= 0 {
		o.MaxDeferredBytes = DefaultMaxDeferredBytes
	}
	if o.DeferredWaitTimeout <= 0 {
		o.DeferredWaitTimeout = DefaultDeferredWaitTimeout
	}
	if o.CaptureTimeout <= 0 {
		o.CaptureTimeout = DefaultCaptureTimeout
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	return o
}

// Store is the live keyed state of one task: a Pebble database in its own
// directory. Writes are not synced: the checkpoint is the durability point.
//
// Get, NewBatch, Batch.Commit, NewIter and Snapshot may be called from any
// goroutine, but the engine calls them from the task's goroutine; the
// asynchronous part of a snapshot runs on its own goroutine.
type Store struct {
	fs   vfs.FS
	dir  string
	opts StoreOptions
	db   *pebble.DB

	mu struct {
		sync.Mutex
		closed bool
		// broken is a sticky error: the store could not apply the writes
		// deferred during a capture and must not be used any more.
		broken error
		// ov holds the writes made while a capture is in progress; nil when
		// writes go straight to the database.
		ov *overlay
		// ovDone is closed when ov has been applied to the database.
		ovDone chan struct{}
		// iters counts open iterators.
		iters int
		// pending holds the snapshots whose asynchronous part still runs.
		pending map[*PendingSnapshot]struct{}
		// sums caches the checksums of immutable files (sstables, blob files)
		// of this store's newest snapshot, by name, so that the next snapshot
		// only reads the files that are new.
		sums map[string]FileInfo
		// sumsSeq is the sequence number of the snapshot sums came from.
		sumsSeq uint64
		// seq numbers this store's snapshots.
		seq uint64
		// written is set once the store holds (or may hold) a key: a batch
		// was committed, or it was opened over a database with keys. A
		// snapshot of a store never written has no database part.
		written bool
	}
}

// overlay is an indexed batch holding the writes made during a capture.
// Reads go through it to the database, which is frozen during the capture.
type overlay struct {
	b       *pebble.Batch
	refs    int  // open iterators over b
	applied bool // b's contents are in the database; close b at refs == 0
}

// OpenStore opens (or creates) the live store in dir on fs. Everything the
// store and its snapshots create is private: directories 0700, files 0600
// (see internal/privfs), whatever the umask.
func OpenStore(fs vfs.FS, dir string, opts StoreOptions) (*Store, error) {
	if fs == nil {
		return nil, errors.New("snapshot: open store: nil vfs.FS")
	}
	if dir == "" {
		return nil, errors.New("snapshot: open store: empty directory")
	}
	fs = privfs.Wrap(fs)
	opts = opts.withDefaults()
	po := &pebble.Options{}
	if opts.Tune != nil {
		opts.Tune(po)
	}
	po.FS = scratchFS{fs} // the snapshots sync what they hold
	// No write-ahead log: the live directory is scratch, a job restores
	// from its checkpoints, and every snapshot flushes the memtable first.
	// Writes since the last snapshot are not kept across Close.
	po.DisableWAL = true
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("snapshot: open store %s: %w", dir, err)
	}
	s := &Store{fs: fs, dir: dir, opts: opts, db: db}
	s.mu.pending = make(map[*PendingSnapshot]struct{})
	if s.mu.written, err = hasKeys(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("snapshot: open store %s: %w", dir, err)
	}
	return s, nil
}

// hasKeys reports whether db may hold a key: it has an sstable, or its
// memtable holds a live key (deletions alone leave it logically empty, and
// an empty snapshot is then exact).
func hasKeys(db *pebble.DB) (bool, error) {
	if m := db.Metrics(); m.Total().TablesCount > 0 {
		return true, nil
	}
	it, err := db.NewIter(nil)
	if err != nil {
		return false, err
	}
	found := it.First()
	return found, it.Close()
}

// Dir returns the store's live directory.
func (s *Store) Dir() string { return s.dir }

// usable reports why the store cannot be used, or nil. s.mu must be held.
func (s *Store) usable() error {
	if s.mu.closed {
		return ErrClosed
	}
	return s.mu.broken
}

// Get returns a copy of the value stored under key, and whether it exists.
func (s *Store) Get(key []byte) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return nil, false, err
	}
	var (
		v      []byte
		closer interface{ Close() error }
		err    error
	)
	if s.mu.ov != nil {
		v, closer, err = s.mu.ov.b.Get(key)
	} else {
		v, closer, err = s.db.Get(key)
	}
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("snapshot: get %q from %s: %w", key, s.dir, err)
	}
	out := append([]byte(nil), v...)
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("snapshot: get %q from %s: %w", key, s.dir, err)
	}
	return out, true, nil
}

// Batch collects writes that Commit applies atomically.
type Batch struct {
	s *Store
	b *pebble.Batch
}

// NewBatch returns an empty batch. Close it when done.
func (s *Store) NewBatch() *Batch {
	return &Batch{s: s, b: s.db.NewBatch()}
}

// Set records key=value in the batch.
func (b *Batch) Set(key, value []byte) error {
	if err := b.b.Set(key, value, nil); err != nil {
		return fmt.Errorf("snapshot: batch set %q: %w", key, err)
	}
	return nil
}

// Delete records the deletion of key in the batch.
func (b *Batch) Delete(key []byte) error {
	if err := b.b.Delete(key, nil); err != nil {
		return fmt.Errorf("snapshot: batch delete %q: %w", key, err)
	}
	return nil
}

// DeleteRange records the deletion of every key in [start, end).
func (b *Batch) DeleteRange(start, end []byte) error {
	if err := b.b.DeleteRange(start, end, nil); err != nil {
		return fmt.Errorf("snapshot: batch delete range [%q, %q): %w", start, end, err)
	}
	return nil
}

// Len returns the size of the batch's representation in bytes.
func (b *Batch) Len() int { return b.b.Len() }

// Commit applies the batch to the store atomically, without syncing, and
// empties the batch for reuse. While a snapshot captures the database the
// writes are held in memory (bounded by StoreOptions.MaxDeferredBytes); at the
// bound Commit waits up to StoreOptions.DeferredWaitTimeout for the capture to
// finish and then fails with ErrDeferredFull.
func (b *Batch) Commit() error {
	s := b.s
	if b.b.Empty() {
		return nil
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	s.mu.Lock()
	for {
		if err := s.usable(); err != nil {
			s.mu.Unlock()
			return err
		}
		ov := s.mu.ov
		if ov == nil || ov.b.Len()+b.b.Len() <= s.opts.MaxDeferredBytes || ov.b.Empty() {
			break
		}
		done := s.mu.ovDone
		s.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(s.opts.DeferredWaitTimeout)
		}
		select {
		case <-done:
		case <-timer.C:
			return fmt.Errorf("snapshot: commit to %s: waited %s for the capture to finish: %w",
				s.dir, s.opts.DeferredWaitTimeout, ErrDeferredFull)
		}
		s.mu.Lock()
	}
	var err error
	if s.mu.ov != nil {
		err = s.mu.ov.b.Apply(b.b, nil)
	} else {
		err = s.db.Apply(b.b, pebble.NoSync)
	}
	s.mu.written = true
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("snapshot: commit to %s: %w", s.dir, err)
	}
	b.b.Reset()
	return nil
}

// Close releases the batch without committing what it still holds.
func (b *Batch) Close() error {
	if err := b.b.Close(); err != nil {
		return fmt.Errorf("snapshot: close batch: %w", err)
	}
	return nil
}

// Iter iterates over the keys with a prefix, in key order. It sees the store
// as of its creation.
type Iter struct {
	s      *Store
	it     *pebble.Iterator
	ov     *overlay
	closed bool
}

// NewIter returns an iterator over the keys that start with prefix (all keys
// for an empty prefix), positioned before the first key: call First or SeekGE.
func (s *Store) NewIter(prefix []byte) (*Iter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return nil, err
	}
	o := &pebble.IterOptions{}
	if len(prefix) > 0 {
		o.LowerBound = append([]byte(nil), prefix...)
		o.UpperBound = prefixEnd(prefix)
	}
	var (
		it  *pebble.Iterator
		err error
	)
	ov := s.mu.ov
	if ov != nil {
		it, err = ov.b.NewIter(o)
	} else {
		it, err = s.db.NewIter(o)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: new iterator on %s: %w", s.dir, err)
	}
	if ov != nil {
		ov.refs++
	}
	s.mu.iters++
	return &Iter{s: s, it: it, ov: ov}, nil
}

// prefixEnd returns the smallest key greater than every key with prefix p, or
// nil if there is none.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// First moves to the first key and reports whether there is one.
func (it *Iter) First() bool { return it.it.First() }

// SeekGE moves to the first key ≥ key and reports whether there is one.
func (it *Iter) SeekGE(key []byte) bool { return it.it.SeekGE(key) }

// Next moves to the next key and reports whether there is one.
func (it *Iter) Next() bool { return it.it.Next() }

// Valid reports whether the iterator is positioned at a key.
func (it *Iter) Valid() bool { return it.it.Valid() }

// Key returns the current key, valid until the iterator moves.
func (it *Iter) Key() []byte { return it.it.Key() }

// Value returns the current value, valid until the iterator moves.
func (it *Iter) Value() ([]byte, error) {
	v, err := it.it.ValueAndErr()
	if err != nil {
		return nil, fmt.Errorf("snapshot: iterator value at %q: %w", it.it.Key(), err)
	}
	return v, nil
}

// Error returns the iterator's accumulated error.
func (it *Iter) Error() error {
	if err := it.it.Error(); err != nil {
		return fmt.Errorf("snapshot: iterator: %w", err)
	}
	return nil
}

// Close releases the iterator.
func (it *Iter) Close() error {
	if it.closed {
		return nil
	}
	it.closed = true
	err := it.it.Close()
	s := it.s
	s.mu.Lock()
	s.mu.iters--
	if ov := it.ov; ov != nil {
		ov.refs--
		if ov.applied && ov.refs == 0 {
			err = errors.Join(err, ov.b.Close())
		}
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("snapshot: close iterator: %w", err)
	}
	return nil
}

// Close waits (up to StoreOptions.CloseTimeout) for snapshots in flight, then
// closes the database. Every iterator must be closed first.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.mu.iters > 0 {
		n := s.mu.iters
		s.mu.Unlock()
		return fmt.Errorf("snapshot: close store %s: %d iterators still open", s.dir, n)
	}
	// From here on no new snapshot starts; the asynchronous parts in flight
	// do not look at closed.
	s.mu.closed = true
	pending := make([]*PendingSnapshot, 0, len(s.mu.pending))
	for p := range s.mu.pending {
		pending = append(pending, p)
	}
	s.mu.Unlock()

	timer := time.NewTimer(s.opts.CloseTimeout)
	defer timer.Stop()
	for _, p := range pending {
		select {
		case <-p.done:
		case <-timer.C:
			return fmt.Errorf("snapshot: close store %s: a snapshot is still in flight after %s",
				s.dir, s.opts.CloseTimeout)
		}
	}

	if err := s.db.Close(); err != nil {
		return fmt.Errorf("snapshot: close store %s: %w", s.dir, err)
	}
	return nil
}
