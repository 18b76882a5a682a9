package weir

import (
	"testing"
	"time"

	"github.com/weirstream/weir/integration/verify"
)

type joined struct {
	User  string `json:"user"`
	LSeq  int64  `json:"l"`
	RSeq  int64  `json:"r"`
	LTime int64  `json:"lt"`
	RTime int64  `json:"rt"`
}

// TestDataflowJoinsOnKfake: the input read twice, as two sides (even and
// odd sequence numbers), joined by user with an interval join (-200ms,
// +300ms) and a tumbling 1s window join, exactly once, parallelism 2. The
// watermark bound covers the disorder, so nothing is late: the outputs
// hold exactly the pairs computed from the input.
func TestDataflowJoinsOnKfake(t *testing.T) {
	f := dataflowFixture(t, verify.GenConfig{Seed: 31, Keys: 40, Partitions: 4, Events: 4000}, "interval", "windowed")
	env := NewEnv("joins", Brokers(f.brokers), Parallelism(2), Guarantee(ExactlyOnce),
		Checkpoints(40*time.Millisecond, t.TempDir()))
	et := EventTime(func(e ev) int64 { return e.TS }, 500*time.Millisecond)
	left := Filter(FromKafka(env, "in", JSON[ev](), FromEarliest(), BoundedAtLatest(), et, SourceUID("left")),
		func(e ev) bool { return e.Seq%2 == 0 })
	right := Filter(FromKafka(env, "in", JSON[ev](), FromEarliest(), BoundedAtLatest(), et, SourceUID("right")),
		func(e ev) bool { return e.Seq%2 == 1 })
	user := func(e ev) string { return e.User }
	pair := func(a, b ev) joined { return joined{User: a.User, LSeq: a.Seq, RSeq: b.Seq, LTime: a.TS, RTime: b.TS} }
	ij := IntervalJoin(KeyBy(left, user), KeyBy(right, user), -200*time.Millisecond, 300*time.Millisecond, pair, UID("interval"))
	wj := WindowJoin(KeyBy(left, user), KeyBy(right, user), TumblingWindows(time.Second), pair, UID("windowed"))
	ToKafka(ij, "interval", JSON[joined](), SinkUID("interval-out"))
	ToKafka(wj, "windowed", JSON[joined](), SinkUID("windowed-out"))
	if err := env.Run(f.ctx); err != nil {
		t.Fatal(err)
	}

	wantInterval, wantWindowed := map[[2]int64]joined{}, map[[2]int64]joined{}
	for _, a := range f.events {
		if a.Seq%2 != 0 {
			continue
		}
		for _, b := range f.events {
			if b.Seq%2 != 1 || a.Key != b.Key {
				continue
			}
			p := joined{User: a.Key, LSeq: a.Seq, RSeq: b.Seq, LTime: a.TS, RTime: b.TS}
			if a.TS-200 <= b.TS && b.TS <= a.TS+300 {
				wantInterval[[2]int64{a.Seq, b.Seq}] = p
			}
			if a.TS/1000 == b.TS/1000 {
				wantWindowed[[2]int64{a.Seq, b.Seq}] = p
			}
		}
	}
	for _, tc := range []struct {
		topic string
		want  map[[2]int64]joined
	}{{"interval", wantInterval}, {"windowed", wantWindowed}} {
		got := readJSON[joined](f, tc.topic)
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %d pairs, want %d", tc.topic, len(got), len(tc.want))
		}
		for _, g := range got {
			k := [2]int64{g.LSeq, g.RSeq}
			if w, ok := tc.want[k]; !ok || w != g {
				t.Fatalf("%s: pair %+v, want %+v (expected: %v)", tc.topic, g, w, ok)
			}
			delete(tc.want, k)
		}
		t.Logf("%s: all %d pairs once", tc.topic, len(got))
	}
}
