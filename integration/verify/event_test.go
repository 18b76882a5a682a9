package verify

import (
	"encoding/json"
	"flag"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: pick one and print it)")

// testSeed returns the seed for a randomized test and logs how to replay it.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed=%d (replay: go test ./integration/verify -run '^%s$' -seed=%d)", seed, t.Name(), seed)
	return seed
}

func TestEventJSON(t *testing.T) {
	e := Event{Key: "u17", TS: 1764028800123, Amount: 17, Seq: 42}
	if got := string(e.JSON()); got != `{"user":"u17","ts":1764028800123,"amount":17,"seq":42}` {
		t.Fatalf("JSON %s", got)
	}
	for _, e := range []Event{e, {Key: "a\"b\\c\n<é>"}, {Key: "", TS: -1, Amount: -5, Seq: 1 << 62}} {
		b := e.JSON()
		if !json.Valid(b) {
			t.Fatalf("invalid JSON %s", b)
		}
		got, err := ParseEvent(b)
		if err != nil || got != e {
			t.Errorf("ParseEvent(%s) = %+v, %v; want %+v", b, got, err, e)
		}
	}
	if _, err := ParseEvent([]byte(`{"user":"u1","ts":1}`)); err == nil {
		t.Errorf("ParseEvent without amount and seq: no error")
	}
}

func TestPartition(t *testing.T) {
	seen := map[int32]bool{}
	for k := range 100 {
		e := Event{Key: "u" + string(rune('0'+k%10)) + string(rune('0'+k/10))}
		p := Partition(e, 4)
		if p < 0 || p >= 4 {
			t.Fatalf("Partition(%q, 4) = %d", e.Key, p)
		}
		if p != Partition(Event{Key: e.Key, TS: 99}, 4) {
			t.Fatalf("partition depends on more than the key")
		}
		seen[p] = true
	}
	if len(seen) != 4 {
		t.Errorf("100 keys hit only partitions %v", seen)
	}
	if Partition(Event{Key: "x"}, 0) != 0 || Partition(Event{Key: "x"}, 1) != 0 {
		t.Errorf("partitions <= 1 must give 0")
	}
}

func TestGenerateDeterministic(t *testing.T) {
	c := GenConfig{Seed: 7, Keys: 50, Partitions: 3, Events: 2000, Start: 1764028800000, Step: 3 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond}
	a, err := Generate(c)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(c)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different events")
	}
	g, _ := NewGenerator(c)
	for i := range a {
		if e := g.Next(); e != a[i] {
			t.Fatalf("event %d: Generator %+v, Generate %+v", i, e, a[i])
		}
	}
	c.Seed = 8
	d, _ := Generate(c)
	if reflect.DeepEqual(a, d) {
		t.Fatalf("seeds 7 and 8 give the same events")
	}
}

func TestGenerateShape(t *testing.T) {
	c := GenConfig{Seed: 1, Keys: 10, Partitions: 2, Events: 20000, Start: 1000, Step: 100 * time.Microsecond, OutOfOrderness: 50 * time.Millisecond}
	events, err := Generate(c)
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int, c.Keys)
	late := 0
	for i, e := range events {
		k, err := strconv.Atoi(strings.TrimPrefix(e.Key, "u"))
		if err != nil || !strings.HasPrefix(e.Key, "u") || k < 0 || k >= c.Keys {
			t.Fatalf("event %d: key %q", i, e.Key)
		}
		counts[k]++
		if e.Seq != int64(i) || e.Amount < 1 || e.Amount > AmountMax {
			t.Fatalf("event %d: %+v", i, e)
		}
		base := c.Start + int64(i)/10 // 10 events per ms
		if e.TS > base || e.TS < base-50 || e.TS < c.Start {
			t.Fatalf("event %d: ts %d, clock %d", i, e.TS, base)
		}
		if e.TS < base {
			late++
		}
	}
	if counts[0] <= 2*counts[c.Keys-1] {
		t.Errorf("keys not skewed: %v", counts)
	}
	if late < len(events)/OutOfOrderOneIn/2 || late > len(events)/OutOfOrderOneIn*2 {
		t.Errorf("%d of %d events late, want about 1 in %d", late, len(events), OutOfOrderOneIn)
	}
}

func TestGenerateValidates(t *testing.T) {
	ok := GenConfig{Keys: 1, Partitions: 1}
	if _, err := Generate(ok); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	for _, c := range []GenConfig{
		{Keys: 0, Partitions: 1},
		{Keys: 1, Partitions: 0},
		{Keys: 1, Partitions: 1, Events: -1},
		{Keys: 1, Partitions: 1, Start: -1},
		{Keys: 1, Partitions: 1, Step: -1},
		{Keys: 1, Partitions: 1, OutOfOrderness: -time.Millisecond},
	} {
		if _, err := Generate(c); err == nil {
			t.Errorf("Generate(%+v): no error", c)
		}
	}
}

// TestGenerateOutOfOrdernessProperty checks, over random configs, that per
// partition no event is more than OutOfOrderness behind the newest earlier
// event of that partition, that event time never goes below Start, and that
// Expected over the events accounts for every event once.
func TestGenerateOutOfOrdernessProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 0))
	for iter := range 200 {
		c := GenConfig{
			Seed:           rng.Int64(),
			Keys:           1 + rng.IntN(40),
			Partitions:     1 + rng.IntN(8),
			Events:         rng.IntN(3000),
			Start:          rng.Int64N(2_000_000_000_000),
			Step:           time.Duration(rng.Int64N(int64(20 * time.Millisecond))),
			OutOfOrderness: time.Duration(rng.Int64N(int64(2 * time.Second))),
		}
		if rng.IntN(4) == 0 {
			c.Start = rng.Int64N(100) // late events must not go below Start
		}
		events, err := Generate(c)
		if err != nil {
			t.Fatalf("iter %d: %+v: %v", iter, c, err)
		}
		bound := c.OutOfOrderness.Milliseconds()
		maxTS := map[int32]int64{}
		for i, e := range events {
			p := Partition(e, c.Partitions)
			if m, ok := maxTS[p]; ok {
				if e.TS < m-bound {
					t.Fatalf("iter %d %+v: event %d on partition %d has ts %d, newest earlier %d, bound %d ms", iter, c, i, p, e.TS, m, bound)
				}
				maxTS[p] = max(m, e.TS)
			} else {
				maxTS[p] = e.TS
			}
			if e.TS < c.Start {
				t.Fatalf("iter %d %+v: event %d ts %d before start", iter, c, i, e.TS)
			}
		}
		size := time.Duration(1+rng.IntN(5000)) * time.Millisecond
		var n, sum int64
		for _, r := range Expected(events, size) {
			n += r.Count
			sum += int64(r.Sum)
			if r.WindowEnd-r.WindowStart != size.Milliseconds() || r.WindowStart%size.Milliseconds() != 0 {
				t.Fatalf("iter %d: window %v for size %v", iter, r, size)
			}
		}
		var wantSum int64
		for _, e := range events {
			wantSum += e.Amount
		}
		if n != int64(len(events)) || sum != wantSum {
			t.Fatalf("iter %d: Expected counts %d events sum %d, want %d sum %d", iter, n, sum, len(events), wantSum)
		}
	}
}
