package window

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"testing"
	"time"

	"github.com/weirstream/weir/operator"
)

var seedFlag = flag.Int64("seed", 0, "seed of the randomized tests (0: from the clock)")

func testSeed(t *testing.T) *rand.Rand {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay with go test ./operator/window -run %s -seed %d)", seed, t.Name(), seed)
	return rand.New(rand.NewSource(seed))
}

// TestWindowCaptureIsPointInTime: captured entries are encoded late (as the
// snapshot worker does, while processing goes on) and must still hold the
// values as of the capture. Applying every capture in order (range
// deletions of fired windows included) must give the window's state at the
// last capture — what a restore would load.
func TestWindowCaptureIsPointInTime(t *testing.T) {
	rng := testSeed(t)
	w := NewTumbling(100, true)
	applied := map[string][2]float64{}
	appliedKeys := map[string][]byte{} // the store key of each applied entry
	type capture struct {
		encode func() ([]operator.Entry, error)
		want   map[string][2]float64
	}
	var lagging []capture
	state := func() map[string][2]float64 {
		m := map[string][2]float64{}
		for start, win := range w.windows {
			for k, a := range win.keys {
				m[fmt.Sprintf("%d/%s", start, k)] = [2]float64{float64(a.count), a.sum}
			}
		}
		return m
	}
	apply := func(c capture) {
		entries, _ := c.encode()
		for _, e := range entries {
			if e.End != nil {
				for k, key := range appliedKeys {
					if bytes.Compare(key, e.Key) >= 0 && bytes.Compare(key, e.End) < 0 {
						delete(applied, k)
						delete(appliedKeys, k)
					}
				}
				continue
			}
			start := int64(binary.BigEndian.Uint64(e.Key[2:10]))
			k := fmt.Sprintf("%d/%s", start, e.Key[10:])
			if e.Value == nil {
				t.Fatalf("a point delete of %s: fired windows go by ranges", k)
			}
			appliedKeys[k] = bytes.Clone(e.Key)
			applied[k] = [2]float64{float64(binary.BigEndian.Uint64(e.Value[:8])), math.Float64frombits(binary.BigEndian.Uint64(e.Value[8:]))}
		}
		if len(applied) != len(c.want) {
			t.Fatalf("after applying a capture: %d entries, want %d", len(applied), len(c.want))
		}
		for k, v := range c.want {
			if applied[k] != v {
				t.Fatalf("entry %s: %v, want %v as of its capture", k, applied[k], v)
			}
		}
	}
	for step := 0; step < 3000; step++ {
		switch rng.Intn(10) {
		case 0: // capture; the worker encodes it later
			enc, _ := w.Capture()
			lagging = append(lagging, capture{encode: enc, want: state()})
		case 1: // the worker catches up with the oldest capture
			if len(lagging) > 0 {
				apply(lagging[0])
				lagging = lagging[1:]
			}
		case 2: // the watermark moves: windows fire
			w.Fire(int64(rng.Intn(500)), func(Result) {})
		default:
			for i := 1 + rng.Intn(20); i > 0; i-- {
				w.Add(fmt.Sprintf("k%d", rng.Intn(30)), int64(rng.Intn(500)), float64(rng.Intn(10)))
			}
		}
	}
	for _, c := range lagging {
		apply(c)
	}
}

// TestFiredRangesCoverTheirWindowOnly: the range deletions of a fired
// window hold every key of that window in every key group and no key of
// another window, at the ends of the int64 range and where the start's
// bytes carry (-1 is all ones).
func TestFiredRangesCoverTheirWindowOnly(t *testing.T) {
	starts := []int64{math.MinInt64, math.MinInt64 + 1, -2, -1, 0, 1, math.MaxInt64 - 1, math.MaxInt64}
	keyOf := func(kg int, start int64, key string) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(kg))
		b = binary.BigEndian.AppendUint64(b, uint64(start))
		return append(b, key...)
	}
	for _, fired := range starts {
		w := NewTumbling(1, true)
		w.fired = []int64{fired}
		entries := w.encode()
		if len(entries) != operator.KeyGroups {
			t.Fatalf("window %d: %d entries, want one range per key group (%d)", fired, len(entries), operator.KeyGroups)
		}
		for _, kg := range []int{0, 1, operator.KeyGroups - 1} {
			for _, start := range starts {
				for _, key := range []string{"", "a", "\xff\xff", "zz"} {
					k := keyOf(kg, start, key)
					in := false
					for _, e := range entries {
						if e.End == nil || e.Value != nil {
							t.Fatalf("window %d: entry %x is not a range deletion", fired, e.Key)
						}
						if bytes.Compare(k, e.Key) >= 0 && bytes.Compare(k, e.End) < 0 {
							in = true
						}
					}
					if in != (start == fired) {
						t.Errorf("fired window %d: key of window %d, group %d, %q deleted=%v", fired, start, kg, key, in)
					}
				}
			}
		}
	}
}

// TestResultJSONEscapesKeys: whatever bytes a key holds, the result is
// JSON that reads back to the key (bytes that are not UTF-8 as U+FFFD, as
// encoding/json writes them), byte for byte what encoding/json makes.
func TestResultJSONEscapesKeys(t *testing.T) {
	for _, key := range []string{"u17", `a"b`, `back\slash`, "line\nfeed\ttab\r", "\x00\x01\x1f\x7f", "été", "bad\xff\xfeutf8", "\u2028\u2029", ""} {
		b := AppendResultJSON(nil, Result{Key: key, Start: 1000, Count: 2, Sum: 3.5}, 10)
		var got struct {
			Key   string  `json:"key"`
			Start int64   `json:"window_start"`
			End   int64   `json:"window_end"`
			Count int64   `json:"count"`
			Sum   float64 `json:"sum"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("key %q: %s is not JSON: %v", key, b, err)
		}
		want, _ := json.Marshal(key)
		var wantKey string
		_ = json.Unmarshal(want, &wantKey)
		if got.Key != wantKey || got.Start != 1000 || got.End != 1010 || got.Count != 2 || got.Sum != 3.5 {
			t.Fatalf("key %q: %s reads back as %+v", key, b, got)
		}
		if enc := AppendJSONString(nil, key); string(enc) != string(want) {
			t.Fatalf("key %q: %s, encoding/json writes %s", key, enc, want)
		}
	}
}

// TestTumblingEndsOfTime: records at the ends of the int64 range fall in
// the window that holds them, fire when the watermark passes that
// window's last millisecond and not before, and their results name a
// window end on the right side of their start: no arithmetic wraps.
func TestTumblingEndsOfTime(t *testing.T) {
	const size = 1000
	var fired []Result
	emit := func(r Result) { fired = append(fired, r) }

	// The last window: [MaxInt64-807, MaxInt64], its end clamped.
	w := NewTumbling(size, false)
	w.Fire(1_700_000_000_000, emit)
	if !w.Add("a", math.MaxInt64-1, 1) || !w.Add("a", math.MaxInt64, 2) {
		t.Fatal("a record at the end of time was dropped as late under a watermark in 2023")
	}
	w.Fire(math.MaxInt64-1, emit)
	if len(fired) != 0 {
		t.Fatalf("the last window fired at watermark MaxInt64-1: %+v", fired)
	}
	w.Fire(math.MaxInt64, emit)
	want := Result{Key: "a", Start: math.MaxInt64 - math.MaxInt64%size, Count: 2, Sum: 3}
	if len(fired) != 1 || fired[0] != want {
		t.Fatalf("at watermark MaxInt64 fired %+v, want %+v", fired, want)
	}
	if got := string(AppendResultJSON(nil, fired[0], size)); got != `{"key":"a","window_start":9223372036854775000,"window_end":9223372036854775807,"count":2,"sum":3}` {
		t.Errorf("result of the last window: %s", got)
	}

	// The first window: it starts at MinInt64 (its aligned start is
	// before the int64 range) and ends at its aligned end.
	fired = nil
	w = NewTumbling(size, false)
	firstEnd := int64(math.MinInt64) + (size - 1 - (size+math.MinInt64%size)%size)
	if !w.Add("b", math.MinInt64+1, 1) || !w.Add("b", firstEnd, 1) {
		t.Fatal("a record at the start of time was dropped as late before any watermark")
	}
	if st := w.State(); len(st) != 1 || st[math.MinInt64]["b"].Count != 2 {
		t.Fatalf("state %v, want one window at MinInt64 holding both records", st)
	}
	w.Fire(firstEnd-1, emit)
	if len(fired) != 0 {
		t.Fatalf("the first window fired before its end %d: %+v", firstEnd, fired)
	}
	w.Fire(firstEnd, emit)
	if len(fired) != 1 || fired[0] != (Result{Key: "b", Start: math.MinInt64, Count: 2, Sum: 2}) {
		t.Fatalf("at watermark %d fired %+v", firstEnd, fired)
	}
	if w.Add("b", firstEnd, 1) || !w.Add("b", firstEnd+1, 1) {
		t.Error("after the first window fired, its records must be late and the next window's not")
	}
	if got := string(AppendResultJSON(nil, fired[0], size)); got != `{"key":"b","window_start":-9223372036854775808,"window_end":-9223372036854775000,"count":2,"sum":2}` {
		t.Errorf("result of the first window: %s", got)
	}
}
