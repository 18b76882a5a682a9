package window

import (
	"encoding/binary"
	"fmt"

	"github.com/weirstream/weir/operator"
)

// Aggregator folds the values of one key in one window into an
// accumulator, one per key and window, never the values themselves
// (Flink's AggregateFunction without the result step). Add and Merge
// return the new accumulator; an accumulator that holds pointers, maps or
// slices must not be changed in place, because a checkpoint in flight may
// still be encoding the previous one (return a changed copy, or use value
// types).
type Aggregator[T, A any] struct {
	Create func() A
	Add    func(acc A, v T) A
	// Merge combines the accumulators of two windows that merge (session
	// windows); required with a merging assigner.
	Merge func(a, b A) A
}

// Config configures a keyed window operator.
type Config[T, A any] struct {
	Assigner Assigner
	Agg      Aggregator[T, A]
	// AccCodec encodes accumulators in checkpoints.
	AccCodec operator.Codec[A]
	// Lateness is the allowed lateness in ms: a window keeps its state
	// until the watermark passes its end plus Lateness, and a record that
	// arrives in that time updates the window and fires it again.
	Lateness int64
	// Name prefixes the operator's state names (one operator per
	// KeyedState, so one name is enough).
	Name string
}

// Keyed is the window operator of one subtask over a keyed state backend
// (Flink's WindowOperator with an event-time trigger): it assigns records
// to windows, keeps one accumulator per key and window in a MapState,
// fires a window when the watermark reaches its end (again for each late
// record within the allowed lateness) and drops its state when the
// watermark passes its end plus the allowed lateness. Its state is part of
// the keyed state, so checkpoints, restores and rescaling by key group
// come with it.
type Keyed[T, A any] struct {
	cfg  Config[T, A]
	st   *operator.KeyedState
	accs *operator.MapState[TimeWindow, A]
	fire func(key string, w TimeWindow, acc A) error
	buf  []TimeWindow
	// absorbed is mergeElement's scratch list of the sessions it merges.
	absorbed []TimeWindow
}

// NewKeyed registers the operator's state in st. fire is called for every
// window that fires, with its key and accumulator; it may be called again
// for the same window (a late record within the allowed lateness).
func NewKeyed[T, A any](st *operator.KeyedState, cfg Config[T, A], fire func(key string, w TimeWindow, acc A) error) (*Keyed[T, A], error) {
	if err := cfg.Assigner.Validate(); err != nil {
		return nil, err
	}
	if cfg.Agg.Create == nil || cfg.Agg.Add == nil {
		return nil, fmt.Errorf("a window aggregate needs Create and Add")
	}
	if cfg.Assigner.Merging() && cfg.Agg.Merge == nil {
		return nil, fmt.Errorf("session windows merge: the aggregate needs a Merge function")
	}
	if cfg.Lateness < 0 {
		return nil, fmt.Errorf("allowed lateness must not be negative, got %dms", cfg.Lateness)
	}
	accs, err := operator.Map(st, cfg.Name+"/"+cfg.Assigner.String(), WindowCodec{}, cfg.AccCodec)
	if err != nil {
		return nil, err
	}
	return &Keyed[T, A]{cfg: cfg, st: st, accs: accs, fire: fire}, nil
}

// cleanup is when the state of w goes: its end plus the allowed lateness.
func (k *Keyed[T, A]) cleanup(w TimeWindow) int64 { return addSat(w.MaxTimestamp(), k.cfg.Lateness) }

// late reports whether w is past its allowed lateness at watermark wm.
func (k *Keyed[T, A]) late(w TimeWindow, wm int64) bool { return k.cleanup(w) <= wm }

// Element adds v, with event time ts, to the windows of the current key
// (KeyedState.SetCurrentKey). It returns true when v was too late for
// every window it belongs to and was not added: the caller sends it to
// the late side output or counts it as dropped.
func (k *Keyed[T, A]) Element(ts int64, v T) (late bool, err error) {
	wm := k.st.Watermark()
	if k.cfg.Assigner.Merging() {
		return k.mergeElement(ts, v, wm)
	}
	k.buf = k.cfg.Assigner.Assign(ts, k.buf[:0])
	late = true
	for _, w := range k.buf {
		if k.late(w, wm) {
			continue
		}
		late = false
		acc, ok := k.accs.Get(w)
		if !ok {
			acc = k.cfg.Agg.Create()
		}
		acc = k.cfg.Agg.Add(acc, v)
		k.accs.Put(w, acc)
		if err := k.arm(w, acc, wm); err != nil {
			return false, err
		}
	}
	return late, nil
}

// arm fires w at once when the watermark already passed its end (a late
// record within the allowed lateness), else sets its timer; and sets the
// timer that drops its state.
func (k *Keyed[T, A]) arm(w TimeWindow, acc A, wm int64) error {
	if w.MaxTimestamp() <= wm {
		if err := k.fire(k.st.CurrentKey(), w, acc); err != nil {
			return err
		}
	} else {
		k.st.RegisterEventTimer(w.MaxTimestamp())
	}
	k.st.RegisterEventTimer(k.cleanup(w))
	return nil
}

// mergeElement adds v to the session of the current key it falls in,
// merging every session the new one touches (their accumulators merged).
func (k *Keyed[T, A]) mergeElement(ts int64, v T, wm int64) (bool, error) {
	k.buf = k.cfg.Assigner.Assign(ts, k.buf[:0])
	nw := k.buf[0]
	merged := nw
	absorbed := k.absorbed[:0]
	for w := range k.accs.All() {
		if w.intersects(nw) {
			merged = merged.cover(w)
			absorbed = append(absorbed, w)
		}
	}
	k.absorbed = absorbed[:0]
	if k.late(merged, wm) {
		return true, nil
	}
	acc := k.cfg.Agg.Create()
	first := true
	for _, w := range absorbed {
		a, _ := k.accs.Get(w)
		if first {
			acc, first = a, false
		} else {
			acc = k.cfg.Agg.Merge(acc, a)
		}
	}
	acc = k.cfg.Agg.Add(acc, v)
	// Put before the removes, so the key's windows never run empty (which
	// would drop and rebuild its map).
	k.accs.Put(merged, acc)
	for _, w := range absorbed {
		if w != merged {
			// Its timers stay: another window of the key may share their
			// times, and a timer with no window of its time does nothing.
			k.accs.Remove(w)
		}
	}
	if len(absorbed) == 0 {
		return false, k.arm(merged, acc, wm)
	}
	return false, k.armMerged(merged, acc, wm, absorbed)
}

// armMerged arms a session that grew from the absorbed windows. Session
// timers are set lazily (as few as one per session, not one per record):
// every live window has a pending timer at or before its end while it has
// not fired, and at or before its cleanup time always; Timer moves an
// early timer on to the window's real end. A session that grows keeps the
// timers of the windows it grew from, which are at or before its own.
func (k *Keyed[T, A]) armMerged(merged TimeWindow, acc A, wm int64, absorbed []TimeWindow) error {
	if merged.MaxTimestamp() <= wm {
		// A late record within the allowed lateness: fire again now; the
		// absorbed windows' timers are at or before its cleanup time.
		return k.fire(k.st.CurrentKey(), merged, acc)
	}
	for _, w := range absorbed {
		if w.MaxTimestamp() > wm {
			return nil // w has not fired: its timer is at or before w's end
		}
	}
	// Every absorbed window fired already; their timers are cleanup
	// timers, possibly after this session's end.
	k.st.RegisterEventTimer(merged.MaxTimestamp())
	return nil
}

// Timer handles the event-time timer ts of key: the windows of key that
// end at ts fire, those whose allowed lateness ends at ts are dropped.
func (k *Keyed[T, A]) Timer(key string, ts int64) error {
	k.st.SetCurrentKey(key)
	merging := k.cfg.Assigner.Merging()
	for w, acc := range k.accs.All() {
		if w.MaxTimestamp() == ts {
			if err := k.fire(key, w, acc); err != nil {
				return err
			}
		}
		if k.cleanup(w) <= ts {
			k.accs.Remove(w)
			continue
		}
		if merging {
			// Sessions set timers lazily (armMerged): move this one on
			// to the window's end, or once it fired, to its cleanup.
			if w.MaxTimestamp() > ts {
				k.st.RegisterEventTimer(w.MaxTimestamp())
			} else {
				k.st.RegisterEventTimer(k.cleanup(w))
			}
		}
	}
	return nil
}

// WindowCodec encodes a TimeWindow in 16 bytes (start, end; big endian).
type WindowCodec struct{}

// Append appends w's encoding to b.
func (WindowCodec) Append(b []byte, w TimeWindow) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(b, uint64(w.Start))
	return binary.BigEndian.AppendUint64(b, uint64(w.End)), nil
}

// Decode reads a window encoded by Append.
func (WindowCodec) Decode(b []byte) (TimeWindow, error) {
	if len(b) != 16 {
		return TimeWindow{}, fmt.Errorf("a window is 16 bytes, got %d", len(b))
	}
	return TimeWindow{Start: int64(binary.BigEndian.Uint64(b)), End: int64(binary.BigEndian.Uint64(b[8:]))}, nil
}
