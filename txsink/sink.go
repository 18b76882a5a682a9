package txsink

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Record is one output record. The sink keeps Key and Value until the
// record's epoch is committed; the caller must not modify them after Write.
type Record struct {
	Key, Value []byte
	// Topic, when set, sends the record to this topic instead of the
	// sink's (a dead-letter topic), in the same transaction; Headers are
	// its Kafka headers. Only a sink with Config.Routed takes them.
	Topic   string
	Headers []Header
}

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// routed reports whether r carries a topic or headers.
func (r Record) routed() bool { return r.Topic != "" || len(r.Headers) > 0 }

func (r Record) size() int { return len(r.Key) + len(r.Value) }

// routeBytes is what r's topic and headers take in the routed encoding
// (Config.Routed).
func (r Record) routeBytes() int {
	n := uvarintLen(uint64(len(r.Topic))) + len(r.Topic) + uvarintLen(uint64(len(r.Headers)))
	for _, h := range r.Headers {
		n += uvarintLen(uint64(len(h.Key))) + len(h.Key) + uvarintLen(nullableLen(h.Value)) + len(h.Value)
	}
	return n
}

// stateBytes is what r takes in the encoded sink state: its key and value
// and their lengths.
func (r Record) stateBytes() int64 {
	return int64(uvarintLen(nullableLen(r.Key)) + len(r.Key) + uvarintLen(nullableLen(r.Value)) + len(r.Value))
}

// epochStateBytes bounds what a pending epoch of owner takes in the encoded
// sink state besides its records: its epoch, owner and record count.
func epochStateBytes(owner string) int64 { return int64(3*binary.MaxVarintLen64 + len(owner)) }

// DefaultMaxPendingBytes is Config.MaxPendingBytes when it is not set.
const DefaultMaxPendingBytes = 128 << 20

// StateOverhead bounds what the encoded sink state of a subtask with the
// transactional ids ids takes besides its pending epochs (whose records
// and headers MaxPendingBytes counts): so the state PreCommit returns is at
// most MaxPendingBytes + StateOverhead(ids) bytes.
func StateOverhead(ids []string) int64 {
	n := int64(len(stateMagic) + 2*binary.MaxVarintLen64 + 4)
	for _, id := range ids {
		n += int64(binary.MaxVarintLen64 + len(id))
	}
	return n
}

// Backend is a transactional system as one sink subtask sees it. Kafka is
// one (NewKafka); MemSystem is an in-memory one for tests. The Sink calls a
// Backend from one goroutine at a time.
type Backend interface {
	// IDs returns this subtask's transactional identities, one per slot of
	// its pool; slot i is IDs()[i]. They are stable across restarts.
	IDs() []string
	// Fence makes every earlier holder of any of ids unable to commit and
	// aborts its open transaction; a commit already in flight is waited
	// for. Afterwards the slots of this subtask are ready for Begin.
	Fence(ctx context.Context, ids []string) error
	// Committed returns, for each owner, the highest epoch whose progress
	// marker is committed (0 for none). It must see every commit that
	// completed before the call.
	Committed(ctx context.Context, owners []string) (map[string]uint64, error)
	// Begin opens a transaction on slot.
	Begin(ctx context.Context, slot int) (Txn, error)
	// Close releases everything; open transactions are left to be aborted
	// by the next Fence or the system's timeout.
	Close() error
}

// Txn is one open transaction of a Backend.
type Txn interface {
	// Write adds records. It should not wait for the system.
	Write(ctx context.Context, recs []Record) error
	// Prepare writes the progress marker (owner, epoch) and waits until
	// every record and the marker are durable in the open transaction.
	Prepare(ctx context.Context, owner string, epoch uint64) error
	// Commit commits the prepared transaction: records and marker become
	// visible together.
	Commit(ctx context.Context) error
	// Abort aborts the transaction.
	Abort(ctx context.Context) error
}

// Resumer is implemented by backends whose prepared transactions survive
// the process (PostgreSQL's PREPARE TRANSACTION): Recover finishes such a
// transaction instead of replaying its epoch. Backends without it (Kafka,
// File) are replayed as before.
type Resumer interface {
	// Resume commits the prepared transaction of owner's epoch if one
	// exists and reports whether it did; false means Recover replays the
	// epoch.
	Resume(ctx context.Context, owner string, epoch uint64) (bool, error)
	// Discard rolls back every prepared transaction left of owners and of
	// the owners of the fenced ids. Recover calls it last: what is left
	// belongs to epochs after the restored checkpoint, which the job
	// produces again.
	Discard(ctx context.Context, owners []string) error
}

// Config configures a Sink.
type Config struct {
	// Owner names this sink subtask in progress markers, e.g.
	// "job/sink/3". It must be stable across restarts and unique among all
	// writers of the progress topic. Required.
	Owner string
	// FenceIDs are transactional identities to fence in Recover besides
	// the backend's own and those named by restored states, e.g. those of
	// subtasks of a larger parallelism used since the checkpoint.
	FenceIDs []string
	// MaxPendingBytes bounds the records held for the open epoch and the
	// pre-committed ones, counted as the sink state encodes them (keys,
	// values, their lengths and each epoch's header), so the state that
	// PreCommit returns is at most MaxPendingBytes + StateOverhead(IDs). A
	// Write over it fails the sink with a *PendingFullError. Default
	// DefaultMaxPendingBytes.
	MaxPendingBytes int64
	// MaxStateBytes, when positive, is the most the encoded state may take
	// (the state backend's cap on a task's operator state): New refuses a
	// MaxPendingBytes whose state could be larger, so that MaxPendingBytes
	// is always the limit that trips first.
	MaxStateBytes int64
	// OpTimeout bounds each call to the backend. Default 1 minute.
	OpTimeout time.Duration
	// SpillDir, when set, keeps each epoch's records in a file in this
	// directory (created if missing) instead of on the heap and in the
	// state: the state names the file, which is synced at PreCommit and
	// deleted once the epoch is committed (see SpillRef). Files of Owner
	// found there by Recover are deleted once it has replayed what needs
	// replaying. Empty: the records stay on the heap and go into the state.
	SpillDir string
	// SpillFS is the file system of SpillDir; default vfs.Default.
	SpillFS vfs.FS
	// Routed lets records carry a Topic and Headers (Record), for a
	// dead-letter topic written in the epochs' transactions: the state and
	// the spill files then encode them (state magic WTX3; states without
	// them still restore). Without it such a record fails Write.
	Routed bool
	// CheckCommitted makes Recover refuse to start (a
	// *ReplayCommittedError) when the progress shows an epoch newer than
	// Restored committed by Owner or by an owner of the restored states:
	// the records after checkpoint Restored are committed already and the
	// job would write them again (crash-matrix row 9).
	CheckCommitted bool
	// Restored is the checkpoint whose states Recover is given (epochs
	// <= Restored are in it); 0 for none, a fresh start.
	Restored uint64
}

// progressNamer is a Backend that can say where its progress markers are
// (for errors).
type progressNamer interface{ ProgressName() string }

// epochBuf is an epoch's records and, once it has a slot, its transaction.
type epochBuf struct {
	epoch uint64 // 0 while open
	// recs are the records not written to txn yet; all of them without a
	// spill file.
	recs    []Record
	count   int // records written to the epoch
	bytes   int64
	txn     Txn // nil until the epoch has a slot
	slot    int
	written int // records of recs handed to txn
	// spill is the epoch's spill file (Config.SpillDir), ref what it held
	// when PreCommit sealed it.
	spill *spillWriter
	ref   *SpillRef
}

// Sink is the two-phase-commit protocol for one sink subtask, over a
// Backend. Its methods must be called from one goroutine (the sink actor).
//
// An epoch is the records between barrier N-1 and barrier N. Records are
// written to the epoch's transaction as they come when a slot of the pool
// is free, else they are buffered and written as soon as a commit frees a
// slot; so a commit never stalls the data path and the pool bounds the
// transactions in flight.
type Sink struct {
	b      Backend
	cfg    Config
	ids    []string
	free   []int // free slots, lowest first
	cur    *epochBuf
	pend   []*epochBuf // pre-committed, oldest first
	last   uint64      // highest epoch pre-committed or recovered
	bytes  int64
	ready  bool
	err    error // first failure; sticky
	closed bool
	seq    uint64 // of the newest spill file
	counts Counts
	// recycled are spill files of committed epochs kept for reuse
	// (spillRecycled at most), newest last.
	recycled []string
}

// Counts are a Sink's transactions so far.
type Counts struct {
	// Committed counts the transactions committed, replayed ones included.
	Committed int64
	// Aborted counts the open or pre-committed transactions aborted by
	// Abort or Close (their epochs are replayed by a later Recover).
	Aborted int64
	// Replayed counts the epochs written again in a fresh transaction
	// and committed: by Recover (their transaction was lost with a
	// restart), or by Commit (the epoch never had a slot).
	Replayed int64
	// Resumed counts the epochs whose prepared transaction survived a
	// restart and Recover committed (a Resumer backend), not replayed.
	Resumed int64
}

// Counts returns the transactions so far. Like every method, it must be
// called from the Sink's goroutine.
func (s *Sink) Counts() Counts { return s.counts }

// New returns a sink over b. Recover must run before anything else.
func New(b Backend, cfg Config) (*Sink, error) {
	if cfg.Owner == "" {
		return nil, fmt.Errorf("%w: Owner is required", ErrConfig)
	}
	if cfg.MaxPendingBytes <= 0 {
		cfg.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = time.Minute
	}
	ids := b.IDs()
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: backend has no transactional ids", ErrConfig)
	}
	if cfg.MaxStateBytes > 0 && cfg.MaxPendingBytes > cfg.MaxStateBytes-StateOverhead(ids) {
		return nil, fmt.Errorf("%w: MaxPendingBytes %d: the state could reach %d bytes, over the state limit of %d; lower it to at most %d",
			ErrConfig, cfg.MaxPendingBytes, cfg.MaxPendingBytes+StateOverhead(ids), cfg.MaxStateBytes, cfg.MaxStateBytes-StateOverhead(ids))
	}
	if cfg.SpillDir != "" {
		if cfg.SpillFS == nil {
			cfg.SpillFS = vfs.Default
		}
		if err := cfg.SpillFS.MkdirAll(cfg.SpillDir, 0o700); err != nil {
			return nil, fmt.Errorf("%w: spill directory: %w", ErrConfig, err)
		}
	}
	s := &Sink{b: b, cfg: cfg, ids: ids, cur: &epochBuf{}}
	for i := range ids {
		s.free = append(s.free, i)
	}
	return s, nil
}

// Recover runs once, before any Write: it fences every transactional
// identity this subtask or the writers of states may have used (aborting
// their open transactions), reads which epochs are committed, and replays
// and commits every pending epoch of states that is not, in epoch order.
// states are the sink states restored for this subtask (none on a fresh
// start; on a parallelism change, each old subtask's state must be given
// to exactly one new subtask). After an error the caller restarts and
// calls Recover again on a new Sink; nothing is committed twice.
func (s *Sink) Recover(ctx context.Context, states ...[]byte) error {
	if s.ready || s.err != nil || s.closed {
		return fmt.Errorf("txsink: recover %s: %w", s.cfg.Owner, ErrNotRecovered)
	}
	fence := slices.Clone(s.ids)
	fence = append(fence, s.cfg.FenceIDs...)
	type key struct {
		epoch uint64
		owner string
	}
	seen := map[key]bool{}
	var pending []PendingEpoch
	owners := map[string]bool{}
	for i, raw := range states {
		st, err := DecodeState(raw)
		if err != nil {
			return s.fail(fmt.Errorf("txsink: recover %s: state %d: %w", s.cfg.Owner, i, err))
		}
		fence = append(fence, st.IDs...)
		for _, p := range st.Pending {
			k := key{p.Epoch, p.Owner}
			if seen[k] {
				continue
			}
			seen[k] = true
			owners[p.Owner] = true
			pending = append(pending, p)
		}
	}
	slices.Sort(fence)
	fence = slices.Compact(fence)
	if err := s.call(ctx, func(ctx context.Context) error { return s.b.Fence(ctx, fence) }); err != nil {
		return s.fail(fmt.Errorf("txsink: recover %s: fence %d transactional ids: %w", s.cfg.Owner, len(fence), err))
	}
	var committed map[string]uint64
	if s.cfg.CheckCommitted {
		owners[s.cfg.Owner] = true
	}
	if len(pending) > 0 || s.cfg.CheckCommitted {
		names := make([]string, 0, len(owners))
		for o := range owners {
			names = append(names, o)
		}
		slices.Sort(names)
		err := s.call(ctx, func(ctx context.Context) (err error) {
			committed, err = s.b.Committed(ctx, names)
			return err
		})
		if err != nil {
			return s.fail(fmt.Errorf("txsink: recover %s: read progress: %w", s.cfg.Owner, err))
		}
	}
	if s.cfg.CheckCommitted {
		if err := s.checkCommitted(committed); err != nil {
			return s.fail(err)
		}
	}
	slices.SortFunc(pending, func(a, b PendingEpoch) int {
		if a.Epoch != b.Epoch {
			if a.Epoch < b.Epoch {
				return -1
			}
			return 1
		}
		switch {
		case a.Owner < b.Owner:
			return -1
		case a.Owner > b.Owner:
			return 1
		}
		return 0
	})
	for _, p := range pending {
		s.last = max(s.last, p.Epoch)
		if committed[p.Owner] >= p.Epoch {
			continue
		}
		if r, ok := s.b.(Resumer); ok {
			var resumed bool
			err := s.call(ctx, func(ctx context.Context) (err error) {
				resumed, err = r.Resume(ctx, p.Owner, p.Epoch)
				return err
			})
			if err != nil {
				return s.fail(fmt.Errorf("txsink: recover %s: resume epoch %d of %s: %w", s.cfg.Owner, p.Epoch, p.Owner, err))
			}
			if resumed {
				s.counts.Resumed++
				continue
			}
		}
		recs := p.Records
		if p.Spill != nil {
			if s.cfg.SpillDir == "" {
				return s.fail(fmt.Errorf("txsink: recover %s: epoch %d of %s is in spill file %s, but the sink has no spill directory (Config.SpillDir)", s.cfg.Owner, p.Epoch, p.Owner, p.Spill.Name))
			}
			var err error
			if recs, err = readSpill(s.cfg.SpillFS, s.cfg.SpillDir, *p.Spill); err != nil {
				return s.fail(fmt.Errorf("txsink: recover %s: epoch %d of %s: %w", s.cfg.Owner, p.Epoch, p.Owner, err))
			}
		}
		if len(recs) == 0 {
			continue
		}
		e := &epochBuf{epoch: p.Epoch, recs: recs, count: len(recs)}
		if err := s.replay(ctx, e, p.Owner); err != nil {
			return s.fail(fmt.Errorf("txsink: recover %s: replay epoch %d of %s: %w", s.cfg.Owner, p.Epoch, p.Owner, err))
		}
	}
	if r, ok := s.b.(Resumer); ok {
		names := []string{s.cfg.Owner}
		for o := range owners {
			names = append(names, o)
		}
		slices.Sort(names)
		names = slices.Compact(names)
		if err := s.call(ctx, func(ctx context.Context) error { return r.Discard(ctx, names) }); err != nil {
			return s.fail(fmt.Errorf("txsink: recover %s: discard prepared transactions of epochs after the checkpoint: %w", s.cfg.Owner, err))
		}
	}
	// Every pending epoch is committed now: no spill file of theirs, nor
	// any of this owner's, is needed any more.
	if s.cfg.SpillDir != "" {
		for _, p := range pending {
			if p.Spill != nil {
				removeSpill(s.cfg.SpillFS, s.cfg.SpillDir, p.Spill.Name)
			}
		}
		s.removeOwnSpills()
	}
	s.ready = true
	return nil
}

// checkCommitted refuses a restore of checkpoint Restored when an owner
// committed a newer epoch.
func (s *Sink) checkCommitted(committed map[string]uint64) error {
	owners := make([]string, 0, len(committed))
	for o := range committed {
		owners = append(owners, o)
	}
	slices.Sort(owners)
	for _, o := range owners {
		if e := committed[o]; e > s.cfg.Restored {
			re := &ReplayCommittedError{Owner: o, Checkpoint: s.cfg.Restored, Committed: e}
			if n, ok := s.b.(progressNamer); ok {
				re.Progress = n.ProgressName()
			}
			return re
		}
	}
	return nil
}

// newSpill makes the spill file name: a recycled file renamed, or a new
// one.
func (s *Sink) newSpill(name string) (*spillWriter, error) {
	for len(s.recycled) > 0 {
		old := s.recycled[len(s.recycled)-1]
		s.recycled = s.recycled[:len(s.recycled)-1]
		w, err := reuseSpill(s.cfg.SpillFS, s.cfg.SpillDir, old, name, s.cfg.Routed)
		if err == nil {
			return w, nil
		}
		removeSpill(s.cfg.SpillFS, s.cfg.SpillDir, old) // only garbage; a new file does
	}
	return createSpill(s.cfg.SpillFS, s.cfg.SpillDir, name, s.cfg.Routed)
}

// recycle closes the spill file of a committed epoch and keeps it for a
// later one, or deletes it when spillRecycled are kept.
func (s *Sink) recycle(w *spillWriter) {
	if len(s.recycled) >= spillRecycled {
		w.remove()
		return
	}
	w.close()
	s.recycled = append(s.recycled, w.name)
}

// removeRecycled deletes the files kept for reuse.
func (s *Sink) removeRecycled() {
	for _, n := range s.recycled {
		removeSpill(s.cfg.SpillFS, s.cfg.SpillDir, n)
	}
	s.recycled = nil
}

// removeOwnSpills deletes the spill files of this owner: those of the
// previous run, all committed or never pre-committed once Recover is done.
func (s *Sink) removeOwnSpills() {
	names, err := s.cfg.SpillFS.List(s.cfg.SpillDir)
	if err != nil {
		return // only garbage is left behind
	}
	s.recycled = nil // deleted below with the rest
	prefix := spillPrefix(s.cfg.Owner)
	for _, n := range names {
		if strings.HasPrefix(n, prefix) && strings.HasSuffix(n, spillSuffix) {
			removeSpill(s.cfg.SpillFS, s.cfg.SpillDir, n)
		}
	}
}

// replay writes e in a fresh transaction on the lowest free slot, with the
// marker of owner, and commits it.
func (s *Sink) replay(ctx context.Context, e *epochBuf, owner string) error {
	if err := s.start(ctx, e); err != nil {
		return err
	}
	if err := s.prepare(ctx, e, owner); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	if err := s.commit(ctx, e); err != nil {
		return err
	}
	s.counts.Replayed++
	return nil
}

// Write adds recs to the open epoch. It writes them to the epoch's
// transaction when the epoch has a slot, and otherwise only buffers them.
func (s *Sink) Write(ctx context.Context, recs []Record) error {
	if err := s.usable("write"); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	e := s.cur
	var n int64
	if e.count == 0 {
		n = epochStateBytes(s.cfg.Owner)
	}
	for _, r := range recs {
		n += r.stateBytes()
		if s.cfg.Routed {
			n += int64(r.routeBytes())
		} else if r.routed() {
			return s.fail(fmt.Errorf("%w: write %s: a record for topic %q with %d headers, but the sink is not Routed", ErrConfig, s.cfg.Owner, r.Topic, len(r.Headers)))
		}
	}
	if s.bytes+n > s.cfg.MaxPendingBytes {
		return s.fail(&PendingFullError{Owner: s.cfg.Owner, Held: s.bytes, Open: e.bytes, Adding: n, Limit: s.cfg.MaxPendingBytes})
	}
	if s.cfg.SpillDir != "" {
		if e.spill == nil {
			s.seq = max(s.seq+1, uint64(time.Now().UnixNano()))
			name := fmt.Sprintf("%s%016x%s", spillPrefix(s.cfg.Owner), s.seq, spillSuffix)
			w, err := s.newSpill(name)
			if err != nil {
				return s.fail(fmt.Errorf("txsink: write %s: %w", s.cfg.Owner, err))
			}
			e.spill = w
		}
		if err := e.spill.add(recs); err != nil {
			return s.fail(fmt.Errorf("txsink: write %s: %w", s.cfg.Owner, err))
		}
	}
	s.bytes += n
	e.recs = append(e.recs, recs...)
	e.count += len(recs)
	e.bytes += n
	if e.txn == nil && len(s.free) > 0 && len(s.pendUnstarted()) == 0 {
		if err := s.start(ctx, e); err != nil {
			return s.fail(fmt.Errorf("txsink: write %s: %w", s.cfg.Owner, err))
		}
		return nil
	}
	if e.txn != nil {
		if err := s.flushTo(ctx, e); err != nil {
			return s.fail(fmt.Errorf("txsink: write %s: %w", s.cfg.Owner, err))
		}
	}
	return nil
}

// PreCommit seals the open epoch as epoch at barrier epoch: it writes the
// progress marker, flushes, and returns the sink state to save with
// checkpoint epoch (every pre-committed epoch not yet committed, with its
// records). An epoch without records opens no transaction and is not kept.
func (s *Sink) PreCommit(ctx context.Context, epoch uint64) ([]byte, error) {
	if err := s.usable("pre-commit"); err != nil {
		return nil, err
	}
	if epoch <= s.last {
		return nil, s.fail(fmt.Errorf("txsink: pre-commit %s: epoch %d after %d: %w", s.cfg.Owner, epoch, s.last, ErrEpochOrder))
	}
	s.last = epoch
	e := s.cur
	s.cur = &epochBuf{}
	if e.count > 0 {
		e.epoch = epoch
		// The spill file is synced while the transaction is flushed.
		var sealed chan error
		if e.spill != nil {
			sealed = make(chan error, 1)
			go func() {
				ref, err := e.spill.seal()
				e.ref = &ref
				sealed <- err
			}()
		}
		var err error
		if e.txn != nil {
			err = s.prepare(ctx, e, s.cfg.Owner)
		}
		if sealed != nil {
			if serr := <-sealed; serr != nil && err == nil {
				err = serr
			}
		}
		if err != nil {
			s.pend = append(s.pend, e) // Abort closes its transaction and file
			return nil, s.fail(fmt.Errorf("txsink: pre-commit %s epoch %d: %w", s.cfg.Owner, epoch, err))
		}
		s.pend = append(s.pend, e)
	} else if e.txn != nil {
		s.cur = e // nothing written: the transaction serves the next epoch
	}
	return EncodeState(s.State()), nil
}

// State returns the sink state as of the last PreCommit.
func (s *Sink) State() State {
	st := State{IDs: slices.Clone(s.ids)}
	for _, e := range s.pend {
		if e.ref != nil {
			st.Pending = append(st.Pending, PendingEpoch{Epoch: e.epoch, Owner: s.cfg.Owner, Spill: e.ref})
			continue
		}
		st.Pending = append(st.Pending, PendingEpoch{Epoch: e.epoch, Owner: s.cfg.Owner, Records: e.recs, Routed: s.cfg.Routed})
	}
	return st
}

// Commit commits, in order, every pre-committed epoch <= upTo (checkpoint
// upTo is complete; complete is subsuming, so a lost notification is made
// up by the next). Epochs that never had a slot are written now. Freed
// slots go to the next epochs. A failed commit leaves the sink failed: the
// caller restarts from the latest complete checkpoint and Recover commits
// what is missing.
func (s *Sink) Commit(ctx context.Context, upTo uint64) error {
	if err := s.usable("commit"); err != nil {
		return err
	}
	for len(s.pend) > 0 && s.pend[0].epoch <= upTo {
		e := s.pend[0]
		if e.txn == nil {
			if err := s.replay(ctx, e, s.cfg.Owner); err != nil {
				return s.fail(fmt.Errorf("txsink: commit %s epoch %d: %w", s.cfg.Owner, e.epoch, err))
			}
		} else if err := s.commit(ctx, e); err != nil {
			return s.fail(fmt.Errorf("txsink: commit %s epoch %d: %w", s.cfg.Owner, e.epoch, err))
		}
		s.pend = s.pend[1:]
		s.bytes -= e.bytes
		if e.spill != nil {
			s.recycle(e.spill) // committed: no checkpoint needs its records
		}
	}
	// Give freed slots to the epochs waiting for one, oldest first.
	for _, e := range s.pendUnstarted() {
		if len(s.free) == 0 {
			return nil
		}
		if err := s.start(ctx, e); err != nil {
			return s.fail(fmt.Errorf("txsink: commit %s: start epoch %d: %w", s.cfg.Owner, e.epoch, err))
		}
		if err := s.prepare(ctx, e, s.cfg.Owner); err != nil {
			return s.fail(fmt.Errorf("txsink: commit %s: pre-commit epoch %d: %w", s.cfg.Owner, e.epoch, err))
		}
	}
	if s.cur.txn == nil && s.cur.count > 0 && len(s.free) > 0 {
		if err := s.start(ctx, s.cur); err != nil {
			return s.fail(fmt.Errorf("txsink: commit %s: start open epoch: %w", s.cfg.Owner, err))
		}
	}
	return nil
}

// Pending returns the epochs pre-committed and not yet committed, oldest
// first.
func (s *Sink) Pending() []uint64 {
	out := make([]uint64, len(s.pend))
	for i, e := range s.pend {
		out[i] = e.epoch
	}
	return out
}

// Abort aborts the open and every pre-committed transaction, for a job
// that stops or fails; the sink is closed afterwards. Pre-committed epochs
// are not lost: the checkpoints that hold them replay them in Recover. It
// tries every transaction even when one fails and returns the first error.
func (s *Sink) Abort(ctx context.Context) error {
	var first error
	for _, e := range s.pend {
		if e.spill != nil {
			e.spill.close() // kept: a checkpoint may name it
		}
	}
	if s.cur.spill != nil {
		s.cur.spill.remove() // in no checkpoint
	}
	s.removeRecycled()
	for _, e := range append(slices.Clone(s.pend), s.cur) {
		if e.txn == nil {
			continue
		}
		err := s.call(ctx, e.txn.Abort)
		e.txn = nil
		s.counts.Aborted++
		if err != nil && first == nil {
			first = fmt.Errorf("txsink: abort %s epoch %d: %w", s.cfg.Owner, e.epoch, err)
		}
	}
	s.pend, s.cur, s.bytes = nil, &epochBuf{}, 0
	s.closed = true
	return first
}

// Close aborts what is open (bounded by OpTimeout) and releases the
// backend, even if the abort fails.
func (s *Sink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.OpTimeout)
	defer cancel()
	err := s.Abort(ctx)
	if cerr := s.b.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("txsink: close %s: %w", s.cfg.Owner, cerr)
	}
	return err
}

// Err returns the error that failed the sink, or nil.
func (s *Sink) Err() error { return s.err }

func (s *Sink) usable(op string) error {
	switch {
	case s.closed:
		return fmt.Errorf("txsink: %s %s: %w", op, s.cfg.Owner, ErrClosed)
	case s.err != nil:
		return fmt.Errorf("txsink: %s %s: %w (%w)", op, s.cfg.Owner, ErrFailed, s.err)
	case !s.ready:
		return fmt.Errorf("txsink: %s %s: %w", op, s.cfg.Owner, ErrNotRecovered)
	}
	return nil
}

func (s *Sink) fail(err error) error {
	if s.err == nil {
		s.err = err
	}
	return err
}

// call runs fn with ctx bounded by OpTimeout.
func (s *Sink) call(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	return fn(ctx)
}

// start gives e the lowest free slot, opens its transaction and writes its
// records so far.
func (s *Sink) start(ctx context.Context, e *epochBuf) error {
	if len(s.free) == 0 {
		return fmt.Errorf("txsink: no free slot of %d (invariant broken)", len(s.ids))
	}
	slot := s.free[0]
	var t Txn
	err := s.call(ctx, func(ctx context.Context) (err error) {
		t, err = s.b.Begin(ctx, slot)
		return err
	})
	if err != nil {
		return fmt.Errorf("begin on slot %d: %w", slot, err)
	}
	s.free = s.free[1:]
	e.txn, e.slot, e.written = t, slot, 0
	return s.flushTo(ctx, e)
}

// prepare writes e's marker under owner and flushes.
func (s *Sink) prepare(ctx context.Context, e *epochBuf, owner string) error {
	return s.call(ctx, func(ctx context.Context) error { return e.txn.Prepare(ctx, owner, e.epoch) })
}

// flushTo hands e's records not yet written to its transaction.
func (s *Sink) flushTo(ctx context.Context, e *epochBuf) error {
	if e.written == len(e.recs) {
		return nil
	}
	err := s.call(ctx, func(ctx context.Context) error { return e.txn.Write(ctx, e.recs[e.written:]) })
	if err != nil {
		return fmt.Errorf("write %d records: %w", len(e.recs)-e.written, err)
	}
	e.written = len(e.recs)
	if e.spill != nil {
		// The spill file has them for a replay: let them go.
		clear(e.recs)
		e.recs, e.written = e.recs[:0], 0
	}
	return nil
}

// commit commits e's transaction and frees its slot.
func (s *Sink) commit(ctx context.Context, e *epochBuf) error {
	if err := s.call(ctx, e.txn.Commit); err != nil {
		return fmt.Errorf("%w: %w", ErrCommit, err)
	}
	e.txn = nil
	s.free = append(s.free, e.slot)
	slices.Sort(s.free)
	s.counts.Committed++
	return nil
}

// pendUnstarted returns the pre-committed epochs without a slot.
func (s *Sink) pendUnstarted() []*epochBuf {
	for i, e := range s.pend {
		if e.txn == nil {
			return s.pend[i:]
		}
	}
	return nil
}
