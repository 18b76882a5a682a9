package window

import (
	"flag"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/weirstream/weir/operator"
	"github.com/weirstream/weir/operator/optest"
)

var keyedSeed = flag.Int64("window-seed", 0, "seed of TestKeyedMatchesModel to replay (0: a fresh one)")

func TestAssignerWindows(t *testing.T) {
	for _, tc := range []struct {
		a    Assigner
		ts   int64
		want []TimeWindow
	}{
		{TumblingAssigner(10, 0), 25, []TimeWindow{{20, 30}}},
		{TumblingAssigner(10, 0), -5, []TimeWindow{{-10, 0}}},
		{TumblingAssigner(10, 3), 25, []TimeWindow{{23, 33}}},
		{TumblingAssigner(10, -3), 25, []TimeWindow{{17, 27}}},
		{TumblingAssigner(10, 3), 22, []TimeWindow{{13, 23}}},
		{SlidingAssigner(10, 5, 0), 12, []TimeWindow{{10, 20}, {5, 15}}},
		{SlidingAssigner(10, 5, 0), 10, []TimeWindow{{10, 20}, {5, 15}}},
		{SlidingAssigner(10, 3, 1), 12, []TimeWindow{{10, 20}, {7, 17}, {4, 14}}},
		{SessionAssigner(7), 12, []TimeWindow{{12, 19}}},
	} {
		if got := tc.a.Assign(tc.ts, nil); !slices.Equal(got, tc.want) {
			t.Errorf("%s.Assign(%d) = %v, want %v", tc.a, tc.ts, got, tc.want)
		}
	}
}

// Timestamps at the ends of int64 give windows that hold them, without
// wrapping around.
func TestAssignerNoOverflow(t *testing.T) {
	for _, a := range []Assigner{TumblingAssigner(1000, 0), TumblingAssigner(1000, 999), SlidingAssigner(1000, 10, 0), SessionAssigner(1000)} {
		for _, ts := range []int64{math.MaxInt64, math.MaxInt64 - 1, math.MinInt64, math.MinInt64 + 1} {
			ws := a.Assign(ts, nil)
			if len(ws) == 0 {
				t.Errorf("%s.Assign(%d): no window", a, ts)
			}
			for _, w := range ws {
				if w.Start > ts || w.End < ts || w.End <= w.Start {
					t.Errorf("%s.Assign(%d) = %v: does not hold it", a, ts, w)
				}
			}
		}
	}
}

func TestAssignerValidate(t *testing.T) {
	for _, a := range []Assigner{TumblingAssigner(0, 0), TumblingAssigner(10, 10), SlidingAssigner(10, 0, 0),
		SlidingAssigner(10, 5, -5), SlidingAssigner(100_000, 1, 0), SessionAssigner(0), {Kind: "hopping"}} {
		if err := a.Validate(); err == nil {
			t.Errorf("%s: Validate = nil, want an error", a)
		}
	}
}

// acc is the test aggregate: count and integer sum (exact, whatever the
// order of adds and merges).
type acc struct{ Count, Sum int64 }

var testAgg = Aggregator[int64, acc]{
	Create: func() acc { return acc{} },
	Add:    func(a acc, v int64) acc { return acc{a.Count + 1, a.Sum + v} },
	Merge:  func(a, b acc) acc { return acc{a.Count + b.Count, a.Sum + b.Sum} },
}

type emission struct {
	key string
	w   TimeWindow
	acc acc
}

func (e emission) String() string {
	return fmt.Sprintf("%s[%d,%d)=%d/%d", e.key, e.w.Start, e.w.End, e.acc.Count, e.acc.Sum)
}

// step is one input of a generated run: a record or a watermark.
type step struct {
	wm    bool
	ts    int64
	key   string
	v     int64
	crash bool // checkpoint here, go on, then crash and replay from it
}

// genSteps generates records of a few keys with event time advancing
// slowly and out of order, some very late, and watermarks that trail.
func genSteps(rng *rand.Rand, n int) []step {
	var steps []step
	now, wm := int64(1000), int64(0)
	for i := 0; i < n; i++ {
		now += int64(rng.Intn(4))
		switch r := rng.Intn(100); {
		case r < 12:
			if cand := now - int64(rng.Intn(30)); cand > wm {
				wm = cand
				steps = append(steps, step{wm: true, ts: wm})
			}
		case r < 14:
			steps = append(steps, step{crash: true})
		default:
			ts := now - int64(rng.Intn(40))
			if rng.Intn(20) == 0 {
				ts -= int64(rng.Intn(200)) // late beyond any lateness
			}
			steps = append(steps, step{ts: ts, key: fmt.Sprintf("k%d", rng.Intn(4)), v: int64(rng.Intn(100))})
		}
	}
	return append(steps, step{wm: true, ts: math.MaxInt64})
}

// model is the naive window semantics: the values themselves per key and
// window, windows found by brute force.
type model struct {
	a        Assigner
	lateness int64
	wm       int64
	wins     map[string]map[TimeWindow][]int64
	out      []emission
	late     []int64
}

func newModel(a Assigner, lateness int64) *model {
	return &model{a: a, lateness: lateness, wm: math.MinInt64, wins: map[string]map[TimeWindow][]int64{}}
}

func (m *model) fold(vs []int64) acc {
	var a acc
	for _, v := range vs {
		a.Count++
		a.Sum += v
	}
	return a
}

// windowsOf lists the windows holding ts by trying every start.
func (m *model) windowsOf(ts int64) []TimeWindow {
	var out []TimeWindow
	switch m.a.Kind {
	case KindTumbling, KindSliding:
		step := m.a.Size
		if m.a.Kind == KindSliding {
			step = m.a.Slide
		}
		for s := ts - m.a.Size - step; s <= ts; s++ {
			if ((s-m.a.Offset)%step+step)%step == 0 && s <= ts && ts < s+m.a.Size {
				out = append(out, TimeWindow{s, s + m.a.Size})
			}
		}
	}
	return out
}

func (m *model) element(key string, ts, v int64) {
	ws := m.wins[key]
	if ws == nil {
		ws = map[TimeWindow][]int64{}
		m.wins[key] = ws
	}
	if m.a.Kind == KindSession {
		cover := TimeWindow{ts, ts + m.a.Gap}
		var parts []TimeWindow
		for w := range ws {
			if w.Start <= ts+m.a.Gap && ts <= w.End {
				parts = append(parts, w)
				cover = TimeWindow{min(cover.Start, w.Start), max(cover.End, w.End)}
			}
		}
		if cover.End-1+m.lateness <= m.wm {
			m.late = append(m.late, v)
			return
		}
		var vs []int64
		for _, w := range parts {
			vs = append(vs, ws[w]...)
			delete(ws, w)
		}
		ws[cover] = append(vs, v)
		if cover.End-1 <= m.wm {
			m.out = append(m.out, emission{key, cover, m.fold(ws[cover])})
		}
		return
	}
	accepted := false
	for _, w := range m.windowsOf(ts) {
		if w.End-1+m.lateness <= m.wm {
			continue
		}
		accepted = true
		ws[w] = append(ws[w], v)
		if w.End-1 <= m.wm {
			m.out = append(m.out, emission{key, w, m.fold(ws[w])})
		}
	}
	if !accepted {
		m.late = append(m.late, v)
	}
}

func (m *model) watermark(wm int64) {
	if wm <= m.wm {
		return
	}
	for key, ws := range m.wins {
		for w, vs := range ws {
			if w.End-1 > m.wm && w.End-1 <= wm {
				m.out = append(m.out, emission{key, w, m.fold(vs)})
			}
			if w.End-1+m.lateness <= wm {
				delete(ws, w)
			}
		}
	}
	m.wm = wm
}

// run is the operator under test with its state backend, rebuilt from a
// capture on a crash.
type run struct {
	t     *testing.T
	cfg   Config[int64, acc]
	st    *operator.KeyedState
	op    *Keyed[int64, acc]
	out   []emission
	late  []int64
	store optest.Store
}

func newRun(t *testing.T, cfg Config[int64, acc]) *run {
	r := &run{t: t, cfg: cfg, store: optest.Store{}}
	r.open(nil, math.MinInt64)
	return r
}

func (r *run) open(it operator.Iter, wm int64) {
	r.st = operator.NewKeyedState(operator.KeyedStateConfig{Track: true, Now: func() int64 { return 0 }})
	if err := r.st.Restore(it); err != nil {
		r.t.Fatal(err)
	}
	op, err := NewKeyed(r.st, r.cfg, func(key string, w TimeWindow, a acc) error {
		r.out = append(r.out, emission{key, w, a})
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.op = op
	if wm != math.MinInt64 {
		if err := r.st.AdvanceWatermark(wm, nil); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *run) do(s step) {
	if s.wm {
		if err := r.st.AdvanceWatermark(s.ts, r.op.Timer); err != nil {
			r.t.Fatal(err)
		}
		return
	}
	r.st.SetCurrentKey(s.key)
	late, err := r.op.Element(s.ts, s.v)
	if err != nil {
		r.t.Fatal(err)
	}
	if late {
		r.late = append(r.late, s.v)
	}
}

// checkpoint applies a capture to the store and returns what a restore
// needs: the store's state and the watermark.
func (r *run) checkpoint() (snap optest.Store, wm int64, nOut, nLate int) {
	es, err := r.st.Capture()()
	if err != nil {
		r.t.Fatal(err)
	}
	r.store.Apply(es)
	return r.store.Clone(), r.st.Watermark(), len(r.out), len(r.late)
}

// restore goes back to a checkpoint: its state, and only the output
// committed up to it (exactly once).
func (r *run) restore(snap optest.Store, wm int64, nOut, nLate int) {
	r.store = snap
	r.out, r.late = r.out[:nOut], r.late[:nLate]
	r.open(snap.Iter(), wm)
}

// TestKeyedMatchesModel runs random out-of-order streams through every
// window kind, with and without allowed lateness, and compares the fired
// results and the late values with the naive model. At random points the
// operator checkpoints, goes on for a while, then crashes: it is rebuilt
// from the checkpoint (its output since then discarded, as an
// exactly-once sink aborts it) and the input is replayed from there.
func TestKeyedMatchesModel(t *testing.T) {
	seed := *keyedSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay: go test ./operator/window -run TestKeyedMatchesModel -window-seed %d)", seed, seed)
	rng := rand.New(rand.NewSource(seed))
	assigners := []Assigner{TumblingAssigner(10, 0), TumblingAssigner(10, 4), SlidingAssigner(20, 5, 0),
		SlidingAssigner(15, 10, -3), SessionAssigner(6), SessionAssigner(15)}
	for round := 0; round < 20; round++ {
		for _, a := range assigners {
			for _, lateness := range []int64{0, 25} {
				steps := genSteps(rng, 400)
				m := newModel(a, lateness)
				r := newRun(t, Config[int64, acc]{Assigner: a, Agg: testAgg, AccCodec: operator.JSONCodec[acc](), Lateness: lateness, Name: "w"})
				for i := 0; i < len(steps); i++ {
					s := steps[i]
					if s.crash {
						snap, wm, nOut, nLate := r.checkpoint()
						// Go on for a while, then crash and replay.
						j := min(len(steps)-1, i+1+rng.Intn(30))
						for _, s2 := range steps[i+1 : j] {
							if !s2.crash {
								r.do(s2)
							}
						}
						r.restore(snap, wm, nOut, nLate)
						continue
					}
					r.do(s)
					if s.wm {
						m.watermark(s.ts)
					} else {
						m.element(s.key, s.ts, s.v)
					}
				}
				compare(t, fmt.Sprintf("seed %d round %d %s lateness %d", seed, round, a, lateness), r, m)
				if t.Failed() {
					return
				}
			}
		}
	}
}

func compare(t *testing.T, what string, r *run, m *model) {
	t.Helper()
	sortE := func(es []emission) []string {
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = e.String()
		}
		sort.Strings(out)
		return out
	}
	got, want := sortE(r.out), sortE(m.out)
	if !slices.Equal(got, want) {
		for i := 0; i < max(len(got), len(want)); i++ {
			var g, w string
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Errorf("%s: %d results, model %d; first difference at %d: got %q, model %q", what, len(got), len(want), i, g, w)
				return
			}
		}
	}
	gl, wl := slices.Clone(r.late), slices.Clone(m.late)
	slices.Sort(gl)
	slices.Sort(wl)
	if !slices.Equal(gl, wl) {
		t.Errorf("%s: late values %v, model %v", what, gl, wl)
	}
	if len(m.out) == 0 {
		t.Errorf("%s: the model fired nothing: the generator tests nothing", what)
	}
}
