package weir

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/operator"
)

// TestJSONFormatDecoderAllocations: a source subtask decoding JSON events
// whose strings repeat allocates only the batch (one slice per batch),
// with JSON and KeyedJSON.
func TestJSONFormatDecoderAllocations(t *testing.T) {
	values := make([][]byte, 1000)
	for i := range values {
		values[i] = fmt.Appendf(nil, `{"user":"u%d","ts":%d,"amount":%d,"seq":%d}`, i%50, 1_700_000_000_000+i, i%100, i)
	}
	for name, format := range map[string]Format[ev]{
		"JSON":      JSON[ev](),
		"KeyedJSON": KeyedJSON(func(e ev) string { return e.User }),
	} {
		d := &decoder[ev]{format: format, ts: func(e ev) int64 { return e.TS }}
		batch := func() {
			for off, v := range values {
				if _, err := d.Decode(nil, v, 0, 0, int64(off)); err != nil {
					t.Fatal(err)
				}
				d.Keep()
			}
			d.Take()
		}
		batch() // the strings into the cache, the batch size learnt
		if allocs := testing.AllocsPerRun(20, batch); allocs > 1 {
			t.Errorf("%s: %v allocations per batch of %d records, want at most 1 (the batch)", name, allocs, len(values))
		}
	}
}

// TestJSONFormatDecodeAsEncodingJSON: the JSON format's values and errors
// are encoding/json's, through a source's decoder and through Decode.
func TestJSONFormatDecodeAsEncodingJSON(t *testing.T) {
	format := JSON[ev]()
	d := &decoder[ev]{format: format}
	for _, in := range []string{
		`{"user":"u1","ts":1,"amount":2,"seq":3}`,
		`{"user":"u1","USER":"u2","Ts":5,"other":[1,{"x":null}]}`,
		`{"user":"caf\u00e9\ud83d","ts":null}`,
		`{"user":"u1","ts":"1"}`,
		`{"ts":9223372036854775808}`,
		`{"user":"u1"`,
		`null`,
		``,
	} {
		var want ev
		var wantErr error
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			wantErr = fmt.Errorf("JSON of weir.ev: %w", err)
		}
		v, err := format.Decode(nil, []byte(in))
		if v != want || fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Errorf("Decode(%s) = %+v, %v; encoding/json: %+v, %v", in, v, err, want, wantErr)
		}
		_, err = d.Decode(nil, []byte(in), 0, 0, 0)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Errorf("decoder.Decode(%s): %v; encoding/json: %v", in, err, wantErr)
			continue
		}
		if err == nil {
			if d.next.V != want {
				t.Errorf("decoder.Decode(%s) = %+v; encoding/json: %+v", in, d.next.V, want)
			}
			d.Keep()
		}
	}
}

// sinkOut is a result record for the JSON sink tests: strings that need
// escaping, a float, a pointer and a ",string" option.
type sinkOut struct {
	User  string  `json:"user"`
	Seq   int64   `json:"seq"`
	Avg   float64 `json:"avg,omitempty"`
	Note  *string `json:"note"`
	Count int64   `json:"count,string"`
}

// TestJSONFormatSinkEncode: a sink writing with JSON and KeyedJSON sends
// records whose values are encoding/json.Marshal's bytes (and whose keys
// are the key function's), across its arenas and for a record larger
// than one; a value encoding/json cannot encode (a NaN) is its error; and
// records cost fewer than one allocation each (no Marshal per record).
func TestJSONFormatSinkEncode(t *testing.T) {
	note := "a <b> & \"c\"\n\u2028\xff"
	for name, format := range map[string]Format[sinkOut]{
		"JSON":      JSON[sinkOut](),
		"KeyedJSON": KeyedJSON(func(o sinkOut) string { return o.User }),
	} {
		keyed := name == "KeyedJSON"
		var got []actors.RawRecord
		var errs []error
		w := newRawBatch[sinkOut](format, func(_ int, data any, _ int) { got = append(got, data.([]actors.RawRecord)...) }, 0, 300,
			func(err error) { errs = append(errs, err) })
		if w.app == nil {
			t.Fatalf("%s: the format is not used as an appendEncoder (a json.Marshal per record)", name)
		}
		var want []sinkOut
		for i := 0; i < 3000; i++ {
			o := sinkOut{User: fmt.Sprintf("u%d", i%100), Seq: int64(i), Avg: float64(i) / 7, Count: int64(i % 5)}
			switch {
			case i%3 == 0:
				o.Note = &note
			case i == 1234:
				o.User = strings.Repeat("<big>", arenaSize/4) // larger than an arena
			}
			want = append(want, o)
			w.Emit(operator.Rec[sinkOut]{V: o})
		}
		w.Emit(operator.Rec[sinkOut]{V: sinkOut{Avg: math.NaN()}})
		w.flush()
		if len(got) != len(want) {
			t.Fatalf("%s: %d records sent, want %d", name, len(got), len(want))
		}
		for i, o := range want {
			v, _ := json.Marshal(o)
			k := ""
			if keyed {
				k = o.User
			}
			if string(got[i].Value) != string(v) || string(got[i].Key) != k {
				t.Fatalf("%s: record %d: %q=%s, want %q=%s", name, i, got[i].Key, got[i].Value, k, v)
			}
			if len(got[i].Key) != cap(got[i].Key) || len(got[i].Value) != cap(got[i].Value) {
				t.Fatalf("%s: record %d: key or value has room after it (an append would write into the next record)", name, i)
			}
		}
		_, wantErr := json.Marshal(sinkOut{Avg: math.NaN()})
		if len(errs) != 1 || errs[0].Error() != wantErr.Error() {
			t.Errorf("%s: errors %v, want encoding/json's %v", name, errs, wantErr)
		}
		// Encode (a sink without the arena) gives the same bytes.
		for _, o := range want[:50] {
			k, v, err := format.Encode(o)
			wv, _ := json.Marshal(o)
			if err != nil || string(v) != string(wv) || keyed != (k != nil) {
				t.Fatalf("%s: Encode(%+v) = %q, %s, %v; want %s", name, o, k, v, err, wv)
			}
		}
		o := sinkOut{User: "u1", Seq: 1, Avg: 0.5, Count: 3}
		if allocs := testing.AllocsPerRun(20, func() {
			for range 1000 {
				w.Emit(operator.Rec[sinkOut]{V: o})
			}
			w.flush()
		}); allocs > 100 {
			t.Errorf("%s: %v allocations per 1000 records, want fewer than 100", name, allocs)
		}
	}
	// A type the fast encoder does not take (a slice): encoding/json's.
	type tagged struct {
		User string   `json:"user"`
		Tags []string `json:"tags"`
	}
	k, v, err := KeyedJSON(func(o tagged) string { return o.User }).Encode(tagged{User: "u<1>", Tags: []string{note}})
	wv, _ := json.Marshal(tagged{User: "u<1>", Tags: []string{note}})
	if err != nil || string(k) != "u<1>" || string(v) != string(wv) {
		t.Errorf("KeyedJSON of a struct with a slice: %q, %s, %v; want %s", k, v, err, wv)
	}
}
