package operator

import (
	"container/heap"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"strings"
	"time"
)

// KeyedStateConfig configures a KeyedState.
type KeyedStateConfig struct {
	// Track turns checkpoints on: the state remembers what changed, for
	// Capture. Off, Capture returns a function that returns nil.
	Track bool
	// Now returns the processing time in milliseconds, for TTL. Nil means
	// time.Now().UnixMilli; tests inject their own clock.
	Now func() int64
}

// Kinds of store entries (the third byte of a store key).
const (
	kindValue     = 'v'
	kindMap       = 'm'
	kindList      = 'l'
	kindEventTime = 'e'
	kindProcTime  = 'p'
)

func kindName(k byte) string {
	switch k {
	case kindValue:
		return "value"
	case kindMap:
		return "map"
	case kindList:
		return "list"
	case kindEventTime:
		return "event timer"
	case kindProcTime:
		return "processing timer"
	}
	return fmt.Sprintf("unknown (%q)", k)
}

// KeyedState is the keyed state backend of one operator subtask: the
// ValueState, MapState and ListState its user function registers, and its
// event-time and processing-time timers, all scoped to the current key
// (SetCurrentKey). It is held in memory; Capture hands what changed to
// the snapshot worker, Restore rebuilds it from the task's store.
//
// A KeyedState is not safe for concurrent use: the task calls it from
// one goroutine. Only the functions Capture returns run elsewhere. Make
// one with NewKeyedState; the zero KeyedState is not usable.
//
// Values are stored as given, not copied (ListState copies its slices):
// a value passed to Update or Put, or one read back, must not be changed
// in place afterwards, since a snapshot in flight may be encoding it.
type KeyedState struct {
	track bool
	now   func() int64
	key   string

	// epoch counts captures. A cell written in an older epoch may be read
	// by a snapshot worker, so it is never changed again (see cell).
	epoch uint64
	// dirty maps each entry changed since the last Capture to its cell
	// (a timer: timerSet), or to nil when it is deleted.
	dirty map[entryRef]any

	states  map[string]*stateCore
	pending map[string]*pendingState // restored, not yet registered
	// restored is set by Restore, which runs once.
	restored bool
	// n counts the live state entries (timers aside).
	n   int
	ttl ttlHeap

	event, proc         timerQueue
	eventCore, procCore *stateCore
	wm                  int64
	firing              bool
}

// NewKeyedState returns an empty keyed state.
func NewKeyedState(cfg KeyedStateConfig) *KeyedState {
	s := &KeyedState{
		track:     cfg.Track,
		now:       cfg.Now,
		states:    map[string]*stateCore{},
		pending:   map[string]*pendingState{},
		wm:        math.MinInt64,
		eventCore: &stateCore{kind: kindEventTime},
		procCore:  &stateCore{kind: kindProcTime},
	}
	if s.now == nil {
		s.now = func() int64 { return time.Now().UnixMilli() }
	}
	if s.track {
		s.dirty = map[entryRef]any{}
	}
	return s
}

// SetCurrentKey sets the key that the states and timers act on.
func (s *KeyedState) SetCurrentKey(key string) { s.key = key }

// CurrentKey returns the key that the states and timers act on.
func (s *KeyedState) CurrentKey() string { return s.key }

// Len returns the number of live state entries plus the number of timers,
// for metrics and tests. A value or a list of one key is one entry, a map
// holds one entry per map key. Entries whose TTL passed are deleted first;
// restored state whose name is not registered yet is not counted.
func (s *KeyedState) Len() int {
	s.expireDue()
	return s.n + len(s.event.set) + len(s.proc.set)
}

// entryRef names one store entry before it is encoded: the state (or one
// of the two timer cores), the key, the map key (boxed, maps only; nil
// unless tracked or with a TTL) and the time (timers only).
type entryRef struct {
	st  *stateCore
	key string
	sub any
	ts  int64
}

// timerSet is the dirty mark of a registered timer.
var timerSet any = struct{}{}

func (s *KeyedState) markDirty(ref entryRef, c any) {
	if s.track {
		s.dirty[ref] = c
	}
}

func (s *KeyedState) markDeleted(ref entryRef) {
	if s.track {
		s.dirty[ref] = nil
	}
}

// fresh reports whether an entry created now for ref is fresh: nothing of
// ref is in the store, as far as this epoch goes, unless a delete of it
// is pending. Only entries created by the operator (never restored ones)
// ask; their refs are not in the store unless deleted in this epoch,
// since a live entry of the same ref would have been updated instead.
func (s *KeyedState) fresh(ref entryRef) bool {
	c, pending := s.dirty[ref]
	return !pending || c != nil
}

// stateCore is what the keyed state and the snapshot worker know of a
// registered state, whatever its types. The worker reads it; nothing in it
// changes after registration.
type stateCore struct {
	name string
	kind byte
	ttl  int64 // milliseconds; 0: none
	// handle is the *ValueState[T], *MapState[K, V] or *ListState[T].
	handle any
	// appendSub appends the encoded map key (maps only).
	appendSub func(dst []byte, key string, sub any) ([]byte, error)
	// appendVal appends the encoded value of a cell.
	appendVal func(dst []byte, key string, c any) ([]byte, error)
	// expire deletes the entry of ref, whose TTL passed.
	expire func(ref entryRef)
	// load installs restored entries.
	load func(raws []rawEntry) error
}

// appendExp prefixes a value with its expiry time when the state has a TTL.
func (c *stateCore) appendExp(dst []byte, exp int64) []byte {
	if c.ttl == 0 {
		return dst
	}
	return appendUint64(dst, uint64(exp))
}

// splitExp splits a stored value into its expiry time and its encoding.
func (c *stateCore) splitExp(b []byte) (int64, []byte, error) {
	if c.ttl == 0 {
		return 0, b, nil
	}
	if len(b) < 8 {
		return 0, nil, fmt.Errorf("operator: ttl prefix: %d bytes, want at least 8", len(b))
	}
	return int64(uint64From(b)), b[8:], nil
}

// cell holds one stored value. With checkpoints on it is copy-on-write
// across captures: a cell whose epoch is older than the state's may be
// read by a snapshot worker and is never changed again; a write replaces
// it with a new cell.
type cell[T any] struct {
	v     T
	exp   int64 // expiry time (ms) with a TTL
	epoch uint64
	// ttl is the entry's place in the TTL heap; copied from cell to cell,
	// it is the keyed state's, never read by a snapshot worker.
	ttl *ttlItem
	// fresh marks a cell created in its epoch for an entry the store does
	// not hold: deleting it in the same epoch leaves nothing to write.
	fresh bool
	// marked: the dirty set of its epoch holds this cell already, so an
	// update in place needs no new mark.
	marked bool
}

// put stores v for ref and returns the cell that now holds it: old itself
// when old was written in the current epoch, else a new cell.
func put[T any](s *KeyedState, core *stateCore, old *cell[T], ref entryRef, v T) *cell[T] {
	c := old
	switch {
	case c == nil:
		c = &cell[T]{epoch: s.epoch, fresh: s.track && s.fresh(ref)}
		s.n++
	case c.epoch != s.epoch:
		c = &cell[T]{epoch: s.epoch, ttl: old.ttl}
	}
	c.v = v
	if core.ttl > 0 {
		c.exp = AddSat(s.now(), core.ttl)
		c.ttl = s.touchTTL(c.ttl, ref, c.exp)
	}
	if s.track && !c.marked {
		s.dirty[ref] = c
		c.marked = true
	}
	return c
}

// drop accounts for the deletion of c, already taken out of its state.
func drop[T any](s *KeyedState, c *cell[T], ref entryRef) {
	s.dropTTL(c.ttl)
	s.n--
	if c.fresh && c.epoch == s.epoch {
		delete(s.dirty, ref)
		return
	}
	s.markDeleted(ref)
}

// adopt accounts for a restored cell c replacing old (nil for none). It is
// already in the store: nothing is marked dirty.
func adopt[T any](s *KeyedState, core *stateCore, old, c *cell[T], ref entryRef) {
	if old != nil {
		s.dropTTL(old.ttl)
		s.n--
	}
	s.n++
	if core.ttl > 0 {
		c.ttl = s.touchTTL(nil, ref, c.exp)
	}
}

// live reports whether a cell of core with expiry time exp is still live.
func (s *KeyedState) live(core *stateCore, exp int64) bool {
	return core.ttl == 0 || exp > s.now()
}

// StateOption is an option of a state's registration.
type StateOption func(*stateOptions)

type stateOptions struct {
	ttl    time.Duration
	ttlSet bool
}

// WithTTL gives the entries of a state a time to live: an entry expires d
// after its last write (processing time, KeyedStateConfig.Now). An
// expired entry reads as absent; it is deleted, also from the checkpoint
// (a delete entry), when it is read or at the next Capture. A ListState
// is one entry per key (Add is a write), a MapState one per map key. d is
// rounded up to a millisecond and must be positive.
//
// Turning the TTL of a state on or off across a restore is not supported
// (the stored values carry the expiry time only with a TTL).
func WithTTL(d time.Duration) StateOption {
	return func(o *stateOptions) { o.ttl, o.ttlSet = d, true }
}

// register checks a registration and returns the core of the state:
// the registered one with its handle when name is registered already, or
// a new one (not registered yet; the caller installs it) with a nil handle.
func (s *KeyedState) register(name string, kind byte, opts []StateOption) (*stateCore, any, error) {
	if s == nil {
		return nil, nil, errors.New("operator: register a state on a nil KeyedState")
	}
	if name == "" {
		return nil, nil, fmt.Errorf("operator: %s state with an empty name", kindName(kind))
	}
	if len(name) > 255 {
		return nil, nil, fmt.Errorf("operator: state name %.20q... is %d bytes, at most 255", name, len(name))
	}
	var o stateOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	var ttl int64
	if o.ttlSet {
		if o.ttl <= 0 {
			return nil, nil, fmt.Errorf("operator: state %q: TTL %v, want a positive one", name, o.ttl)
		}
		ttl = int64((o.ttl + time.Millisecond - 1) / time.Millisecond)
	}
	if c := s.states[name]; c != nil {
		if c.kind != kind {
			return nil, nil, fmt.Errorf("operator: state %q is a %s state, registered again as a %s state", name, kindName(c.kind), kindName(kind))
		}
		if c.ttl != ttl {
			return nil, nil, fmt.Errorf("operator: state %q has a TTL of %dms, registered again with %dms", name, c.ttl, ttl)
		}
		return c, c.handle, nil
	}
	if p := s.pending[name]; p != nil && p.kind != kind {
		return nil, nil, fmt.Errorf("operator: state %q was restored as a %s state, registered as a %s state", name, kindName(p.kind), kindName(kind))
	}
	return &stateCore{name: name, kind: kind, ttl: ttl}, nil, nil
}

// install registers core and loads its restored entries. On error nothing
// is registered.
func (s *KeyedState) install(core *stateCore) error {
	if p := s.pending[core.name]; p != nil {
		if err := core.load(p.entries); err != nil {
			return err
		}
		delete(s.pending, core.name)
	}
	s.states[core.name] = core
	return nil
}

func sameTypeErr(name string, kind byte, h any) error {
	return fmt.Errorf("operator: %s state %q is registered already with other types (%T)", kindName(kind), name, h)
}

// stateError is an error about the entry of one state and key.
type stateError struct {
	state, key string
	what       string // the part of the entry, or empty
	err        error
}

func (e *stateError) Error() string {
	msg := strings.TrimPrefix(e.err.Error(), "operator: ")
	if e.what != "" {
		msg = e.what + ": " + msg
	}
	return fmt.Sprintf("operator: state %q of key %q: %s", e.state, e.key, msg)
}

func (e *stateError) Unwrap() error { return e.err }

// ValueState is a state that holds one value of T per key (Flink's
// ValueState).
type ValueState[T any] struct {
	s    *KeyedState
	core *stateCore
	c    Codec[T]
	data map[string]*cell[T]
}

// Value registers the value state name with codec c, or returns the one
// registered under that name. Its restored entries, if any, are decoded
// now; an entry that does not decode is an error naming the state and key.
func Value[T any](s *KeyedState, name string, c Codec[T], opts ...StateOption) (*ValueState[T], error) {
	if c == nil {
		return nil, fmt.Errorf("operator: value state %q: nil codec", name)
	}
	core, h, err := s.register(name, kindValue, opts)
	if err != nil {
		return nil, err
	}
	if h != nil {
		v, ok := h.(*ValueState[T])
		if !ok {
			return nil, sameTypeErr(name, kindValue, h)
		}
		return v, nil
	}
	v := &ValueState[T]{s: s, core: core, c: c, data: map[string]*cell[T]{}}
	core.handle = v
	core.appendVal = func(dst []byte, key string, x any) ([]byte, error) {
		cl := x.(*cell[T])
		dst = core.appendExp(dst, cl.exp)
		dst, err := c.Append(dst, cl.v)
		if err != nil {
			return dst, &stateError{state: name, key: key, err: err}
		}
		return dst, nil
	}
	core.expire = func(ref entryRef) {
		if cl := v.data[ref.key]; cl != nil {
			v.remove(ref.key, cl)
		}
	}
	core.load = v.load
	if err := s.install(core); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *ValueState[T]) load(raws []rawEntry) error {
	s := v.s
	cells := make([]*cell[T], len(raws))
	for i, r := range raws {
		exp, b, err := v.core.splitExp(r.val)
		if err == nil {
			var x T
			x, err = v.c.Decode(b)
			cells[i] = &cell[T]{v: x, exp: exp, epoch: s.epoch}
		}
		if err != nil {
			return &stateError{state: v.core.name, key: r.key, err: err}
		}
	}
	for i, r := range raws {
		adopt(s, v.core, v.data[r.key], cells[i], entryRef{st: v.core, key: r.key})
		v.data[r.key] = cells[i]
	}
	return nil
}

func (v *ValueState[T]) remove(key string, c *cell[T]) {
	delete(v.data, key)
	drop(v.s, c, entryRef{st: v.core, key: key})
}

// Value returns the value of the current key; ok is false when it has
// none.
func (v *ValueState[T]) Value() (x T, ok bool) {
	key := v.s.key
	c := v.data[key]
	if c == nil {
		return x, false
	}
	if !v.s.live(v.core, c.exp) {
		v.remove(key, c)
		return x, false
	}
	return c.v, true
}

// Update sets the value of the current key to x.
func (v *ValueState[T]) Update(x T) {
	key := v.s.key
	v.data[key] = put(v.s, v.core, v.data[key], entryRef{st: v.core, key: key}, x)
}

// Clear deletes the value of the current key.
func (v *ValueState[T]) Clear() {
	key := v.s.key
	if c := v.data[key]; c != nil {
		v.remove(key, c)
	}
}

// MapState is a state that holds a map from K to V per key (Flink's
// MapState). Each map key is its own store entry.
type MapState[K comparable, V any] struct {
	s    *KeyedState
	core *stateCore
	kc   Codec[K]
	vc   Codec[V]
	data map[string]map[K]*cell[V]
}

// Map registers the map state name with codecs kc (map keys) and vc
// (values), or returns the one registered under that name. Its restored
// entries, if any, are decoded now; an entry that does not decode is an
// error naming the state and key.
func Map[K comparable, V any](s *KeyedState, name string, kc Codec[K], vc Codec[V], opts ...StateOption) (*MapState[K, V], error) {
	if kc == nil || vc == nil {
		return nil, fmt.Errorf("operator: map state %q: nil codec", name)
	}
	core, h, err := s.register(name, kindMap, opts)
	if err != nil {
		return nil, err
	}
	if h != nil {
		m, ok := h.(*MapState[K, V])
		if !ok {
			return nil, sameTypeErr(name, kindMap, h)
		}
		return m, nil
	}
	m := &MapState[K, V]{s: s, core: core, kc: kc, vc: vc, data: map[string]map[K]*cell[V]{}}
	core.handle = m
	core.appendSub = func(dst []byte, key string, sub any) ([]byte, error) {
		k, _ := sub.(K)
		dst, err := kc.Append(dst, k)
		if err != nil {
			return dst, &stateError{state: name, key: key, what: "map key", err: err}
		}
		return dst, nil
	}
	core.appendVal = func(dst []byte, key string, x any) ([]byte, error) {
		cl := x.(*cell[V])
		dst = core.appendExp(dst, cl.exp)
		dst, err := vc.Append(dst, cl.v)
		if err != nil {
			return dst, &stateError{state: name, key: key, what: "map value", err: err}
		}
		return dst, nil
	}
	core.expire = func(ref entryRef) {
		k, _ := ref.sub.(K)
		inner := m.data[ref.key]
		if c := inner[k]; c != nil {
			m.remove(ref.key, inner, k, c)
		}
	}
	core.load = m.load
	if err := s.install(core); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *MapState[K, V]) load(raws []rawEntry) error {
	s := m.s
	type loaded struct {
		k K
		c *cell[V]
	}
	ls := make([]loaded, len(raws))
	for i, r := range raws {
		k, err := m.kc.Decode(r.sub)
		if err != nil {
			return &stateError{state: m.core.name, key: r.key, what: "map key", err: err}
		}
		exp, b, err := m.core.splitExp(r.val)
		if err != nil {
			return &stateError{state: m.core.name, key: r.key, err: err}
		}
		v, err := m.vc.Decode(b)
		if err != nil {
			return &stateError{state: m.core.name, key: r.key, what: "map value", err: err}
		}
		ls[i] = loaded{k, &cell[V]{v: v, exp: exp, epoch: s.epoch}}
	}
	for i, r := range raws {
		inner := m.data[r.key]
		if inner == nil {
			inner = map[K]*cell[V]{}
			m.data[r.key] = inner
		}
		l := ls[i]
		adopt(s, m.core, inner[l.k], l.c, m.ref(r.key, l.k))
		inner[l.k] = l.c
	}
	return nil
}

func (m *MapState[K, V]) ref(key string, k K) entryRef {
	r := entryRef{st: m.core, key: key}
	if m.s.track || m.core.ttl > 0 {
		r.sub = k
	}
	return r
}

func (m *MapState[K, V]) remove(key string, inner map[K]*cell[V], k K, c *cell[V]) {
	delete(inner, k)
	if len(inner) == 0 && len(m.data[key]) == 0 {
		delete(m.data, key)
	}
	drop(m.s, c, m.ref(key, k))
}

// lookup returns the live cell of k for the current key, deleting it when
// its TTL passed.
func (m *MapState[K, V]) lookup(k K) *cell[V] {
	key := m.s.key
	inner := m.data[key]
	c := inner[k]
	if c == nil {
		return nil
	}
	if !m.s.live(m.core, c.exp) {
		m.remove(key, inner, k, c)
		return nil
	}
	return c
}

// Get returns the value of map key k of the current key; ok is false when
// there is none.
func (m *MapState[K, V]) Get(k K) (v V, ok bool) {
	if c := m.lookup(k); c != nil {
		return c.v, true
	}
	return v, false
}

// Contains reports whether the map of the current key holds k.
func (m *MapState[K, V]) Contains(k K) bool { return m.lookup(k) != nil }

// Put sets map key k of the current key to v.
func (m *MapState[K, V]) Put(k K, v V) {
	key := m.s.key
	inner := m.data[key]
	if inner == nil {
		inner = map[K]*cell[V]{}
		m.data[key] = inner
	}
	old := inner[k]
	if old != nil && old.marked && old.epoch == m.s.epoch && m.core.ttl == 0 {
		// Changed already in this epoch: update it in place (no boxed
		// map key for a mark it has).
		old.v = v
		return
	}
	inner[k] = put(m.s, m.core, old, m.ref(key, k), v)
}

// Remove deletes map key k of the current key.
func (m *MapState[K, V]) Remove(k K) {
	key := m.s.key
	inner := m.data[key]
	if c := inner[k]; c != nil {
		m.remove(key, inner, k, c)
	}
}

// Len returns the number of map keys of the current key.
func (m *MapState[K, V]) Len() int {
	key := m.s.key
	inner := m.data[key]
	if m.core.ttl > 0 && len(inner) > 0 {
		now := m.s.now()
		for k, c := range inner {
			if c.exp <= now {
				m.remove(key, inner, k, c)
			}
		}
	}
	return len(inner)
}

// All returns the map keys and values of the current key (the key when
// All is called), in no particular order. The loop body may change the
// map; as with a Go map, an entry put during the loop may or may not be
// seen.
func (m *MapState[K, V]) All() iter.Seq2[K, V] {
	key := m.s.key
	return func(yield func(K, V) bool) {
		inner := m.data[key]
		for k, c := range inner {
			if !m.s.live(m.core, c.exp) {
				m.remove(key, inner, k, c)
				continue
			}
			if !yield(k, c.v) {
				return
			}
		}
	}
}

// Clear deletes the map of the current key.
func (m *MapState[K, V]) Clear() {
	key := m.s.key
	inner := m.data[key]
	if inner == nil {
		return
	}
	delete(m.data, key)
	for k, c := range inner {
		drop(m.s, c, m.ref(key, k))
	}
	clear(inner)
}

// ListState is a state that holds a list of T per key (Flink's
// ListState). The list of a key is one store entry.
type ListState[T any] struct {
	s    *KeyedState
	core *stateCore
	c    Codec[T]
	data map[string]*cell[[]T]
}

// List registers the list state name with codec c (of the elements), or
// returns the one registered under that name. Its restored entries, if
// any, are decoded now; an entry that does not decode is an error naming
// the state and key.
func List[T any](s *KeyedState, name string, c Codec[T], opts ...StateOption) (*ListState[T], error) {
	if c == nil {
		return nil, fmt.Errorf("operator: list state %q: nil codec", name)
	}
	core, h, err := s.register(name, kindList, opts)
	if err != nil {
		return nil, err
	}
	if h != nil {
		l, ok := h.(*ListState[T])
		if !ok {
			return nil, sameTypeErr(name, kindList, h)
		}
		return l, nil
	}
	l := &ListState[T]{s: s, core: core, c: c, data: map[string]*cell[[]T]{}}
	core.handle = l
	core.appendVal = func(dst []byte, key string, x any) ([]byte, error) {
		cl := x.(*cell[[]T])
		dst = core.appendExp(dst, cl.exp)
		var elem []byte
		for i, e := range cl.v {
			var err error
			elem, err = c.Append(elem[:0], e)
			if err != nil {
				return dst, &stateError{state: name, key: key, what: fmt.Sprintf("list element %d", i), err: err}
			}
			dst = appendUvarint(dst, uint64(len(elem)))
			dst = append(dst, elem...)
		}
		return dst, nil
	}
	core.expire = func(ref entryRef) {
		if cl := l.data[ref.key]; cl != nil {
			l.remove(ref.key, cl)
		}
	}
	core.load = l.load
	if err := s.install(core); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *ListState[T]) load(raws []rawEntry) error {
	s := l.s
	cells := make([]*cell[[]T], len(raws))
	for i, r := range raws {
		exp, b, err := l.core.splitExp(r.val)
		if err != nil {
			return &stateError{state: l.core.name, key: r.key, err: err}
		}
		xs, what, err := decodeList(b, l.c)
		if err != nil {
			return &stateError{state: l.core.name, key: r.key, what: what, err: err}
		}
		cells[i] = &cell[[]T]{v: xs, exp: exp, epoch: s.epoch}
	}
	for i, r := range raws {
		adopt(s, l.core, l.data[r.key], cells[i], entryRef{st: l.core, key: r.key})
		l.data[r.key] = cells[i]
	}
	return nil
}

// decodeList decodes a sequence of (uvarint length, element); on error,
// what names the element.
func decodeList[T any](b []byte, c Codec[T]) (xs []T, what string, err error) {
	for i := 0; len(b) > 0; i++ {
		what = fmt.Sprintf("list element %d", i)
		n, w := uvarint(b)
		if w <= 0 {
			return nil, what, errors.New("operator: malformed length")
		}
		b = b[w:]
		if n > uint64(len(b)) {
			return nil, what, fmt.Errorf("operator: length %d, %d bytes left", n, len(b))
		}
		x, err := c.Decode(b[:n])
		if err != nil {
			return nil, what, err
		}
		xs = append(xs, x)
		b = b[n:]
	}
	if xs == nil {
		xs = []T{}
	}
	return xs, "", nil
}

func (l *ListState[T]) remove(key string, c *cell[[]T]) {
	delete(l.data, key)
	drop(l.s, c, entryRef{st: l.core, key: key})
}

// Get returns the list of the current key, nil when it has none. The
// slice is a copy the caller may keep and change.
func (l *ListState[T]) Get() []T {
	key := l.s.key
	c := l.data[key]
	if c == nil {
		return nil
	}
	if !l.s.live(l.core, c.exp) {
		l.remove(key, c)
		return nil
	}
	return slices.Clone(c.v)
}

// Add appends x to the list of the current key.
func (l *ListState[T]) Add(x T) {
	key := l.s.key
	c := l.data[key]
	var xs []T
	switch {
	case c == nil || !l.s.live(l.core, c.exp):
		xs = []T{x}
	case c.epoch == l.s.epoch:
		xs = append(c.v, x)
	default:
		// c may be read by a snapshot worker: append to a copy.
		xs = append(slices.Clip(c.v), x)
	}
	l.data[key] = put(l.s, l.core, c, entryRef{st: l.core, key: key}, xs)
}

// Update replaces the list of the current key with a copy of xs; an empty
// xs clears it.
func (l *ListState[T]) Update(xs []T) {
	if len(xs) == 0 {
		l.Clear()
		return
	}
	key := l.s.key
	l.data[key] = put(l.s, l.core, l.data[key], entryRef{st: l.core, key: key}, slices.Clone(xs))
}

// Clear deletes the list of the current key.
func (l *ListState[T]) Clear() {
	key := l.s.key
	if c := l.data[key]; c != nil {
		l.remove(key, c)
	}
}

// ttlItem is the place of one entry with a TTL in the TTL heap.
type ttlItem struct {
	exp int64
	idx int // -1 once out of the heap
	ref entryRef
}

// ttlHeap orders the entries with a TTL by expiry time, so a Capture
// deletes the expired ones without a scan.
type ttlHeap []*ttlItem

func (h ttlHeap) Len() int           { return len(h) }
func (h ttlHeap) Less(i, j int) bool { return h[i].exp < h[j].exp }
func (h ttlHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *ttlHeap) Push(x any) {
	it := x.(*ttlItem)
	it.idx = len(*h)
	*h = append(*h, it)
}
func (h *ttlHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.idx = -1
	return it
}

// touchTTL sets the expiry time of ref's entry, whose heap item is it
// (nil for none yet), and returns its item.
func (s *KeyedState) touchTTL(it *ttlItem, ref entryRef, exp int64) *ttlItem {
	if it == nil || it.idx < 0 {
		it = &ttlItem{exp: exp, ref: ref}
		heap.Push(&s.ttl, it)
		return it
	}
	it.exp = exp
	heap.Fix(&s.ttl, it.idx)
	return it
}

func (s *KeyedState) dropTTL(it *ttlItem) {
	if it != nil && it.idx >= 0 {
		heap.Remove(&s.ttl, it.idx)
	}
}

// expireDue deletes every entry whose TTL passed.
func (s *KeyedState) expireDue() {
	if len(s.ttl) == 0 {
		return
	}
	now := s.now()
	for len(s.ttl) > 0 && s.ttl[0].exp <= now {
		it := heap.Pop(&s.ttl).(*ttlItem)
		it.ref.st.expire(it.ref)
	}
}
