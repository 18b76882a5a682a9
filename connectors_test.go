package weir

import (
	"encoding/json"
	"fmt"
	"testing"
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
