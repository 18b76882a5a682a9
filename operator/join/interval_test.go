package join

import (
	"flag"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/weirstream/weir/operator"
	"github.com/weirstream/weir/operator/optest"
)

var joinSeed = flag.Int64("join-seed", 0, "seed of TestIntervalMatchesModel to replay (0: a fresh one)")

// step is one input of a generated run.
type step struct {
	wm, crash, right bool
	ts               int64
	key              string
	v                int64
}

func genSteps(rng *rand.Rand, n int) []step {
	var steps []step
	now, wm := int64(1000), int64(0)
	for i := 0; i < n; i++ {
		now += int64(rng.Intn(3))
		switch r := rng.Intn(100); {
		case r < 12:
			if c := now - int64(rng.Intn(25)); c > wm {
				wm = c
				steps = append(steps, step{wm: true, ts: wm})
			}
		case r < 14:
			steps = append(steps, step{crash: true})
		default:
			ts := now - int64(rng.Intn(30))
			steps = append(steps, step{ts: ts, key: fmt.Sprintf("k%d", rng.Intn(3)), v: int64(i), right: rng.Intn(2) == 0})
		}
	}
	return append(steps, step{wm: true, ts: math.MaxInt64})
}

type pair struct{ a, b, ts int64 }

type tv struct{ ts, v int64 }

// model is the naive interval join: the values of each side kept in
// lists until the watermark passes their cleanup time.
type model struct {
	lower, upper int64
	wm           int64
	left, right  map[string][]tv
	out          []pair
	late         []int64
}

func (m *model) cleanL(ts int64) int64 {
	if m.upper > 0 {
		return ts + m.upper
	}
	return ts
}

func (m *model) cleanR(ts int64) int64 {
	if m.lower < 0 {
		return ts - m.lower
	}
	return ts
}

func (m *model) element(s step) {
	if s.ts < m.wm {
		m.late = append(m.late, s.v)
		return
	}
	if s.right {
		for _, a := range m.left[s.key] {
			if a.ts+m.lower <= s.ts && s.ts <= a.ts+m.upper {
				m.out = append(m.out, pair{a.v, s.v, max(a.ts, s.ts)})
			}
		}
		m.right[s.key] = append(m.right[s.key], tv{s.ts, s.v})
		return
	}
	for _, b := range m.right[s.key] {
		if s.ts+m.lower <= b.ts && b.ts <= s.ts+m.upper {
			m.out = append(m.out, pair{s.v, b.v, max(s.ts, b.ts)})
		}
	}
	m.left[s.key] = append(m.left[s.key], tv{s.ts, s.v})
}

func (m *model) watermark(wm int64) {
	if wm <= m.wm {
		return
	}
	m.wm = wm
	for k, vs := range m.left {
		m.left[k] = slices.DeleteFunc(vs, func(x tv) bool { return m.cleanL(x.ts) <= wm })
	}
	for k, vs := range m.right {
		m.right[k] = slices.DeleteFunc(vs, func(x tv) bool { return m.cleanR(x.ts) <= wm })
	}
}

// run is the operator with its state, rebuilt from a capture on a crash.
type run struct {
	t            *testing.T
	lower, upper int64
	st           *operator.KeyedState
	op           *Interval[int64, int64]
	out          []pair
	late         []int64
	store        optest.Store
}

func (r *run) open(snap optest.Store, wm int64) {
	r.st = operator.NewKeyedState(operator.KeyedStateConfig{Track: true, Now: func() int64 { return 0 }})
	var it operator.Iter
	if snap != nil {
		it = snap.Iter()
	}
	if err := r.st.Restore(it); err != nil {
		r.t.Fatal(err)
	}
	op, err := NewInterval(r.st, r.lower, r.upper, operator.Int64Codec(), operator.Int64Codec(), func(a, b, ts int64) error {
		r.out = append(r.out, pair{a, b, ts})
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
	var late bool
	var err error
	if s.right {
		late, err = r.op.Right(s.ts, s.v)
	} else {
		late, err = r.op.Left(s.ts, s.v)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	if late {
		r.late = append(r.late, s.v)
	}
}

func (r *run) checkpoint() (optest.Store, int64, int, int) {
	es, err := r.st.Capture()()
	if err != nil {
		r.t.Fatal(err)
	}
	r.store.Apply(es)
	return r.store.Clone(), r.st.Watermark(), len(r.out), len(r.late)
}

// TestIntervalMatchesModel runs random out-of-order two-sided streams
// through the interval join with several bounds and compares the pairs
// (with their event times) and the late values with the naive model. At
// random points the join checkpoints, goes on, crashes, and is rebuilt
// from the checkpoint with the input replayed from there (its output
// since the checkpoint discarded, as an exactly-once sink aborts it).
func TestIntervalMatchesModel(t *testing.T) {
	seed := *joinSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay: go test ./operator/join -run TestIntervalMatchesModel -join-seed %d)", seed, seed)
	rng := rand.New(rand.NewSource(seed))
	for round := 0; round < 30; round++ {
		for _, b := range [][2]int64{{-10, 10}, {0, 0}, {5, 20}, {-20, -5}, {-3, 0}} {
			steps := genSteps(rng, 500)
			m := &model{lower: b[0], upper: b[1], wm: math.MinInt64, left: map[string][]tv{}, right: map[string][]tv{}}
			r := &run{t: t, lower: b[0], upper: b[1], store: optest.Store{}}
			r.open(nil, math.MinInt64)
			for i, s := range steps {
				if s.crash {
					snap, wm, nOut, nLate := r.checkpoint()
					for _, s2 := range steps[i+1 : min(len(steps)-1, i+1+rng.Intn(30))] {
						if !s2.crash {
							r.do(s2)
						}
					}
					r.out, r.late = r.out[:nOut], r.late[:nLate]
					r.store = snap
					r.open(snap, wm)
					continue
				}
				r.do(s)
				if s.wm {
					m.watermark(s.ts)
				} else {
					m.element(s)
				}
			}
			what := fmt.Sprintf("seed %d round %d bounds [%d,%d]", seed, round, b[0], b[1])
			cmp := func(x, y pair) int {
				if x.a != y.a {
					return int(x.a - y.a)
				}
				if x.b != y.b {
					return int(x.b - y.b)
				}
				return int(x.ts - y.ts)
			}
			got, want := slices.Clone(r.out), slices.Clone(m.out)
			slices.SortFunc(got, cmp)
			slices.SortFunc(want, cmp)
			if !slices.Equal(got, want) {
				t.Fatalf("%s: %d pairs, model %d\n got %v\nwant %v", what, len(got), len(want), got, want)
			}
			gl, wl := slices.Clone(r.late), slices.Clone(m.late)
			slices.Sort(gl)
			slices.Sort(wl)
			if !slices.Equal(gl, wl) {
				t.Fatalf("%s: late %v, model %v", what, gl, wl)
			}
			if len(want) == 0 {
				t.Fatalf("%s: the model joined nothing: the generator tests nothing", what)
			}
		}
	}
}
