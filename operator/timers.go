package operator

import (
	"container/heap"
	"errors"
	"fmt"
)

// timerKey is one timer: its time and its key.
type timerKey struct {
	ts  int64
	key string
}

type timer struct {
	timerKey
	idx int // place in the heap
	// epoch and fresh are as in cell: a fresh timer was registered in
	// epoch with nothing of its (key, time) in the store, so deleting it
	// in the same epoch leaves nothing to write.
	epoch uint64
	fresh bool
}

// timerHeap orders timers by time, then key.
type timerHeap []*timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].ts != h[j].ts {
		return h[i].ts < h[j].ts
	}
	return h[i].key < h[j].key
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*timer)
	t.idx = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.idx = -1
	return t
}

// timerQueue is the timers of one time domain: a min-heap by (time, key)
// and a set for dedupe and deletion.
type timerQueue struct {
	h   timerHeap
	set map[timerKey]*timer
}

// add adds a timer and returns it; nil when the timer exists already.
func (q *timerQueue) add(key string, ts int64) *timer {
	tk := timerKey{ts, key}
	if _, ok := q.set[tk]; ok {
		return nil
	}
	if q.set == nil {
		q.set = map[timerKey]*timer{}
	}
	t := &timer{timerKey: tk}
	q.set[tk] = t
	heap.Push(&q.h, t)
	return t
}

// remove deletes a timer and returns it; nil when there was none.
func (q *timerQueue) remove(key string, ts int64) *timer {
	tk := timerKey{ts, key}
	t, ok := q.set[tk]
	if !ok {
		return nil
	}
	delete(q.set, tk)
	heap.Remove(&q.h, t.idx)
	return t
}

// popDue removes and returns the earliest timer if its time is <= limit.
func (q *timerQueue) popDue(limit int64) (*timer, bool) {
	if len(q.h) == 0 || q.h[0].ts > limit {
		return nil, false
	}
	t := heap.Pop(&q.h).(*timer)
	delete(q.set, t.timerKey)
	return t, true
}

// timerAdded marks a timer registered by the operator dirty.
func (s *KeyedState) timerAdded(t *timer, ref entryRef) {
	if s.track {
		t.epoch, t.fresh = s.epoch, s.fresh(ref)
		s.dirty[ref] = timerSet
	}
}

// timerGone marks a timer deleted or fired: a delete entry, or nothing
// when it was fresh in this epoch.
func (s *KeyedState) timerGone(t *timer, ref entryRef) {
	if t.fresh && t.epoch == s.epoch {
		delete(s.dirty, ref)
		return
	}
	s.markDeleted(ref)
}

// RegisterEventTimer registers an event-time timer at ts for the current
// key: AdvanceWatermark fires it once the watermark reaches ts.
// Registering the same (key, ts) twice is one timer.
func (s *KeyedState) RegisterEventTimer(ts int64) {
	if t := s.event.add(s.key, ts); t != nil {
		s.timerAdded(t, entryRef{st: s.eventCore, key: s.key, ts: ts})
	}
}

// DeleteEventTimer deletes the event-time timer at ts of the current key,
// if there is one.
func (s *KeyedState) DeleteEventTimer(ts int64) {
	if t := s.event.remove(s.key, ts); t != nil {
		s.timerGone(t, entryRef{st: s.eventCore, key: s.key, ts: ts})
	}
}

// RegisterProcessingTimer registers a processing-time timer at ts
// (milliseconds) for the current key: AdvanceProcessingTime fires it once
// the time reaches ts. Registering the same (key, ts) twice is one timer.
func (s *KeyedState) RegisterProcessingTimer(ts int64) {
	if t := s.proc.add(s.key, ts); t != nil {
		s.timerAdded(t, entryRef{st: s.procCore, key: s.key, ts: ts})
	}
}

// DeleteProcessingTimer deletes the processing-time timer at ts of the
// current key, if there is one.
func (s *KeyedState) DeleteProcessingTimer(ts int64) {
	if t := s.proc.remove(s.key, ts); t != nil {
		s.timerGone(t, entryRef{st: s.procCore, key: s.key, ts: ts})
	}
}

// AdvanceWatermark remembers wm as the watermark (Watermark; it never goes
// back) and fires every event-time timer with a time <= wm, in time
// order, ties by key: each timer is deleted, the current key set to its
// key, then fire is called. A timer that a fire call registers with a time
// <= wm fires in the same call; one that re-registers the very timer being
// fired is an error (it would fire forever). A fire error stops the
// advance and is returned; the timers not fired yet stay. The current key
// is set back to what it was before the call. A nil fire just deletes the
// timers. fire must not advance the timers itself.
func (s *KeyedState) AdvanceWatermark(wm int64, fire func(key string, ts int64) error) error {
	if s.firing {
		return errors.New("operator: AdvanceWatermark called from a fire call")
	}
	if wm > s.wm {
		s.wm = wm
	}
	return s.advance(&s.event, s.eventCore, wm, fire)
}

// AdvanceProcessingTime fires every processing-time timer with a time <=
// now, as AdvanceWatermark does for event time.
func (s *KeyedState) AdvanceProcessingTime(now int64, fire func(key string, ts int64) error) error {
	if s.firing {
		return errors.New("operator: AdvanceProcessingTime called from a fire call")
	}
	return s.advance(&s.proc, s.procCore, now, fire)
}

func (s *KeyedState) advance(q *timerQueue, core *stateCore, limit int64, fire func(key string, ts int64) error) error {
	s.firing = true
	prev := s.key
	defer func() {
		s.firing = false
		s.key = prev
	}()
	for {
		t, ok := q.popDue(limit)
		if !ok {
			return nil
		}
		s.timerGone(t, entryRef{st: core, key: t.key, ts: t.ts})
		if fire == nil {
			continue
		}
		s.key = t.key
		if err := fire(t.key, t.ts); err != nil {
			return err
		}
		if _, again := q.set[t.timerKey]; again {
			return fmt.Errorf("operator: the %s at %d of key %q was registered again by its own fire call", kindName(core.kind), t.ts, t.key)
		}
	}
}

// NextProcessingTimer returns the time of the earliest processing-time
// timer; ok is false when there is none.
func (s *KeyedState) NextProcessingTimer() (ts int64, ok bool) {
	if len(s.proc.h) == 0 {
		return 0, false
	}
	return s.proc.h[0].ts, true
}

// Watermark returns the highest watermark passed to AdvanceWatermark,
// math.MinInt64 before any.
func (s *KeyedState) Watermark() int64 { return s.wm }
