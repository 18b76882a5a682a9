package operator

import (
	"bytes"
	"errors"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValueState(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{})
	v := must(Value(s, "count", Int64Codec()))
	steps := []struct {
		key    string
		op     string // "update", "clear", or "" to read only
		x      int64
		want   int64
		wantOK bool
	}{
		{"a", "", 0, 0, false},
		{"a", "update", 1, 1, true},
		{"b", "", 0, 0, false},
		{"b", "update", 7, 7, true},
		{"a", "", 0, 1, true},
		{"a", "update", 2, 2, true},
		{"a", "clear", 0, 0, false},
		{"b", "", 0, 7, true},
		{"", "update", 3, 3, true}, // the empty key is a key
		{"a", "clear", 0, 0, false},
	}
	for i, st := range steps {
		s.SetCurrentKey(st.key)
		if s.CurrentKey() != st.key {
			t.Fatalf("step %d: CurrentKey %q", i, s.CurrentKey())
		}
		switch st.op {
		case "update":
			v.Update(st.x)
		case "clear":
			v.Clear()
		}
		if got, ok := v.Value(); got != st.want || ok != st.wantOK {
			t.Fatalf("step %d (%s %q): Value() = %d, %v; want %d, %v", i, st.op, st.key, got, ok, st.want, st.wantOK)
		}
	}
	if n := s.Len(); n != 2 {
		t.Errorf("Len() = %d, want 2", n)
	}
}

func TestMapState(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{})
	m := must(Map(s, "m", StringCodec(), Int64Codec()))
	s.SetCurrentKey("a")
	m.Put("x", 1)
	m.Put("y", 2)
	m.Put("x", 3)
	s.SetCurrentKey("b")
	m.Put("x", 10)

	check := func(key string, want map[string]int64) {
		t.Helper()
		s.SetCurrentKey(key)
		got := maps.Collect(m.All())
		if len(want) == 0 && len(got) == 0 {
			got = want
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("key %q: All() = %v, want %v", key, got, want)
		}
		if m.Len() != len(want) {
			t.Errorf("key %q: Len() = %d, want %d", key, m.Len(), len(want))
		}
		for k, v := range want {
			if g, ok := m.Get(k); !ok || g != v || !m.Contains(k) {
				t.Errorf("key %q: Get(%q) = %d, %v", key, k, g, ok)
			}
		}
		if _, ok := m.Get("absent"); ok || m.Contains("absent") {
			t.Errorf("key %q: absent map key found", key)
		}
	}
	check("a", map[string]int64{"x": 3, "y": 2})
	check("b", map[string]int64{"x": 10})
	check("c", nil)
	if s.Len() != 3 {
		t.Errorf("Len() = %d, want 3", s.Len())
	}

	s.SetCurrentKey("a")
	m.Remove("x")
	m.Remove("nope")
	check("a", map[string]int64{"y": 2})

	// Break out of All early; change the map inside the loop.
	s.SetCurrentKey("b")
	m.Put("y", 11)
	m.Put("z", 12)
	n := 0
	for range m.All() {
		n++
		break
	}
	if n != 1 {
		t.Errorf("All() after break ran %d times", n)
	}
	for k := range m.All() {
		m.Remove(k)
	}
	check("b", nil)

	s.SetCurrentKey("a")
	m.Clear()
	m.Clear()
	check("a", nil)
	if s.Len() != 0 {
		t.Errorf("Len() = %d, want 0", s.Len())
	}
}

func TestListState(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{Track: true})
	l := must(List(s, "l", StringCodec()))
	s.SetCurrentKey("a")
	if got := l.Get(); got != nil {
		t.Errorf("empty Get() = %v", got)
	}
	l.Add("1")
	l.Add("2")
	s.SetCurrentKey("b")
	l.Add("x")
	s.SetCurrentKey("a")
	got := l.Get()
	if !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("Get() = %v", got)
	}
	got[0] = "changed" // a copy
	l.Add("3")
	if got := l.Get(); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("Get() = %v", got)
	}
	in := []string{"u", "v"}
	l.Update(in)
	in[0] = "changed" // Update copies
	if got := l.Get(); !slices.Equal(got, []string{"u", "v"}) {
		t.Fatalf("Get() after Update = %v", got)
	}
	l.Update(nil)
	if got := l.Get(); got != nil {
		t.Fatalf("Get() after Update(nil) = %v", got)
	}
	s.SetCurrentKey("b")
	if got := l.Get(); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("key b: Get() = %v", got)
	}
	l.Clear()
	if got := l.Get(); got != nil || s.Len() != 0 {
		t.Fatalf("after Clear: Get() = %v, Len() = %d", got, s.Len())
	}
}

func TestRegistration(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{})
	v := must(Value(s, "v", Int64Codec()))
	if v2 := must(Value(s, "v", Int64Codec())); v2 != v {
		t.Error("registering a value state twice gave another handle")
	}
	m := must(Map(s, "m", StringCodec(), Int64Codec()))
	if m2 := must(Map(s, "m", StringCodec(), Int64Codec())); m2 != m {
		t.Error("registering a map state twice gave another handle")
	}
	l := must(List(s, "l", StringCodec(), WithTTL(time.Second)))
	if l2 := must(List(s, "l", StringCodec(), WithTTL(time.Second))); l2 != l {
		t.Error("registering a list state twice gave another handle")
	}
	must(Value(s, strings.Repeat("n", 255), BoolCodec()))

	for _, tc := range []struct {
		name string
		reg  func() error
		want string
	}{
		{"empty name", func() error { _, err := Value(s, "", Int64Codec()); return err }, "operator: value state with an empty name"},
		{"long name", func() error { _, err := List(s, strings.Repeat("n", 256), Int64Codec()); return err }, "is 256 bytes, at most 255"},
		{"value as map", func() error { _, err := Map(s, "v", StringCodec(), Int64Codec()); return err }, `operator: state "v" is a value state, registered again as a map state`},
		{"map as list", func() error { _, err := List(s, "m", Int64Codec()); return err }, `operator: state "m" is a map state, registered again as a list state`},
		{"list as value", func() error { _, err := Value(s, "l", Int64Codec()); return err }, `operator: state "l" is a list state, registered again as a value state`},
		{"value other type", func() error { _, err := Value(s, "v", StringCodec()); return err }, `operator: value state "v" is registered already with other types`},
		{"map other type", func() error { _, err := Map(s, "m", StringCodec(), StringCodec()); return err }, `operator: map state "m" is registered already with other types`},
		{"other TTL", func() error { _, err := List(s, "l", StringCodec()); return err }, `operator: state "l" has a TTL of 1000ms, registered again with 0ms`},
		{"bad TTL", func() error { _, err := Value(s, "t", Int64Codec(), WithTTL(-time.Second)); return err }, `operator: state "t": TTL -1s, want a positive one`},
		{"nil codec", func() error { _, err := Value[int64](s, "n", nil); return err }, `operator: value state "n": nil codec`},
		{"nil map codec", func() error { _, err := Map[string, int64](s, "n", nil, Int64Codec()); return err }, `operator: map state "n": nil codec`},
		{"nil list codec", func() error { _, err := List[int](s, "n", nil); return err }, `operator: list state "n": nil codec`},
		{"nil state", func() error { _, err := Value(nil, "n", Int64Codec()); return err }, "operator: register a state on a nil KeyedState"},
	} {
		err := tc.reg()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestTTL(t *testing.T) {
	now := int64(1000)
	s := NewKeyedState(KeyedStateConfig{Track: true, Now: func() int64 { return now }})
	v := must(Value(s, "v", Int64Codec(), WithTTL(100*time.Millisecond)))
	m := must(Map(s, "m", StringCodec(), StringCodec(), WithTTL(100*time.Millisecond)))
	l := must(List(s, "l", Int64Codec(), WithTTL(100*time.Millisecond)))
	plain := must(Value(s, "plain", Int64Codec()))

	s.SetCurrentKey("k")
	v.Update(1)     // expires at 1100
	m.Put("a", "x") // 1100
	l.Add(1)        // 1100
	plain.Update(9)
	now = 1050
	m.Put("b", "y") // 1150
	l.Add(2)        // the whole list: 1150
	now = 1099
	if x, ok := v.Value(); !ok || x != 1 {
		t.Fatalf("at 1099: Value() = %d, %v", x, ok)
	}
	run(t, s.Capture())
	now = 1100
	if _, ok := v.Value(); ok {
		t.Fatal("at 1100: the value is still there")
	}
	if _, ok := m.Get("a"); ok {
		t.Fatal("at 1100: map key a is still there")
	}
	if x, ok := m.Get("b"); !ok || x != "y" {
		t.Fatalf("at 1100: map key b = %q, %v", x, ok)
	}
	if got := l.Get(); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("at 1100: list %v", got)
	}
	// The reads deleted v and m/a; the capture has their delete entries.
	es := run(t, s.Capture())
	want := []string{"m m/k/61 DEL", "v v/k DEL"}
	if got := describe(t, es); !slices.Equal(got, want) {
		t.Fatalf("capture after reads: %q, want %q", got, want)
	}

	// A write refreshes the TTL.
	v.Update(2) // 1200
	now = 1149
	l.Add(3) // 1249
	now = 1199
	v.Update(3)                  // 1299
	if n := len(s.ttl); n != 3 { // v, m/b, l
		t.Fatalf("%d entries in the TTL heap, want 3", n)
	}
	now = 1250
	// Nothing read: Capture deletes the expired entries (m/b at 1150,
	// l at 1249) itself, with delete entries; v (1299) stays.
	es = run(t, s.Capture())
	var dels []string
	for _, d := range describe(t, es) {
		if strings.HasSuffix(d, "DEL") {
			dels = append(dels, d)
		}
	}
	if want := []string{"l l/k DEL", "m m/k/62 DEL"}; !slices.Equal(dels, want) {
		t.Fatalf("capture deletes %q, want %q", dels, want)
	}
	if got := l.Get(); got != nil {
		t.Fatalf("list after expiry: %v", got)
	}
	l.Add(4) // a new list
	if got := l.Get(); !slices.Equal(got, []int64{4}) {
		t.Fatalf("list after expiry and Add: %v", got)
	}
	if s.Len() != 3 { // v, l, plain
		t.Fatalf("Len() = %d, want 3", s.Len())
	}
	now = math.MaxInt64 - 1
	v.Update(5) // the expiry saturates
	if x, ok := v.Value(); !ok || x != 5 {
		t.Fatalf("saturated: %d, %v", x, ok)
	}
	if x, ok := plain.Value(); !ok || x != 9 {
		t.Fatalf("plain value: %d, %v", x, ok)
	}
	if m.Len() != 0 {
		t.Fatalf("map Len() = %d", m.Len())
	}
}

func TestTTLMapLenAndAll(t *testing.T) {
	now := int64(0)
	s := NewKeyedState(KeyedStateConfig{Now: func() int64 { return now }})
	m := must(Map(s, "m", Int64Codec(), Int64Codec(), WithTTL(10*time.Millisecond)))
	for i := range int64(10) {
		now = i
		m.Put(i, i)
	}
	now = 15 // keys 0..5 expired
	if got := maps.Collect(m.All()); len(got) != 4 {
		t.Fatalf("All() = %v", got)
	}
	now = 17
	if m.Len() != 2 {
		t.Fatalf("Len() = %d", m.Len())
	}
	if s.Len() != 2 {
		t.Fatalf("KeyedState.Len() = %d", s.Len())
	}
}

// TestCopyOnWrite checks that a captured function encodes the state as it
// was at Capture, however much it changed since, also while it runs on
// another goroutine (run with -race).
func TestCopyOnWrite(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		now := int64(0)
		s := NewKeyedState(KeyedStateConfig{Track: true, Now: func() int64 { return now }})
		v := must(Value(s, "v", Int64Codec()))
		m := must(Map(s, "m", StringCodec(), Int64Codec(), WithTTL(time.Hour)))
		l := must(List(s, "l", Int64Codec()))
		keys := []string{"a", "b", "c", "d"}
		for i, k := range keys {
			s.SetCurrentKey(k)
			v.Update(int64(i))
			m.Put("x", int64(i))
			l.Add(int64(i))
			l.Add(int64(i) + 1)
			s.RegisterEventTimer(int64(i))
		}
		run(t, s.Capture())
		// Changes in the second epoch, partly in place.
		for i, k := range keys[:2] {
			s.SetCurrentKey(k)
			v.Update(int64(100 + i))
			m.Put("y", int64(i))
			l.Add(7)
		}
		// The state as captured next, encoded on a fresh copy.
		want := func() []string {
			ref := NewKeyedState(KeyedStateConfig{Track: true, Now: func() int64 { return now }})
			rv := must(Value(ref, "v", Int64Codec()))
			rm := must(Map(ref, "m", StringCodec(), Int64Codec(), WithTTL(time.Hour)))
			rl := must(List(ref, "l", Int64Codec()))
			for _, k := range keys[:2] {
				s.SetCurrentKey(k)
				ref.SetCurrentKey(k)
				x, _ := v.Value()
				rv.Update(x)
				y, _ := m.Get("y")
				rm.Put("y", y)
				rl.Update(l.Get())
			}
			return describe(t, run(t, ref.Capture()))
		}()
		f := s.Capture()
		done := make(chan []Entry)
		errc := make(chan error, 1)
		if concurrent {
			go func() {
				es, err := f()
				errc <- err
				done <- es
			}()
		}
		// Mutate heavily: every kind of change, on every key.
		for round := range 50 {
			now++
			for i, k := range keys {
				s.SetCurrentKey(k)
				v.Update(int64(round*10 + i))
				m.Put("y", int64(round))
				m.Put("z", 1)
				m.Remove("x")
				l.Add(int64(round))
				if round%7 == 0 {
					l.Update([]int64{1, 2, 3})
				}
				if round%5 == 0 {
					v.Clear()
					m.Clear()
					l.Clear()
				}
				s.RegisterEventTimer(int64(1000 + round))
			}
			if err := s.AdvanceWatermark(int64(1000+round), nil); err != nil {
				t.Fatal(err)
			}
		}
		var es []Entry
		if concurrent {
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			es = <-done
		} else {
			es = run(t, f)
		}
		if got := describe(t, es); !slices.Equal(got, want) {
			t.Fatalf("concurrent %v: captured\n%s\nwant\n%s", concurrent, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestCaptureEntries(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{Track: true})
	v := must(Value(s, "v", StringCodec()))
	m := must(Map(s, "m", Int64Codec(), BoolCodec()))
	l := must(List(s, "l", StringCodec()))
	if es := run(t, s.Capture()); es != nil {
		t.Fatalf("empty capture: %v", es)
	}
	s.SetCurrentKey("k")
	v.Update("") // an empty value is not a delete
	m.Put(-1, true)
	l.Add("ab")
	l.Add("")
	s.RegisterEventTimer(-5)
	s.RegisterProcessingTimer(5)
	es := run(t, s.Capture())
	want := map[string][]byte{
		string(key('v', "v", "k")):                {},
		string(key('m', "m", "k", i64(-1)...)):    {1},
		string(key('l', "l", "k")):                listBytes([]byte("ab"), nil),
		string(key('e', "", "k", tsBytes(-5)...)): {},
		string(key('p', "", "k", tsBytes(5)...)):  {},
	}
	if len(es) != len(want) {
		t.Fatalf("%d entries, want %d: %q", len(es), len(want), describe(t, es))
	}
	for _, e := range es {
		w, ok := want[string(e.Key)]
		if !ok || e.Value == nil || !bytes.Equal(e.Value, w) {
			t.Errorf("entry %q = %x (nil %v), want %x (present %v)", e.Key, e.Value, e.Value == nil, w, ok)
		}
	}
	// Deletes.
	v.Clear()
	m.Remove(-1)
	l.Clear()
	s.DeleteEventTimer(-5)
	if err := s.AdvanceProcessingTime(5, func(string, int64) error { return nil }); err != nil {
		t.Fatal(err)
	}
	es = run(t, s.Capture())
	if len(es) != len(want) {
		t.Fatalf("%d delete entries, want %d: %q", len(es), len(want), describe(t, es))
	}
	for _, e := range es {
		if _, ok := want[string(e.Key)]; !ok || e.Value != nil {
			t.Errorf("entry %q = %x, want a delete", e.Key, e.Value)
		}
	}
	// No-ops record nothing.
	v.Clear()
	m.Remove(3)
	s.DeleteEventTimer(1)
	s.RegisterEventTimer(1)
	s.RegisterEventTimer(1)
	if got := describe(t, run(t, s.Capture())); !slices.Equal(got, []string{"e k@1 = "}) {
		t.Fatalf("capture: %q", got)
	}
}

// TestCaptureFreshEntries: an entry created and deleted in the same epoch
// writes nothing, but one the store holds (or whose delete is pending)
// still gets its delete, however often it is created and deleted again in
// the epoch; a restore from the store shows none of them.
func TestCaptureFreshEntries(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{Track: true})
	v := must(Value(s, "v", StringCodec()))
	m := must(Map(s, "m", Int64Codec(), BoolCodec()))
	l := must(List(s, "l", StringCodec()))
	s.SetCurrentKey("k")
	churn := func() {
		v.Update("x")
		v.Clear()
		m.Put(1, true)
		m.Remove(1)
		l.Add("y")
		l.Clear()
		s.RegisterEventTimer(7)
		s.DeleteEventTimer(7)
		s.RegisterProcessingTimer(8)
		if err := s.AdvanceProcessingTime(8, nil); err != nil {
			t.Fatal(err)
		}
	}
	churn()
	if got := describe(t, run(t, s.Capture())); len(got) != 0 {
		t.Fatalf("fresh entries created and deleted in one epoch wrote %q", got)
	}
	// Now in the store: deleted, created and deleted again in one epoch.
	store := memStore{}
	v.Update("x")
	m.Put(1, true)
	l.Add("y")
	s.RegisterEventTimer(7)
	s.RegisterProcessingTimer(8)
	store.apply(run(t, s.Capture()))
	if len(store) != 5 {
		t.Fatalf("store holds %d entries, want 5", len(store))
	}
	v.Clear()
	m.Remove(1)
	l.Clear()
	s.DeleteEventTimer(7)
	if err := s.AdvanceProcessingTime(8, nil); err != nil {
		t.Fatal(err)
	}
	churn()
	churn()
	es := run(t, s.Capture())
	if len(es) != 5 {
		t.Fatalf("%d entries, want the 5 deletes: %q", len(es), describe(t, es))
	}
	store.apply(es)
	if len(store) != 0 {
		t.Fatalf("the store still holds %d entries", len(store))
	}
	r := NewKeyedState(KeyedStateConfig{Track: true})
	if err := r.Restore(store.iter()); err != nil {
		t.Fatal(err)
	}
	if n := r.Len(); n != 0 {
		t.Fatalf("restored %d entries, want none", n)
	}
}

func TestTrackOff(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{})
	v := must(Value(s, "v", Int64Codec()))
	v.Update(1)
	s.RegisterEventTimer(1)
	f := s.Capture()
	v.Update(2)
	if es, err := f(); es != nil || err != nil {
		t.Fatalf("capture with Track off: %v, %v", es, err)
	}
	if x, _ := v.Value(); x != 2 {
		t.Fatalf("Value() = %d", x)
	}
}

func TestCaptureEncodeError(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{Track: true})
	v := must(Value(s, "avg", JSONCodec[float64]()))
	s.SetCurrentKey("acct-1")
	v.Update(math.NaN())
	_, err := s.Capture()()
	want := `operator: state "avg" of key "acct-1": json codec: encode float64: json: unsupported value: NaN`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	l := must(List(s, "l", JSONCodec[float64]()))
	l.Add(1)
	l.Add(math.Inf(1))
	_, err = s.Capture()()
	if err == nil || !strings.HasPrefix(err.Error(), `operator: state "l" of key "acct-1": list element 1: json codec: encode float64`) {
		t.Fatalf("list error %v", err)
	}
	m := must(Map(s, "m", JSONCodec[float64](), Int64Codec()))
	m.Put(math.NaN(), 1)
	_, err = s.Capture()()
	if err == nil || !strings.HasPrefix(err.Error(), `operator: state "m" of key "acct-1": map key: json codec: encode float64`) {
		t.Fatalf("map error %v", err)
	}
}

// TestKeyGroupPrefix checks that every entry, of every kind, starts with
// the key group of its key.
func TestKeyGroupPrefix(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{Track: true})
	v := must(Value(s, "v", IntCodec()))
	m := must(Map(s, "m", IntCodec(), IntCodec()))
	l := must(List(s, "l", IntCodec()))
	groups := map[int]bool{}
	for i := range 1000 {
		k := strings.Repeat("k", i%3) + string(rune('a'+i%26)) + strings.Repeat("\x00", i%2) + string(rune(i))
		s.SetCurrentKey(k)
		groups[KeyGroup(k)] = true
		switch i % 5 {
		case 0:
			v.Update(i)
		case 1:
			m.Put(i, i)
		case 2:
			l.Add(i)
		case 3:
			s.RegisterEventTimer(int64(i))
		case 4:
			s.RegisterProcessingTimer(int64(-i))
		}
	}
	es := run(t, s.Capture())
	if len(es) != 1000 {
		t.Fatalf("%d entries", len(es))
	}
	for _, e := range es {
		sk, err := parseStoreKey(e.Key)
		if err != nil {
			t.Fatalf("entry %q: %v", e.Key, err)
		}
		if sk.kg != KeyGroup(sk.key) {
			t.Fatalf("entry %q: key group %d, KeyGroup(%q) = %d", e.Key, sk.kg, sk.key, KeyGroup(sk.key))
		}
	}
	if len(groups) < KeyGroups/2 {
		t.Fatalf("only %d key groups used", len(groups))
	}
}

func TestTimerKeyOrder(t *testing.T) {
	// Byte order of timer entries is time order.
	tss := []int64{math.MinInt64, -1 << 40, -1, 0, 1, 1 << 40, math.MaxInt64}
	for i := 1; i < len(tss); i++ {
		if bytes.Compare(tsBytes(tss[i-1]), tsBytes(tss[i])) >= 0 {
			t.Fatalf("%d and %d out of order", tss[i-1], tss[i])
		}
	}
}

func TestRestoreDecodeErrors(t *testing.T) {
	ttlVal := append(i64(5000), i64(7)...)
	for _, tc := range []struct {
		name  string
		store memStore
		reg   func(s *KeyedState) error
		want  string
	}{
		{
			"value", memStore{string(key('v', "count", "acct-7")): {1, 2, 3}},
			func(s *KeyedState) error { _, err := Value(s, "count", Int64Codec()); return err },
			`operator: state "count" of key "acct-7": int64 codec: 3 bytes, want 8`,
		},
		{
			"map key", memStore{string(key('m', "m", "k", 1, 2)): i64(1)},
			func(s *KeyedState) error { _, err := Map(s, "m", Int64Codec(), Int64Codec()); return err },
			`operator: state "m" of key "k": map key: int64 codec: 2 bytes, want 8`,
		},
		{
			"map value", memStore{string(key('m', "m", "k", i64(1)...)): {1}},
			func(s *KeyedState) error { _, err := Map(s, "m", Int64Codec(), Int64Codec()); return err },
			`operator: state "m" of key "k": map value: int64 codec: 1 bytes, want 8`,
		},
		{
			"list element", memStore{string(key('l', "l", "k")): listBytes(i64(1), []byte{1})},
			func(s *KeyedState) error { _, err := List(s, "l", Int64Codec()); return err },
			`operator: state "l" of key "k": list element 1: int64 codec: 1 bytes, want 8`,
		},
		{
			"list framing", memStore{string(key('l', "l", "k")): {9, 1}},
			func(s *KeyedState) error { _, err := List(s, "l", Int64Codec()); return err },
			`operator: state "l" of key "k": list element 0: length 9, 1 bytes left`,
		},
		{
			"ttl prefix", memStore{string(key('v', "v", "k")): {1, 2}},
			func(s *KeyedState) error { _, err := Value(s, "v", Int64Codec(), WithTTL(time.Second)); return err },
			`operator: state "v" of key "k": ttl prefix: 2 bytes, want at least 8`,
		},
		{
			"ttl value", memStore{string(key('v', "v", "k")): ttlVal[:12]},
			func(s *KeyedState) error { _, err := Value(s, "v", Int64Codec(), WithTTL(time.Second)); return err },
			`operator: state "v" of key "k": int64 codec: 4 bytes, want 8`,
		},
		{
			"kind", memStore{string(key('v', "x", "k")): i64(1)},
			func(s *KeyedState) error { _, err := List(s, "x", Int64Codec()); return err },
			`operator: state "x" was restored as a value state, registered as a list state`,
		},
	} {
		// Restore before and after the registration.
		for _, after := range []bool{false, true} {
			s := NewKeyedState(KeyedStateConfig{})
			var err error
			if after {
				if err = tc.reg(s); err == nil {
					err = s.Restore(tc.store.iter())
				}
			} else {
				if err = s.Restore(tc.store.iter()); err == nil {
					err = tc.reg(s)
				}
			}
			if tc.name == "kind" && after {
				// Registered first as a list: Restore names the clash.
				if err == nil || !strings.Contains(err.Error(), `"x" was restored as a value state, registered as a list state`) {
					t.Errorf("%s (restore after): error %v", tc.name, err)
				}
				continue
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("%s (restore after %v): error %v\nwant %s", tc.name, after, err, tc.want)
			}
		}
	}
	// An error of the codec is wrapped, not flattened.
	s := NewKeyedState(KeyedStateConfig{})
	sentinel := errors.New("operator: boom")
	if err := s.Restore(memStore{string(key('v', "v", "k")): {}}.iter()); err != nil {
		t.Fatal(err)
	}
	_, err := Value[int](s, "v", failCodec{sentinel})
	if !errors.Is(err, sentinel) || err.Error() != `operator: state "v" of key "k": boom` {
		t.Fatalf("error %v", err)
	}
	// A failed registration registers nothing; the entries stay.
	if _, err := Value(s, "v", Int64Codec()); err == nil || !strings.Contains(err.Error(), "0 bytes, want 8") {
		t.Fatalf("second registration: %v", err)
	}
}

type failCodec struct{ err error }

func (f failCodec) Append(dst []byte, _ int) ([]byte, error) { return dst, f.err }
func (f failCodec) Decode([]byte) (int, error)               { return 0, f.err }

func TestRestoreMalformed(t *testing.T) {
	good := key('v', "v", "k")
	wrongGroup := bytes.Clone(good)
	wrongGroup[1] ^= 1
	for _, tc := range []struct {
		name string
		k    []byte
		want string
	}{
		{"short", []byte{0, 1}, "shorter than 4 bytes"},
		{"name past end", []byte{0, 0, 'v', 9, 'a'}, "name of 9 bytes past the end"},
		{"kind", key('x', "v", "k"), "unknown kind 'x'"},
		{"empty name", key('v', "", "k"), "a state with an empty name"},
		{"empty map name", key('m', "", "k"), "a state with an empty name"},
		{"named timer", key('e', "t", "k", tsBytes(1)...), "a timer with a name"},
		{"short timer", key('p', "", "", 1, 2), "timer time shorter than 8 bytes"},
		{"wrong key group", wrongGroup, "key group"},
	} {
		s := NewKeyedState(KeyedStateConfig{})
		err := s.Restore(memStore{string(tc.k): {}}.iter())
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "operator: restore: malformed store key") {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	// A map key whose length runs past the end.
	k := []byte{0, 0, 'm', 1, 'm', 5, 'a'}
	if err := NewKeyedState(KeyedStateConfig{}).Restore(memStore{string(k): {}}.iter()); err == nil || !strings.Contains(err.Error(), "bad key length") {
		t.Errorf("map key length: %v", err)
	}
	// Both kinds under one name.
	st := memStore{string(key('v', "x", "a")): i64(1), string(key('l', "x", "b")): {}}
	if err := NewKeyedState(KeyedStateConfig{}).Restore(st.iter()); err == nil || !strings.Contains(err.Error(), `state "x" has both`) {
		t.Errorf("two kinds: %v", err)
	}
	// Iterator errors.
	it := memStore{string(good): i64(1)}.iter()
	it.valueErr = errors.New("disk")
	if err := NewKeyedState(KeyedStateConfig{}).Restore(it); err == nil || !strings.Contains(err.Error(), "disk") {
		t.Errorf("value error: %v", err)
	}
	it = memStore{}.iter()
	it.err = errors.New("io")
	if err := NewKeyedState(KeyedStateConfig{}).Restore(it); err == nil || !strings.Contains(err.Error(), "io") {
		t.Errorf("iterator error: %v", err)
	}
	// Twice; nil.
	s := NewKeyedState(KeyedStateConfig{})
	if err := s.Restore(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(nil); err == nil {
		t.Error("Restore twice: no error")
	}
}

func TestRestore(t *testing.T) {
	now := int64(100)
	clock := func() int64 { return now }
	s := NewKeyedState(KeyedStateConfig{Track: true, Now: clock})
	v := must(Value(s, "v", StringCodec()))
	m := must(Map(s, "m", StringCodec(), Int64Codec(), WithTTL(time.Second)))
	l := must(List(s, "l", BytesCodec()))
	s.SetCurrentKey("k1")
	v.Update("one")
	m.Put("a", 1)
	l.Add([]byte{})
	l.Add([]byte("x"))
	s.RegisterEventTimer(10)
	s.RegisterProcessingTimer(20)
	s.SetCurrentKey("k2")
	v.Update("two")
	m.Put("b", 2)
	s.RegisterEventTimer(10)
	store := memStore{}
	store.apply(run(t, s.Capture()))
	// An entry of a state never registered stays aside.
	store[string(key('v', "other", "k1"))] = []byte("zzz")

	for _, after := range []bool{false, true} {
		r := NewKeyedState(KeyedStateConfig{Track: true, Now: clock})
		if !after {
			if err := r.Restore(store.iter()); err != nil {
				t.Fatal(err)
			}
		}
		rv := must(Value(r, "v", StringCodec()))
		rm := must(Map(r, "m", StringCodec(), Int64Codec(), WithTTL(time.Second)))
		rl := must(List(r, "l", BytesCodec()))
		if after {
			if err := r.Restore(store.iter()); err != nil {
				t.Fatal(err)
			}
		}
		if r.Len() != s.Len() || r.Len() != 8 {
			t.Fatalf("Len() = %d, want %d", r.Len(), s.Len())
		}
		// Restored entries are not written again.
		if es := run(t, r.Capture()); len(es) != 0 {
			t.Fatalf("restore wrote %q", describe(t, es))
		}
		r.SetCurrentKey("k1")
		if x, _ := rv.Value(); x != "one" {
			t.Errorf("value %q", x)
		}
		if x, _ := rm.Get("a"); x != 1 {
			t.Errorf("map %d", x)
		}
		if got := rl.Get(); len(got) != 2 || len(got[0]) != 0 || string(got[1]) != "x" {
			t.Errorf("list %q", got)
		}
		r.SetCurrentKey("k2")
		if x, _ := rv.Value(); x != "two" {
			t.Errorf("value %q", x)
		}
		if ts, ok := r.NextProcessingTimer(); !ok || ts != 20 {
			t.Errorf("NextProcessingTimer() = %d, %v", ts, ok)
		}
		var fired []string
		if err := r.AdvanceWatermark(10, func(k string, ts int64) error {
			fired = append(fired, k)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(fired, []string{"k1", "k2"}) {
			t.Errorf("fired %v", fired)
		}
		// The TTL came back too.
		now = 1100
		r.SetCurrentKey("k1")
		if _, ok := rm.Get("a"); ok {
			t.Error("restored map entry outlived its TTL")
		}
		now = 100
		// The unregistered state decodes once registered.
		o := must(Value(r, "other", StringCodec()))
		r.SetCurrentKey("k1")
		if x, _ := o.Value(); x != "zzz" {
			t.Errorf("other %q", x)
		}
	}
}

// TestUpdateRestoredBeforeFirstCapture: a value, map entry or list restored
// and then changed before the first capture is written by that capture
// (restored cells are not in the dirty set; an update in place must mark
// them).
func TestUpdateRestoredBeforeFirstCapture(t *testing.T) {
	s := NewKeyedState(KeyedStateConfig{Track: true})
	v := must(Value(s, "v", StringCodec()))
	m := must(Map(s, "m", Int64Codec(), StringCodec()))
	s.SetCurrentKey("k")
	v.Update("a")
	m.Put(1, "a")
	m.Put(2, "a")
	store := memStore{}
	store.apply(run(t, s.Capture()))

	r := NewKeyedState(KeyedStateConfig{Track: true})
	if err := r.Restore(store.iter()); err != nil {
		t.Fatal(err)
	}
	rv := must(Value(r, "v", StringCodec()))
	rm := must(Map(r, "m", Int64Codec(), StringCodec()))
	r.SetCurrentKey("k")
	rv.Update("b")
	rm.Put(1, "b")
	rm.Put(1, "c") // twice in the epoch: the second in place
	got := describe(t, run(t, r.Capture()))
	slices.Sort(got)
	want := []string{"m m/k/0000000000000001 = 63", "v v/k = 62"}
	if !slices.Equal(got, want) {
		t.Fatalf("capture after changing restored entries: %q, want %q", got, want)
	}
}
