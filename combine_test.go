package weir

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/operator"
	"github.com/weirstream/weir/operator/window"
)

var combineSeed = flag.Uint64("combine.seed", 0, "seed of TestCombineDecoderMatchesOneByOne (0: from the clock)")

// TestCombineDecoderMatchesOneByOne feeds random polls (few and many keys,
// records across windows and late ones, records the source refuses) to
// the combining decoder and window.Tumbling.AddN, and the same records
// one by one to Tumbling.Add: every fired result and the late count must
// be the same, and each poll's record count must be the records kept.
func TestCombineDecoderMatchesOneByOne(t *testing.T) {
	seed := *combineSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test -run TestCombineDecoderMatchesOneByOne -combine.seed %d .)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	extract := actors.JSONExtractor("user", "ts", "amount")
	for _, keys := range []int{1, 7, 1000, 100000} {
		t.Run(fmt.Sprintf("keys=%d", keys), func(t *testing.T) {
			const size = 1000
			d := newCombineDecoder(extract, size)
			combined, oneByOne := window.NewTumbling(size, true), window.NewTumbling(size, true)
			var got, want []window.Result
			var lateGot, lateWant int64
			ts := int64(1_700_000_000_000)
			wm := int64(-1 << 62)
			for poll := 0; poll < 60; poll++ {
				n := rng.IntN(5000)
				if poll%10 == 0 {
					n = rng.IntN(4) // small polls too
				}
				kept := 0
				for i := 0; i < n; i++ {
					ts += rng.Int64N(3)
					rts := ts - rng.Int64N(1500) // out of order, some late
					v := []byte(`{"user":"u` + strconv.Itoa(rng.IntN(keys)) + `","ts":` + strconv.FormatInt(rts, 10) + `,"amount":` + strconv.Itoa(rng.IntN(100)) + `}`)
					got, err := d.Decode(nil, v, 0, 0, 0)
					if err != nil || got != rts {
						t.Fatalf("decode %s: ts %d, %v", v, got, err)
					}
					if rng.IntN(50) == 0 {
						continue // refused by the source: not kept
					}
					d.Keep()
					kept++
					key, _, amount, _ := extract(v)
					if !oneByOne.Add(string(key), rts, amount) {
						lateWant++
					}
				}
				data, count := d.Take()
				recs := data.([]operator.Rec[partial])
				if count != kept {
					t.Fatalf("poll %d: Take counts %d records, %d kept", poll, count, kept)
				}
				var folded int64
				for _, r := range recs {
					folded += r.V.n
					if !combined.AddN(r.Key, r.TS, r.V.n, r.V.sum) {
						lateGot += r.V.n
					}
				}
				if folded != int64(kept) {
					t.Fatalf("poll %d: partials fold %d records, %d kept", poll, folded, kept)
				}
				// A poll spans a few windows (and late records older ones):
				// few keys fold into a few partials per window.
				if keys <= 7 && kept >= 1000 && len(recs) > kept/10 {
					t.Fatalf("poll %d: %d partials of %d records over %d keys: not folded", poll, len(recs), kept, keys)
				}
				if rng.IntN(3) == 0 {
					wm = ts - 600
					combined.Fire(wm, func(r window.Result) { got = append(got, r) })
					oneByOne.Fire(wm, func(r window.Result) { want = append(want, r) })
				}
			}
			combined.Fire(1<<62, func(r window.Result) { got = append(got, r) })
			oneByOne.Fire(1<<62, func(r window.Result) { want = append(want, r) })
			order := func(a, b window.Result) int {
				if a.Start != b.Start {
					return int(a.Start - b.Start)
				}
				if a.Key < b.Key {
					return -1
				}
				if a.Key > b.Key {
					return 1
				}
				return 0
			}
			slices.SortFunc(got, order)
			slices.SortFunc(want, order)
			if !slices.Equal(got, want) {
				t.Fatalf("combined results differ from one by one: %d vs %d results", len(got), len(want))
			}
			if lateGot != lateWant {
				t.Fatalf("late records: combined %d, one by one %d", lateGot, lateWant)
			}
			if len(want) == 0 || lateWant == 0 {
				t.Fatalf("the input fired no window (%d) or had no late record (%d): the test tests nothing", len(want), lateWant)
			}
		})
	}
}

// TestCombineDecoderSkipsFoldingManyKeys: polls of distinct keys make one
// partial per record, and after combineSkip polls the decoder tries
// folding again.
func TestCombineDecoderSkipsFoldingManyKeys(t *testing.T) {
	d := newCombineDecoder(actors.JSONExtractor("user", "ts", "amount"), 1000)
	poll := func(keys int) int {
		for i := 0; i < 1000; i++ {
			v := []byte(`{"user":"u` + strconv.Itoa(i%keys) + `","ts":5,"amount":1}`)
			if _, err := d.Decode(nil, v, 0, 0, 0); err != nil {
				t.Fatal(err)
			}
			d.Keep()
		}
		data, n := d.Take()
		if n != 1000 {
			t.Fatalf("Take counts %d records, want 1000", n)
		}
		return len(data.([]operator.Rec[partial]))
	}
	if got := poll(1000); got != 1000 {
		t.Fatalf("distinct keys: %d partials, want 1000", got)
	}
	if d.skip != combineSkip {
		t.Fatalf("after a poll of distinct keys skip = %d, want %d", d.skip, combineSkip)
	}
	for i := 0; i < combineSkip; i++ {
		if got := poll(10); got != 1000 {
			t.Fatalf("skipped poll %d: %d partials, want one per record", i, got)
		}
	}
	if got := poll(10); got != 10 {
		t.Fatalf("after the skipped polls: %d partials of 10 keys, want 10", got)
	}
}

// TestExchangeCountsPartialRecords: a batch of partials sent over a key
// exchange counts the records the partials fold (the receiving task's
// records_in), and a batch of other values counts its values.
func TestExchangeCountsPartialRecords(t *testing.T) {
	sent := map[int]int{}
	em, flush := portFor[partial]().exchange(func(tgt int, data any, n int) {
		if got := len(data.([]operator.Rec[partial])); got == n {
			t.Errorf("a batch of %d partials counted %d: its values, not its records", got, n)
		}
		sent[tgt] += n
	}, []int{0, 1}, recordKey{}, 3)
	x := em.(emitter[partial])
	want := 0
	for i := 0; i < 10; i++ {
		n := int64(2 + i)
		x.Emit(operator.Rec[partial]{Key: "k" + strconv.Itoa(i), V: partial{n: n, sum: 1}})
		want += int(n)
	}
	flush()
	if got := sent[0] + sent[1]; got != want {
		t.Fatalf("the batches counted %d records, the partials fold %d", got, want)
	}
	counted := 0
	em2, flush2 := portFor[float64]().exchange(func(_ int, data any, n int) {
		if got := len(data.([]operator.Rec[float64])); got != n {
			t.Errorf("a batch of %d values counted %d", got, n)
		}
		counted += n
	}, []int{0, 1}, recordKey{}, 3)
	for i := 0; i < 10; i++ {
		em2.(emitter[float64]).Emit(operator.Rec[float64]{Key: "k" + strconv.Itoa(i), V: 1})
	}
	flush2()
	if counted != 10 {
		t.Fatalf("10 values counted %d", counted)
	}
}
