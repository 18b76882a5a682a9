package txsink

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// MemOp names a step of MemSystem at which a fault can be injected.
type MemOp int

// Steps of MemSystem that FailNext can fail.
const (
	MemWrite MemOp = iota
	MemPrepare
	MemCommit
	MemFence
	MemCommitted
)

// MemSystem is an in-memory transactional system with the semantics the
// Kafka backend relies on: transactional ids with fencing, transactions
// that commit records and a progress marker atomically, and faults on
// demand. Tests of the protocol and of its callers use it; it is not for
// production. It is safe for concurrent use.
type MemSystem struct {
	mu      sync.Mutex
	gen     map[string]int // fencing generation per transactional id
	open    map[*memTxn]bool
	out     []MemRecord
	markers map[string]uint64
	faults  map[MemOp]memFault
	nextTxn int
}

// MemRecord is one committed record and the transaction that wrote it.
type MemRecord struct {
	Record
	Owner string
	Epoch uint64
	Txn   int
}

type memFault struct {
	applied bool // for MemCommit: commit, then report the failure
}

// ErrMemFault is the error of an injected fault.
var ErrMemFault = fmt.Errorf("txsink: injected fault")

// NewMemSystem returns an empty system.
func NewMemSystem() *MemSystem {
	return &MemSystem{gen: map[string]int{}, open: map[*memTxn]bool{}, markers: map[string]uint64{}, faults: map[MemOp]memFault{}}
}

// FailNext makes the next op fail. For MemCommit, applied says whether the
// commit takes effect before the failure is reported (a crash during the
// commit whose outcome the caller cannot know).
func (m *MemSystem) FailNext(op MemOp, applied bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.faults[op] = memFault{applied: applied}
}

// ClearFaults disarms every fault not yet hit.
func (m *MemSystem) ClearFaults() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.faults)
}

// ExpireOpen aborts every open transaction, as a broker does when
// transaction.timeout.ms passes, and returns how many it aborted.
func (m *MemSystem) ExpireOpen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.open)
	for t := range m.open {
		t.aborted = true
	}
	clear(m.open)
	return n
}

// Open returns the number of open transactions.
func (m *MemSystem) Open() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.open)
}

// Output returns the committed records in commit order.
func (m *MemSystem) Output() []MemRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.out)
}

// Backend returns a backend whose slot i writes with transactional id
// ids[i].
func (m *MemSystem) Backend(ids ...string) Backend {
	return &memBackend{m: m, ids: slices.Clone(ids), gens: make([]int, len(ids))}
}

func (m *MemSystem) fault(op MemOp) (memFault, bool) {
	f, ok := m.faults[op]
	if ok {
		delete(m.faults, op)
	}
	return f, ok
}

type memBackend struct {
	m      *MemSystem
	ids    []string
	gens   []int
	fenced bool
	closed bool
}

type memTxn struct {
	b        *memBackend
	id       string
	gen      int
	n        int
	owner    string
	epoch    uint64
	recs     []Record
	prepared bool
	aborted  bool
	done     bool
}

func (b *memBackend) IDs() []string { return slices.Clone(b.ids) }

func (b *memBackend) Fence(_ context.Context, ids []string) error {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.fault(MemFence); ok {
		return fmt.Errorf("mem: fence: %w", ErrMemFault)
	}
	for _, id := range ids {
		m.gen[id]++
		for t := range m.open {
			if t.id == id {
				t.aborted = true
				delete(m.open, t)
			}
		}
	}
	for i, id := range b.ids {
		if !slices.Contains(ids, id) {
			m.gen[id]++
		}
		b.gens[i] = m.gen[id]
	}
	b.fenced = true
	return nil
}

func (b *memBackend) Committed(_ context.Context, owners []string) (map[string]uint64, error) {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.fault(MemCommitted); ok {
		return nil, fmt.Errorf("mem: read progress: %w", ErrMemFault)
	}
	out := make(map[string]uint64, len(owners))
	for _, o := range owners {
		out[o] = m.markers[o]
	}
	return out, nil
}

func (b *memBackend) Begin(_ context.Context, slot int) (Txn, error) {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if !b.fenced || b.closed {
		return nil, fmt.Errorf("mem: begin on slot %d before fence or after close", slot)
	}
	if slot < 0 || slot >= len(b.ids) {
		return nil, fmt.Errorf("mem: no slot %d", slot)
	}
	id := b.ids[slot]
	if m.gen[id] != b.gens[slot] {
		return nil, fmt.Errorf("mem: begin %s: %w", id, ErrFenced)
	}
	for t := range m.open {
		if t.id == id {
			return nil, fmt.Errorf("mem: begin %s: a transaction is already open", id)
		}
	}
	m.nextTxn++
	t := &memTxn{b: b, id: id, gen: b.gens[slot], n: m.nextTxn}
	m.open[t] = true
	return t, nil
}

func (b *memBackend) Close() error {
	b.closed = true
	return nil
}

// check returns why t can no longer be used, with m.mu held.
func (t *memTxn) check(op string) error {
	m := t.b.m
	switch {
	case m.gen[t.id] != t.gen:
		return fmt.Errorf("mem: %s %s: %w", op, t.id, ErrFenced)
	case t.aborted:
		return fmt.Errorf("mem: %s %s: transaction aborted by the system", op, t.id)
	case t.done:
		return fmt.Errorf("mem: %s %s: transaction already ended", op, t.id)
	}
	return nil
}

func (t *memTxn) Write(_ context.Context, recs []Record) error {
	m := t.b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.fault(MemWrite); ok {
		return fmt.Errorf("mem: write: %w", ErrMemFault)
	}
	if err := t.check("write"); err != nil {
		return err
	}
	if t.prepared {
		return fmt.Errorf("mem: write %s after prepare", t.id)
	}
	t.recs = append(t.recs, recs...)
	return nil
}

func (t *memTxn) Prepare(_ context.Context, owner string, epoch uint64) error {
	m := t.b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.fault(MemPrepare); ok {
		return fmt.Errorf("mem: prepare: %w", ErrMemFault)
	}
	if err := t.check("prepare"); err != nil {
		return err
	}
	t.prepared = true
	t.owner, t.epoch = owner, epoch
	return nil
}

func (t *memTxn) Commit(context.Context) error {
	m := t.b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	f, faulty := m.fault(MemCommit)
	if faulty && !f.applied {
		return fmt.Errorf("mem: commit: %w", ErrMemFault)
	}
	if err := t.check("commit"); err != nil {
		return err
	}
	if !t.prepared {
		return fmt.Errorf("mem: commit %s before prepare", t.id)
	}
	t.done = true
	delete(m.open, t)
	for _, r := range t.recs {
		m.out = append(m.out, MemRecord{Record: r, Owner: t.owner, Epoch: t.epoch, Txn: t.n})
	}
	m.markers[t.owner] = max(m.markers[t.owner], t.epoch)
	if faulty {
		return fmt.Errorf("mem: commit (applied): %w", ErrMemFault)
	}
	return nil
}

func (t *memTxn) Abort(context.Context) error {
	m := t.b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.done {
		return fmt.Errorf("mem: abort %s: transaction already ended", t.id)
	}
	t.aborted = true
	delete(m.open, t)
	return nil
}
