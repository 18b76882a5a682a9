package operator

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

type firing struct {
	key string
	ts  int64
}

// recorder returns a fire function that records its calls and checks the
// current key.
func recorder(t *testing.T, s *KeyedState, got *[]firing) func(string, int64) error {
	return func(key string, ts int64) error {
		if s.CurrentKey() != key {
			t.Errorf("fire(%q, %d): current key %q", key, ts, s.CurrentKey())
		}
		*got = append(*got, firing{key, ts})
		return nil
	}
}

func TestTimers(t *testing.T) {
	type reg struct {
		key     string
		ts      int64
		del     bool
		process bool
	}
	for _, tc := range []struct {
		name  string
		regs  []reg
		wm    int64
		want  []firing
		after int // timers left
	}{
		{
			name: "order by time then key",
			regs: []reg{{key: "b", ts: 5}, {key: "a", ts: 5}, {key: "c", ts: 1}, {key: "a", ts: 3}, {key: "", ts: 5}, {key: "z", ts: -7}},
			wm:   5,
			want: []firing{{"z", -7}, {"c", 1}, {"a", 3}, {"", 5}, {"a", 5}, {"b", 5}},
		},
		{
			name:  "up to the watermark",
			regs:  []reg{{key: "a", ts: 10}, {key: "a", ts: 11}, {key: "b", ts: 9}},
			wm:    10,
			want:  []firing{{"b", 9}, {"a", 10}},
			after: 1,
		},
		{
			name: "dedupe",
			regs: []reg{{key: "a", ts: 1}, {key: "a", ts: 1}, {key: "b", ts: 1}, {key: "a", ts: 1}},
			wm:   1,
			want: []firing{{"a", 1}, {"b", 1}},
		},
		{
			name:  "delete",
			regs:  []reg{{key: "a", ts: 1}, {key: "b", ts: 1}, {key: "a", ts: 1, del: true}, {key: "c", ts: 1, del: true}, {key: "a", ts: 2}},
			wm:    1,
			want:  []firing{{"b", 1}},
			after: 1,
		},
		{
			name:  "register again after delete",
			regs:  []reg{{key: "a", ts: 1}, {key: "a", ts: 1, del: true}, {key: "a", ts: 1}},
			wm:    math.MaxInt64,
			want:  []firing{{"a", 1}},
			after: 0,
		},
		{
			name:  "extremes",
			regs:  []reg{{key: "a", ts: math.MaxInt64}, {key: "a", ts: math.MinInt64}},
			wm:    math.MinInt64,
			want:  []firing{{"a", math.MinInt64}},
			after: 1,
		},
		{
			name:  "processing timers apart",
			regs:  []reg{{key: "a", ts: 1}, {key: "a", ts: 1, process: true}, {key: "b", ts: 0, process: true}},
			wm:    5,
			want:  []firing{{"a", 1}},
			after: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewKeyedState(KeyedStateConfig{Track: true})
			for _, r := range tc.regs {
				s.SetCurrentKey(r.key)
				switch {
				case r.process && r.del:
					s.DeleteProcessingTimer(r.ts)
				case r.process:
					s.RegisterProcessingTimer(r.ts)
				case r.del:
					s.DeleteEventTimer(r.ts)
				default:
					s.RegisterEventTimer(r.ts)
				}
			}
			s.SetCurrentKey("before")
			var got []firing
			if err := s.AdvanceWatermark(tc.wm, recorder(t, s, &got)); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("fired %v, want %v", got, tc.want)
			}
			if s.CurrentKey() != "before" {
				t.Errorf("current key after the advance: %q", s.CurrentKey())
			}
			if s.Len() != tc.after {
				t.Errorf("Len() = %d, want %d", s.Len(), tc.after)
			}
			if s.Watermark() != tc.wm {
				t.Errorf("Watermark() = %d", s.Watermark())
			}
		})
	}
}

func TestWatermark(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{})
	if s.Watermark() != math.MinInt64 {
		t.Fatalf("initial Watermark() = %d", s.Watermark())
	}
	for _, tc := range []struct{ wm, want int64 }{{5, 5}, {3, 5}, {9, 9}} {
		if err := s.AdvanceWatermark(tc.wm, nil); err != nil {
			t.Fatal(err)
		}
		if s.Watermark() != tc.want {
			t.Fatalf("after %d: Watermark() = %d, want %d", tc.wm, s.Watermark(), tc.want)
		}
	}
	// A fire call sees the new watermark.
	s.RegisterEventTimer(12)
	if err := s.AdvanceWatermark(15, func(string, int64) error {
		if s.Watermark() != 15 {
			t.Errorf("Watermark() in fire = %d", s.Watermark())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestFireRegistersMore(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{Track: true})
	n := must(Value(s, "n", IntCodec()))
	s.SetCurrentKey("a")
	s.RegisterEventTimer(1)
	s.SetCurrentKey("b")
	s.RegisterEventTimer(2)
	var got []firing
	rec := recorder(t, s, &got)
	err := s.AdvanceWatermark(10, func(key string, ts int64) error {
		_ = rec(key, ts)
		c, _ := n.Value()
		n.Update(c + 1) // the fire call's key
		// Chains of +4: a: 1, 5, 9, (13 waits); b: 2, 6, 10, (14 waits).
		s.RegisterEventTimer(ts + 4)
		if key == "a" && ts == 1 {
			s.SetCurrentKey("c")
			s.RegisterEventTimer(3) // another key, before the others
			s.RegisterEventTimer(0) // in the past: fires now
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []firing{{"a", 1}, {"c", 0}, {"b", 2}, {"c", 3}, {"c", 4}, {"a", 5}, {"b", 6}, {"c", 7}, {"c", 8}, {"a", 9}, {"b", 10}}
	if !slices.Equal(got, want) {
		t.Fatalf("fired %v\nwant  %v", got, want)
	}
	for k, want := range map[string]int{"a": 3, "b": 3, "c": 5} {
		s.SetCurrentKey(k)
		if c, _ := n.Value(); c != want {
			t.Errorf("key %s fired %d times, want %d", k, c, want)
		}
	}
	// Left: a@13, b@14, c@11, c@12.
	if s.Len() != 3+4 {
		t.Errorf("Len() = %d", s.Len())
	}
}

func TestProcessingTimers(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{Track: true})
	if _, ok := s.NextProcessingTimer(); ok {
		t.Fatal("NextProcessingTimer on an empty state")
	}
	s.SetCurrentKey("a")
	s.RegisterProcessingTimer(100)
	s.RegisterProcessingTimer(50)
	s.SetCurrentKey("b")
	s.RegisterProcessingTimer(50)
	s.RegisterProcessingTimer(70)
	s.DeleteProcessingTimer(70)
	s.DeleteProcessingTimer(71)
	s.RegisterEventTimer(10) // not a processing timer
	if ts, ok := s.NextProcessingTimer(); !ok || ts != 50 {
		t.Fatalf("NextProcessingTimer() = %d, %v", ts, ok)
	}
	var got []firing
	if err := s.AdvanceProcessingTime(99, recorder(t, s, &got)); err != nil {
		t.Fatal(err)
	}
	if want := []firing{{"a", 50}, {"b", 50}}; !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	if ts, ok := s.NextProcessingTimer(); !ok || ts != 100 {
		t.Fatalf("NextProcessingTimer() = %d, %v", ts, ok)
	}
	if s.Watermark() != math.MinInt64 {
		t.Fatal("processing time moved the watermark")
	}
	got = nil
	if err := s.AdvanceProcessingTime(100, recorder(t, s, &got)); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.NextProcessingTimer(); ok || len(got) != 1 || s.Len() != 1 {
		t.Fatalf("after 100: fired %v, Len() %d", got, s.Len())
	}
}

func TestFireErrors(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{Track: true})
	for i := range 5 {
		s.SetCurrentKey(fmt.Sprint(i))
		s.RegisterEventTimer(int64(i))
	}
	boom := errors.New("boom")
	var got []firing
	err := s.AdvanceWatermark(10, func(key string, ts int64) error {
		got = append(got, firing{key, ts})
		if ts == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || len(got) != 3 || s.Len() != 2 {
		t.Fatalf("error %v, fired %v, Len() %d", err, got, s.Len())
	}
	// The same timer registered again by its own fire call.
	err = s.AdvanceWatermark(10, func(key string, ts int64) error {
		s.RegisterEventTimer(ts)
		return nil
	})
	if err == nil || err.Error() != `operator: the event timer at 3 of key "3" was registered again by its own fire call` {
		t.Fatalf("re-registration: %v", err)
	}
	// Advancing from a fire call.
	err = s.AdvanceWatermark(10, func(string, int64) error {
		if err := s.AdvanceWatermark(20, nil); err == nil || !strings.Contains(err.Error(), "from a fire call") {
			t.Errorf("nested AdvanceWatermark: %v", err)
		}
		if err := s.AdvanceProcessingTime(20, nil); err == nil || !strings.Contains(err.Error(), "from a fire call") {
			t.Errorf("nested AdvanceProcessingTime: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Fire calls may run again after an error.
	if err := s.AdvanceWatermark(100, nil); err != nil || s.Len() != 0 {
		t.Fatalf("after the errors: %v, Len() %d", err, s.Len())
	}
}
