package operator

import (
	"cmp"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var seedFlag = flag.Int64("seed", 0, "replay TestModel with this seed (0: 50 new seeds)")

// TestModel runs random operations on a KeyedState and on a plain model of
// it, checking reads against the model as it goes. It captures after every
// step and runs the captured functions later, in order, applying their
// entries to a fake store; at the end it restores a fresh KeyedState from
// the store and checks that it shows the same states and timers.
func TestModel(t *testing.T) {
	seeds := []int64{*seedFlag}
	if *seedFlag == 0 {
		base := time.Now().UnixNano()
		seeds = seeds[:0]
		for i := range int64(50) {
			seeds = append(seeds, base+i)
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d; replay with: go test ./operator/ -run TestModel -seed=%d", seed, seed)
			runModel(t, seed, 200)
		})
	}
}

var modelKeys = []string{"", "a", "b", "acct-7", "ключ", "x\x00y"}

const (
	ttlVT = 50 // ms
	ttlMT = 30
	ttlLT = 40
)

// harness is a KeyedState with the model test's states registered.
type harness struct {
	s     *KeyedState
	v     *ValueState[int64]
	vt    *ValueState[string]
	m     *MapState[string, int64]
	mt    *MapState[int64, string]
	l     *ListState[string]
	lt    *ListState[int64]
	fired *ValueState[int]
}

// newHarness builds a harness; with it not nil it restores from it,
// before or after registering the states.
func newHarness(t *testing.T, now func() int64, it Iter, restoreFirst bool) *harness {
	t.Helper()
	h := &harness{s: NewKeyedState(KeyedStateConfig{Track: true, Now: now})}
	restore := func() {
		if it != nil {
			if err := h.s.Restore(it); err != nil {
				t.Fatalf("Restore: %v", err)
			}
		}
	}
	if restoreFirst {
		restore()
	}
	var err error
	reg := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}
	h.v, err = Value(h.s, "v", Int64Codec())
	reg(err)
	var e error
	h.vt, e = Value(h.s, "vt", StringCodec(), WithTTL(ttlVT*time.Millisecond))
	reg(e)
	h.m, e = Map(h.s, "m", StringCodec(), Int64Codec())
	reg(e)
	h.mt, e = Map(h.s, "mt", Int64Codec(), JSONCodec[string](), WithTTL(ttlMT*time.Millisecond))
	reg(e)
	h.l, e = List(h.s, "l", StringCodec())
	reg(e)
	h.lt, e = List(h.s, "lt", Int64Codec(), WithTTL(ttlLT*time.Millisecond))
	reg(e)
	h.fired, e = Value(h.s, "fired", IntCodec())
	reg(e)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if !restoreFirst {
		restore()
	}
	return h
}

// dump renders everything visible in h, for every model key.
func (h *harness) dump() []string {
	s := h.s
	prev := s.CurrentKey()
	defer s.SetCurrentKey(prev)
	var out []string
	for _, k := range modelKeys {
		s.SetCurrentKey(k)
		if x, ok := h.v.Value(); ok {
			out = append(out, fmt.Sprintf("%q v=%d", k, x))
		}
		if x, ok := h.vt.Value(); ok {
			out = append(out, fmt.Sprintf("%q vt=%q", k, x))
		}
		if x, ok := h.fired.Value(); ok {
			out = append(out, fmt.Sprintf("%q fired=%d", k, x))
		}
		if h.m.Len() > 0 {
			out = append(out, fmt.Sprintf("%q m=%v", k, maps.Collect(h.m.All())))
		}
		if h.mt.Len() > 0 {
			out = append(out, fmt.Sprintf("%q mt=%v", k, maps.Collect(h.mt.All())))
		}
		if xs := h.l.Get(); xs != nil {
			out = append(out, fmt.Sprintf("%q l=%q", k, xs))
		}
		if xs := h.lt.Get(); xs != nil {
			out = append(out, fmt.Sprintf("%q lt=%v", k, xs))
		}
	}
	for tk := range s.event.set {
		out = append(out, fmt.Sprintf("event %q@%d", tk.key, tk.ts))
	}
	for tk := range s.proc.set {
		out = append(out, fmt.Sprintf("proc %q@%d", tk.key, tk.ts))
	}
	slices.Sort(out)
	return out
}

// refEntry is a value of the model with its expiry time.
type refEntry struct {
	v   any
	exp int64
}

// model is the plain model of a harness: Go maps, no copy-on-write, no
// heaps.
type model struct {
	now    *int64
	key    string
	ttl    map[string]int64
	vals   map[string]map[string]refEntry         // state, key (values and lists)
	maps   map[string]map[string]map[any]refEntry // state, key, map key
	timers [2]map[timerKey]bool                   // event, processing
}

func newModel(now *int64) *model {
	r := &model{
		now:  now,
		ttl:  map[string]int64{"vt": ttlVT, "mt": ttlMT, "lt": ttlLT},
		vals: map[string]map[string]refEntry{},
		maps: map[string]map[string]map[any]refEntry{},
	}
	for _, n := range []string{"v", "vt", "l", "lt", "fired"} {
		r.vals[n] = map[string]refEntry{}
	}
	for _, n := range []string{"m", "mt"} {
		r.maps[n] = map[string]map[any]refEntry{}
	}
	r.timers[0] = map[timerKey]bool{}
	r.timers[1] = map[timerKey]bool{}
	return r
}

func (r *model) live(state string, e refEntry) bool {
	return r.ttl[state] == 0 || e.exp > *r.now
}

func (r *model) get(state string) (any, bool) {
	e, ok := r.vals[state][r.key]
	if !ok || !r.live(state, e) {
		return nil, false
	}
	return e.v, true
}

func (r *model) set(state string, v any) {
	r.vals[state][r.key] = refEntry{v, *r.now + r.ttl[state]}
}

func (r *model) clear(state string) { delete(r.vals[state], r.key) }

func (r *model) add(state string, x any) {
	var xs []any
	if old, ok := r.get(state); ok {
		xs = slices.Clone(old.([]any))
	}
	r.set(state, append(xs, x))
}

func (r *model) mapOf(state string) map[any]any {
	out := map[any]any{}
	for k, e := range r.maps[state][r.key] {
		if r.live(state, e) {
			out[k] = e.v
		}
	}
	return out
}

func (r *model) put(state string, k, v any) {
	inner := r.maps[state][r.key]
	if inner == nil {
		inner = map[any]refEntry{}
		r.maps[state][r.key] = inner
	}
	inner[k] = refEntry{v, *r.now + r.ttl[state]}
}

// dump renders the model as harness.dump does.
func (r *model) dump() []string {
	prev := r.key
	defer func() { r.key = prev }()
	var out []string
	for _, k := range modelKeys {
		r.key = k
		if x, ok := r.get("v"); ok {
			out = append(out, fmt.Sprintf("%q v=%d", k, x))
		}
		if x, ok := r.get("vt"); ok {
			out = append(out, fmt.Sprintf("%q vt=%q", k, x))
		}
		if x, ok := r.get("fired"); ok {
			out = append(out, fmt.Sprintf("%q fired=%d", k, x))
		}
		if m := r.mapOf("m"); len(m) > 0 {
			typed := map[string]int64{}
			for k, v := range m {
				typed[k.(string)] = v.(int64)
			}
			out = append(out, fmt.Sprintf("%q m=%v", k, typed))
		}
		if m := r.mapOf("mt"); len(m) > 0 {
			typed := map[int64]string{}
			for k, v := range m {
				typed[k.(int64)] = v.(string)
			}
			out = append(out, fmt.Sprintf("%q mt=%v", k, typed))
		}
		if x, ok := r.get("l"); ok {
			var xs []string
			for _, e := range x.([]any) {
				xs = append(xs, e.(string))
			}
			out = append(out, fmt.Sprintf("%q l=%q", k, xs))
		}
		if x, ok := r.get("lt"); ok {
			var xs []int64
			for _, e := range x.([]any) {
				xs = append(xs, e.(int64))
			}
			out = append(out, fmt.Sprintf("%q lt=%v", k, xs))
		}
	}
	for tk := range r.timers[0] {
		out = append(out, fmt.Sprintf("event %q@%d", tk.key, tk.ts))
	}
	for tk := range r.timers[1] {
		out = append(out, fmt.Sprintf("proc %q@%d", tk.key, tk.ts))
	}
	slices.Sort(out)
	return out
}

// next removes and returns the model's earliest timer of domain d due at
// limit.
func (r *model) next(d int, limit int64) (timerKey, bool) {
	var best timerKey
	found := false
	for tk := range r.timers[d] {
		if tk.ts > limit {
			continue
		}
		if !found || cmp.Or(cmp.Compare(tk.ts, best.ts), strings.Compare(tk.key, best.key)) < 0 {
			best, found = tk, true
		}
	}
	if found {
		delete(r.timers[d], best)
	}
	return best, found
}

func diff(a, b []string) string {
	var sb strings.Builder
	for _, x := range a {
		if !slices.Contains(b, x) {
			fmt.Fprintf(&sb, "  - %s\n", x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			fmt.Fprintf(&sb, "  + %s\n", x)
		}
	}
	return sb.String()
}

// fireAction is what a fire call did, so every harness does the same.
type fireAction struct {
	tk     timerKey
	choice int
	next   int64
}

// modelRun drives harnesses and the model through the same operations.
type modelRun struct {
	t           *testing.T
	rng         *rand.Rand
	now         int64
	wm, procNow int64
	r           *model
	hs          []*harness
	stores      []memStore
	pending     [][]func() ([]Entry, error)
	step        int
}

// each applies op to every harness.
func (mr *modelRun) each(op func(h *harness)) {
	for _, h := range mr.hs {
		op(h)
	}
}

// flush runs the pending captured functions of harness i, in order, and
// applies their entries to its store.
func (mr *modelRun) flush(i int) {
	t := mr.t
	for _, f := range mr.pending[i] {
		es := run(t, f)
		for _, e := range es {
			sk, err := parseStoreKey(e.Key)
			if err != nil {
				t.Fatalf("entry %q: %v", e.Key, err)
			}
			if sk.kg != KeyGroup(sk.key) {
				t.Fatalf("entry %q: key group %d, want %d", e.Key, sk.kg, KeyGroup(sk.key))
			}
		}
		mr.stores[i].apply(es)
	}
	mr.pending[i] = mr.pending[i][:0]
}

// capture captures every harness, running the functions now or later.
func (mr *modelRun) capture() {
	for i, h := range mr.hs {
		mr.pending[i] = append(mr.pending[i], h.s.Capture())
		if mr.rng.IntN(3) == 0 {
			mr.flush(i)
		}
	}
}

// add adds a harness, with its store and no captures pending.
func (mr *modelRun) add(h *harness, store memStore) {
	mr.hs = append(mr.hs, h)
	mr.stores = append(mr.stores, store)
	mr.pending = append(mr.pending, nil)
}

// compare checks that every harness shows what the model holds.
func (mr *modelRun) compare(when string) {
	mr.t.Helper()
	want := mr.r.dump()
	for i, h := range mr.hs {
		if got := h.dump(); !slices.Equal(got, want) {
			mr.t.Fatalf("%s: harness %d differs from the model:\n%s", when, i, diff(want, got))
		}
	}
}

func (mr *modelRun) fail(format string, args ...any) {
	mr.t.Helper()
	mr.t.Fatalf("step %d: %s", mr.step, fmt.Sprintf(format, args...))
}

// advance advances time domain d (0 event, 1 processing) to limit on
// every harness. The first one's fire calls are checked against the
// model and decide what each fire call does; the others must fire the
// same timers in the same order and do the same.
func (mr *modelRun) advance(d int, limit int64) {
	r, rng := mr.r, mr.rng
	var script []fireAction
	for i, h := range mr.hs {
		pos := 0
		var ferr error
		fire := func(key string, ts int64) error {
			tk := timerKey{ts, key}
			var a fireAction
			if i == 0 {
				want, ok := r.next(d, limit)
				if !ok || want != tk {
					ferr = fmt.Errorf("fired %q@%d, the model's next is %q@%d (%v)", key, ts, want.key, want.ts, ok)
					return ferr
				}
				a = fireAction{tk: tk, choice: rng.IntN(4), next: ts + 1 + int64(rng.IntN(4))}
				script = append(script, a)
				r.key = key
				n, _ := r.get("fired")
				c, _ := n.(int)
				r.set("fired", c+1)
				switch a.choice {
				case 0:
					r.timers[d][timerKey{a.next, key}] = true
				case 1:
					r.add("l", fmt.Sprintf("f%d", ts))
				case 2:
					delete(r.maps["m"][key], "k1")
				}
			} else {
				if pos >= len(script) || script[pos].tk != tk {
					ferr = fmt.Errorf("harness %d fired %q@%d as its fire call %d; harness 0 fired %v", i, key, ts, pos, script)
					return ferr
				}
				a = script[pos]
				pos++
			}
			c, _ := h.fired.Value()
			h.fired.Update(c + 1)
			switch a.choice {
			case 0:
				if d == 0 {
					h.s.RegisterEventTimer(a.next)
				} else {
					h.s.RegisterProcessingTimer(a.next)
				}
			case 1:
				h.l.Add(fmt.Sprintf("f%d", ts))
			case 2:
				h.m.Remove("k1")
			}
			return nil
		}
		prev := h.s.CurrentKey()
		var err error
		if d == 0 {
			err = h.s.AdvanceWatermark(limit, fire)
		} else {
			err = h.s.AdvanceProcessingTime(limit, fire)
		}
		if err != nil {
			mr.fail("harness %d: advance %d to %d: %v", i, d, limit, err)
		}
		if i > 0 && pos != len(script) {
			mr.fail("harness %d fired %d timers, harness 0 %d", i, pos, len(script))
		}
		if h.s.CurrentKey() != prev {
			mr.fail("harness %d: current key %q after the advance, was %q", i, h.s.CurrentKey(), prev)
		}
		if d == 0 && h.s.Watermark() != limit {
			mr.fail("harness %d: Watermark() = %d, want %d", i, h.s.Watermark(), limit)
		}
		if d == 1 {
			var want int64
			for tk := range r.timers[1] {
				if want == 0 || tk.ts < want {
					want = tk.ts
				}
			}
			if ts, ok := h.s.NextProcessingTimer(); ok != (len(r.timers[1]) > 0) || ok && ts != want {
				mr.fail("harness %d: NextProcessingTimer() = %d, %v; model %d", i, ts, ok, want)
			}
		}
	}
	if tk, ok := r.next(d, limit); ok {
		mr.fail("timer %q@%d of domain %d not fired at %d", tk.key, tk.ts, d, limit)
	}
}

// op runs one random operation on every harness and the model.
func (mr *modelRun) op() {
	r, rng := mr.r, mr.rng
	check := func(what string, got, want any) {
		mr.t.Helper()
		if !reflect.DeepEqual(got, want) {
			mr.fail("%s = %#v, model %#v", what, got, want)
		}
	}
	switch op := rng.IntN(26); op {
	case 0, 1:
		k := modelKeys[rng.IntN(len(modelKeys))]
		mr.each(func(h *harness) { h.s.SetCurrentKey(k) })
		r.key = k
	case 2:
		x := rng.Int64N(100) - 50
		mr.each(func(h *harness) { h.v.Update(x) })
		r.set("v", x)
	case 3:
		mr.each(func(h *harness) { h.v.Clear() })
		r.clear("v")
	case 4:
		x := fmt.Sprint(rng.IntN(10))
		mr.each(func(h *harness) { h.vt.Update(x) })
		r.set("vt", x)
	case 5:
		mr.each(func(h *harness) { h.vt.Clear() })
		r.clear("vt")
	case 6:
		k, x := fmt.Sprintf("k%d", rng.IntN(4)), rng.Int64()
		mr.each(func(h *harness) { h.m.Put(k, x) })
		r.put("m", k, x)
	case 7:
		k := fmt.Sprintf("k%d", rng.IntN(4))
		mr.each(func(h *harness) { h.m.Remove(k) })
		delete(r.maps["m"][r.key], k)
	case 8:
		mr.each(func(h *harness) { h.m.Clear() })
		delete(r.maps["m"], r.key)
	case 9:
		k, x := int64(rng.IntN(5)-2), strings.Repeat("s", rng.IntN(3))
		mr.each(func(h *harness) { h.mt.Put(k, x) })
		r.put("mt", k, x)
	case 10:
		k := int64(rng.IntN(5) - 2)
		mr.each(func(h *harness) { h.mt.Remove(k) })
		delete(r.maps["mt"][r.key], k)
	case 11:
		mr.each(func(h *harness) { h.mt.Clear() })
		delete(r.maps["mt"], r.key)
	case 12:
		x := fmt.Sprint(rng.IntN(100))
		mr.each(func(h *harness) { h.l.Add(x) })
		r.add("l", x)
	case 13:
		var xs []string
		var ref []any
		for range rng.IntN(3) {
			x := fmt.Sprint(rng.IntN(100))
			xs = append(xs, x)
			ref = append(ref, x)
		}
		mr.each(func(h *harness) { h.l.Update(xs) })
		if len(xs) == 0 {
			r.clear("l")
		} else {
			r.set("l", ref)
		}
	case 14:
		mr.each(func(h *harness) { h.l.Clear() })
		r.clear("l")
	case 15:
		x := rng.Int64N(10)
		mr.each(func(h *harness) { h.lt.Add(x) })
		r.add("lt", x)
	case 16:
		mr.each(func(h *harness) { h.lt.Clear() })
		r.clear("lt")
	case 17:
		ts := mr.wm + int64(rng.IntN(40)) - 5
		mr.each(func(h *harness) { h.s.RegisterEventTimer(ts) })
		r.timers[0][timerKey{ts, r.key}] = true
	case 18:
		ts := mr.wm + int64(rng.IntN(40)) - 5
		mr.each(func(h *harness) { h.s.DeleteEventTimer(ts) })
		delete(r.timers[0], timerKey{ts, r.key})
	case 19:
		ts := mr.procNow + int64(rng.IntN(40))
		mr.each(func(h *harness) { h.s.RegisterProcessingTimer(ts) })
		r.timers[1][timerKey{ts, r.key}] = true
	case 20:
		ts := mr.procNow + int64(rng.IntN(40))
		mr.each(func(h *harness) { h.s.DeleteProcessingTimer(ts) })
		delete(r.timers[1], timerKey{ts, r.key})
	case 21:
		mr.wm += int64(rng.IntN(20))
		prev := r.key
		mr.advance(0, mr.wm)
		r.key = prev
	case 22:
		mr.procNow += int64(rng.IntN(20))
		prev := r.key
		mr.advance(1, mr.procNow)
		r.key = prev
	case 23, 24:
		mr.now += int64(rng.IntN(25))
	case 25:
		// Reads of the current key, which delete what expired.
		k := int64(rng.IntN(5) - 2)
		y, ok := r.get("vt")
		_, in := r.mapOf("mt")[k]
		ys, _ := r.get("lt")
		for _, h := range mr.hs {
			x, ok2 := h.vt.Value()
			check("vt ok", ok2, ok)
			if ok {
				check("vt", x, y)
			}
			check("mt.Contains", h.mt.Contains(k), in)
			check("mt.Len", h.mt.Len(), len(r.mapOf("mt")))
			check("m.Len", h.m.Len(), len(r.mapOf("m")))
			check("lt len", len(h.lt.Get()), len(asSlice(ys)))
		}
	}
}

// runModel runs ops random operations on a KeyedState, capturing after
// some, then restores a second one from the store and checks it; then
// runs ops/4 more on both, and restores a third from the second's store.
func runModel(t *testing.T, seed int64, ops int) {
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>32^0x9e3779b9))
	mr := &modelRun{t: t, rng: rng, wm: -10}
	mr.now = int64(rng.IntN(1000))
	clock := func() int64 { return mr.now }
	mr.r = newModel(&mr.now)
	mr.add(newHarness(t, clock, nil, false), memStore{})

	phase := func(n int) {
		for range n {
			mr.op()
			if mr.step%20 == 19 {
				mr.compare(fmt.Sprintf("step %d", mr.step))
			}
			// Capture after one step in three, so an epoch holds several
			// changes: an entry created and deleted in it, deleted and
			// created again.
			if rng.IntN(3) == 0 {
				mr.capture()
			}
			mr.step++
		}
		mr.compare(fmt.Sprintf("step %d", mr.step))
	}
	// restore checks a KeyedState restored from the store of harness i.
	restore := func(i int) *harness {
		live := mr.hs[i].s.Len()
		mr.pending[i] = append(mr.pending[i], mr.hs[i].s.Capture())
		mr.flush(i)
		store := maps.Clone(mr.stores[i])
		h := newHarness(t, clock, store.iter(), rng.IntN(2) == 0)
		if n := h.s.Len(); n != live {
			t.Fatalf("step %d: restored Len() = %d, want %d", mr.step, n, live)
		}
		if es := run(t, h.s.Capture()); len(es) != 0 {
			t.Fatalf("step %d: the restore wrote %d entries", mr.step, len(es))
		}
		h.s.SetCurrentKey(mr.r.key)
		mr.add(h, store)
		mr.compare(fmt.Sprintf("step %d, restored", mr.step))
		return h
	}

	phase(ops)
	restore(0)
	phase(ops / 4)
	restore(1)
	// The expiry times came back: expire step by step on all three.
	for range 6 {
		mr.now += int64(rng.IntN(20))
		mr.compare(fmt.Sprintf("clock %d", mr.now))
	}
}
func asSlice(x any) []any {
	xs, _ := x.([]any)
	return xs
}
