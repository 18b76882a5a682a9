package weir

import (
	"sort"
	"testing"
	"time"

	"github.com/weirstream/weir/integration/verify"
)

// TestDataflowWindowsOnKfake: sliding windows (2s every 500ms, offset
// 100ms) and session windows (gap 300ms) over the generator's events, with
// the Summary aggregate, exactly once, parallelism 2. The watermark bound
// covers the events' disorder, so nothing is late: every key and window
// is in the output once, equal to the windows computed from the events.
func TestDataflowWindowsOnKfake(t *testing.T) {
	f := dataflowFixture(t, verify.GenConfig{Seed: 21, Keys: 20, Partitions: 4, Events: 6000}, "sliding", "sessions", "late")
	env := NewEnv("windows", Brokers(f.brokers), Parallelism(2), Guarantee(ExactlyOnce),
		Checkpoints(40*time.Millisecond, t.TempDir()))
	in := FromKafka(env, "in", JSON[ev](), FromEarliest(), BoundedAtLatest(),
		EventTime(func(e ev) int64 { return e.TS }, 500*time.Millisecond))
	byUser := KeyBy(in, func(e ev) string { return e.User })
	amount := func(e ev) float64 { return float64(e.Amount) }
	late := NewOutputTag[ev]("late")
	sliding := Aggregate(Window(byUser, SlidingWindows(2*time.Second, 500*time.Millisecond).WithOffset(100*time.Millisecond)).
		SideOutputLateData(late), SummaryOf(amount), UID("sliding"))
	sessions := Aggregate(Window(byUser, SessionWindows(300*time.Millisecond)).AllowedLateness(time.Second),
		SummaryOf(amount), UID("sessions"))
	ToKafka(sliding, "sliding", JSON[WindowResult[Summary]](), SinkUID("sliding-out"))
	ToKafka(SideOutput(sliding, late), "late", JSON[ev](), SinkUID("late"))
	ToKafka(sessions, "sessions", JSON[WindowResult[Summary]](), SinkUID("sessions-out"))
	if err := env.Run(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(readJSON[ev](f, "late")); n != 0 {
		t.Fatalf("%d late records, want none", n)
	}

	type wkey struct {
		key        string
		start, end int64
	}
	add := func(m map[wkey]*Summary, k wkey, x float64) {
		s := m[k]
		if s == nil {
			s = &Summary{Min: x, Max: x}
			m[k] = s
		}
		s.Count++
		s.Sum += x
		s.Min, s.Max = min(s.Min, x), max(s.Max, x)
	}
	wantSliding := map[wkey]*Summary{}
	byKey := map[string][]int64{}
	amounts := map[string]map[int64][]float64{}
	for _, e := range f.events {
		// Windows of 2000ms starting at 100 + 500k holding e.TS.
		for s := e.TS - 2500; s <= e.TS; s++ {
			if ((s-100)%500+500)%500 == 0 && e.TS < s+2000 {
				add(wantSliding, wkey{e.Key, s, s + 2000}, float64(e.Amount))
			}
		}
		byKey[e.Key] = append(byKey[e.Key], e.TS)
		if amounts[e.Key] == nil {
			amounts[e.Key] = map[int64][]float64{}
		}
		amounts[e.Key][e.TS] = append(amounts[e.Key][e.TS], float64(e.Amount))
	}
	// Sessions: a key's events sorted by time, cut where the next event
	// is at or past the session's end (last event + gap).
	wantSessions := map[wkey]*Summary{}
	for key, tss := range byKey {
		sort.Slice(tss, func(i, j int) bool { return tss[i] < tss[j] })
		start, end := tss[0], tss[0]+300
		var vals []float64
		flush := func() {
			for _, x := range vals {
				add(wantSessions, wkey{key, start, end}, x)
			}
			vals = nil
		}
		seen := map[int64]bool{}
		for _, ts := range tss {
			if ts > end {
				flush()
				start = ts
			}
			end = max(end, ts+300)
			if !seen[ts] {
				seen[ts] = true
				vals = append(vals, amounts[key][ts]...)
			}
		}
		flush()
	}
	for _, tc := range []struct {
		topic string
		want  map[wkey]*Summary
	}{{"sliding", wantSliding}, {"sessions", wantSessions}} {
		got := readJSON[WindowResult[Summary]](f, tc.topic)
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %d results, want %d", tc.topic, len(got), len(tc.want))
		}
		for _, g := range got {
			w := tc.want[wkey{g.Key, g.Start, g.End}]
			if w == nil {
				t.Fatalf("%s: result %+v for a window that has no events", tc.topic, g)
			}
			want := *w
			want.Avg = want.Sum / float64(want.Count)
			if g.Value != want {
				t.Fatalf("%s: key %s window [%d,%d): %+v, want %+v", tc.topic, g.Key, g.Start, g.End, g.Value, want)
			}
		}
		t.Logf("%s: all %d windows once and right", tc.topic, len(got))
	}
}

// TestDataflowCountWindowsOnKfake: CountWindows(7) with Reduce: every 7
// values of a user, in the order the user's partition holds them, give
// one result; the values left over at the end give none (Flink's
// countWindow).
func TestDataflowCountWindowsOnKfake(t *testing.T) {
	f := dataflowFixture(t, verify.GenConfig{Seed: 23, Keys: 15, Partitions: 3, Events: 3000}, "counts")
	env := NewEnv("counts", Brokers(f.brokers), Parallelism(2), Guarantee(ExactlyOnce),
		Checkpoints(40*time.Millisecond, t.TempDir()))
	in := FromKafka(env, "in", JSON[ev](), FromEarliest(), BoundedAtLatest(),
		EventTime(func(e ev) int64 { return e.TS }, 500*time.Millisecond))
	sums := Reduce(Window(KeyBy(in, func(e ev) string { return e.User }), CountWindows(7)),
		func(a, b ev) ev { return ev{User: a.User, Amount: a.Amount + b.Amount, Seq: b.Seq, TS: b.TS} }, UID("count7"))
	ToKafka(sums, "counts", JSON[WindowResult[ev]](), SinkUID("counts-out"))
	if err := env.Run(f.ctx); err != nil {
		t.Fatal(err)
	}
	type chunk struct {
		n, sum, lastSeq, first, last int64
	}
	open := map[string]*chunk{}
	want := map[int64]WindowResult[ev]{} // by the seq of the window's last value
	for _, e := range f.events {
		c := open[e.Key]
		if c == nil {
			c = &chunk{first: e.TS}
			open[e.Key] = c
		}
		c.n++
		c.sum += e.Amount
		c.last, c.lastSeq = e.TS, e.Seq
		if c.n == 7 {
			want[e.Seq] = WindowResult[ev]{Key: e.Key, Start: c.first, End: c.last + 1, Value: ev{User: e.Key, Amount: c.sum, Seq: e.Seq, TS: e.TS}}
			delete(open, e.Key)
		}
	}
	got := readJSON[WindowResult[ev]](f, "counts")
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d", len(got), len(want))
	}
	for _, g := range got {
		if w, ok := want[g.Value.Seq]; !ok || w != g {
			t.Fatalf("result %+v, want %+v", g, w)
		}
	}
	t.Logf("all %d count windows once and right", len(got))
}
