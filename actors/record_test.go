package actors

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestJSONExtractor(t *testing.T) {
	ex := JSONExtractor("user", "ts", "amount")
	for _, tc := range []struct {
		in      string
		key     string
		ts      int64
		v       float64
		wantErr string
	}{
		{in: `{"user":"u1","ts":1000,"amount":5}`, key: "u1", ts: 1000, v: 5},
		{in: ` { "amount" : -2.5e1 , "x":{"a":[1,2,{"b":null}]}, "user" : 42, "ts":7 } `, key: "42", ts: 7, v: -25},
		{in: `{"user":"a\"b","ts":1,"amount":0,"f":true,"g":false}`, key: `a"b`, ts: 1, v: 0},
		{in: `{"user":"\u00e9t\u00e9\\\n","ts":1,"amount":0}`, key: "été\\\n", ts: 1, v: 0},
		{in: `[1,2]`, wantErr: "not a JSON object"},
		{in: `{"user":"u1","ts":1000}`, wantErr: `no field "amount"`},
		{in: `{"ts":1000,"amount":1}`, wantErr: `no field "user"`},
		{in: `{"user":"u1","amount":1}`, wantErr: `no field "ts"`},
		{in: `{"user":"u1","ts":"soon","amount":1}`, wantErr: `field "ts"`},
		{in: `{"user":"u1","ts":1.5,"amount":1}`, wantErr: "not whole milliseconds"},
		{in: `{"user":"u1","ts":-1,"amount":1}`, wantErr: "before 1970"},
		{in: `{"user":"u1","ts":1,"amount":1} x`, wantErr: "data after"},
		{in: `{"user":"u1","ts":1,"amount":1`, wantErr: "malformed JSON"},
		{in: `{"user":"u1","ts":1,"amount":1,"z":tru}`, wantErr: "unexpected character"},
		{in: ``, wantErr: "not a JSON object"},
		{in: `{"user":{"a":1},"ts":1,"amount":1}`, wantErr: `field "user"`},
	} {
		key, ts, v, err := ex([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want it to contain %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if string(key) != tc.key || ts != tc.ts || v != tc.v {
			t.Errorf("%s: got (%s,%d,%v), want (%s,%d,%v)", tc.in, key, ts, v, tc.key, tc.ts, tc.v)
		}
	}
}

var seedFlag = flag.Int64("seed", 0, "seed for randomized tests (0: time-based)")

func testSeed(t *testing.T) *rand.Rand {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	return rand.New(rand.NewSource(seed))
}

// TestJSONExtractorFastPathAgrees: on random records built from the
// pieces the fast path decides on (plain and escaped strings, integers,
// decimals, exponents, leading zeros, literals, nesting, whitespace,
// duplicate and missing fields, an empty name), mangled or not, the
// extractor answers exactly as the full scanner alone: the same key,
// event time, value (bit for bit) and error text. With valField empty too.
func TestJSONExtractorFastPathAgrees(t *testing.T) {
	rng := testSeed(t)
	values := []string{`"u17"`, `"a\\"b"`, `"\u0041"`, `""`, `0`, `-0`, `7`, `-12`, `1764028800123`, `01`,
		`0.5`, `-0.0`, `12.25`, `3.`, `.5`, `1e3`, `2E-2`, `123456789012345`, `1234567890123456`, `0.1234567890123456`,
		`99999999999999999999`, `true`, `false`, `null`, `nul`, `{"x":1}`, `[1,2]`, `"tab\there"`, `-`, `1.5e`,
		// Digit runs around the eight-at-a-time reads: 4, 5, 8, 9, 16, 17 and 18 digits, in integers and fractions.
		`1234`, `12345`, `12345678`, `123456789`, `1234567812345678`, `12345678123456789`, `123456781234567890`,
		`0.12345678`, `1234.56789`, `12345678.9`, `9.00000001`, `-98765432.1`, `12345678e1`}
	// Field names: short ones (matched as one word, up to seven bytes), names of eight bytes
	// and more (matched as strings), and names that are a prefix of
	// another name in the record.
	for _, fs := range [][3]string{{"k", "ts", "v"}, {"user_key", "event_timestamp", "amount_value"}, {"ke", "t", "ke_1234"}} {
		kf, tf, vf := fs[0], fs[1], fs[2]
		names := []string{kf, tf, vf, "seq", "", kf + "\\u0000", kf + "x", tf[:len(tf)-1]}
		ws := []string{"", "", "", " ", "\n\t", "\r "}
		const mangle = `{}[]",:0.-e "a\1`
		for _, valField := range []string{vf, ""} {
			took := 0
			fast := JSONExtractor(kf, tf, valField)
			slow := jsonExtractorSlow(kf, tf, valField)
			want := newFieldNames(kf, tf, valField)
			for i := 0; i < 20000; i++ {
				var b strings.Builder
				b.WriteString(ws[rng.Intn(len(ws))] + "{")
				// Half the records hold the three fields (any order) and up to
				// two others; the rest up to five fields of any name.
				var fields []string
				if rng.Intn(2) == 0 {
					fields = []string{kf, tf, vf}
					rng.Shuffle(3, func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
					for e := rng.Intn(3); e > 0; e-- {
						pos := rng.Intn(len(fields) + 1)
						fields = append(fields[:pos], append([]string{names[rng.Intn(len(names))]}, fields[pos:]...)...)
					}
				} else {
					for f := rng.Intn(6); f > 0; f-- {
						fields = append(fields, names[rng.Intn(len(names))])
					}
				}
				for f, name := range fields {
					if f > 0 {
						b.WriteString(ws[rng.Intn(len(ws))] + ",")
					}
					val := values[rng.Intn(len(values))]
					good := rng.Intn(4) != 0
					switch {
					case name == kf && good:
						val = `"key` + string(rune('a'+rng.Intn(26))) + `"`
					case name == tf && good:
						val = strconv.FormatInt(rng.Int63n(1<<(1+rng.Intn(60))), 10)
					case name == vf && good:
						val = strconv.FormatFloat(float64(rng.Intn(2_000_000)-1_000_000)/float64([]int{1, 10, 100, 1000}[rng.Intn(4)]), 'f', -1, 64)
					}
					fmt.Fprintf(&b, "%s\"%s\"%s:%s%s", ws[rng.Intn(len(ws))], name, ws[rng.Intn(len(ws))], ws[rng.Intn(len(ws))], val)
				}
				b.WriteString(ws[rng.Intn(len(ws))] + "}" + ws[rng.Intn(len(ws))])
				rec := []byte(b.String())
				if rng.Intn(4) == 0 { // mangle one byte
					pos := rng.Intn(len(rec))
					rec[pos] = mangle[rng.Intn(len(mangle))]
				}
				if _, _, _, ok := fastExtract(rec, &want); ok {
					took++
				}
				k1, ts1, v1, err1 := fast(rec)
				k2, ts2, v2, err2 := slow(rec)
				if string(k1) != string(k2) || (k1 == nil) != (k2 == nil) || ts1 != ts2 || math.Float64bits(v1) != math.Float64bits(v2) || fmt.Sprint(err1) != fmt.Sprint(err2) {
					t.Fatalf("fields %q, valField %q, %q: extractor (%q, %d, %v, %v), full scanner (%q, %d, %v, %v)", fs, valField, rec, k1, ts1, v1, err1, k2, ts2, v2, err2)
				}
			}
			if took < 1000 {
				t.Fatalf("fields %q, valField %q: the fast path took %d of 20000 records; the test does not exercise it", fs, valField, took)
			}
			t.Logf("fields %q, valField %q: the fast path took %d of 20000 records", fs, valField, took)
		}
	}
}

// TestJSONExtractorEscapedFieldName: field names are compared with the
// names as the record writes them (escapes not decoded). A field name JSON
// would have to escape goes through the full scanner, so a name the
// record ends with a backslash is not taken for it.
func TestJSONExtractorEscapedFieldName(t *testing.T) {
	key, ts, v, err := JSONExtractor(`k\"q`, "ts", "v")([]byte(`{"k\"q":"a","ts":5,"v":1.5}`))
	if err != nil || string(key) != "a" || ts != 5 || v != 1.5 {
		t.Fatalf("got (%q, %d, %v, %v), want (\"a\", 5, 1.5, nil)", key, ts, v, err)
	}
	// "k\":... is not JSON: the string's quote is escaped.
	if key, _, _, err := JSONExtractor(`k\`, "ts", "v")([]byte(`{"k\":"a","ts":5,"v":1.5}`)); err == nil {
		t.Fatalf("took key %q from a record that is not JSON; want an error", key)
	}
}

// TestJSONExtractorAgreesWithEncodingJSON: on random valid and mangled
// objects, the extractor accepts exactly what encoding/json accepts as an
// object with the fields, and reads the same values.
func TestJSONExtractorAgreesWithEncodingJSON(t *testing.T) {
	rng := testSeed(t)
	ex := JSONExtractor("k", "ts", "v")
	for i := 0; i < 5000; i++ {
		obj := map[string]any{"k": "key" + string(rune('a'+rng.Intn(26))), "ts": rng.Int63n(1 << 40), "v": rng.Intn(1000) - 500}
		if rng.Intn(2) == 0 {
			obj["extra"] = []any{1, "two", map[string]any{"three": nil, "four": true}}
		}
		b, _ := json.Marshal(obj)
		if rng.Intn(3) == 0 {
			pos := rng.Intn(len(b))
			b = append(b[:pos:pos], b[pos+1:]...)
		}
		var ref struct {
			K  *string
			TS *int64 `json:"ts"`
			V  *float64
		}
		refErr := json.Unmarshal(b, &ref)
		key, ts, v, err := ex(b)
		if refErr == nil && ref.K != nil && ref.TS != nil && ref.V != nil {
			if err != nil {
				t.Fatalf("%s: extractor failed (%v) where encoding/json succeeded", b, err)
			}
			if string(key) != *ref.K || ts != *ref.TS || v != *ref.V {
				t.Fatalf("%s: got (%s,%d,%v), want (%s,%d,%v)", b, key, ts, v, *ref.K, *ref.TS, *ref.V)
			}
		} else if err == nil && refErr != nil {
			t.Fatalf("%s: extractor accepted what encoding/json refused (%v)", b, refErr)
		}
	}
}

func TestSubtaskForKeyGroup(t *testing.T) {
	for p := 1; p <= KeyGroups; p++ {
		prev := 0
		seen := map[int]bool{}
		for kg := 0; kg < KeyGroups; kg++ {
			s := SubtaskForKeyGroup(kg, p)
			if s < prev || s >= p {
				t.Fatalf("p=%d kg=%d: subtask %d out of order or range", p, kg, s)
			}
			prev = s
			seen[s] = true
		}
		if len(seen) != p {
			t.Fatalf("p=%d: only %d subtasks own key groups", p, len(seen))
		}
	}
}

// TestScannerStrAgreesWithEncodingJSON: random strings of every length
// around the 8-byte steps, of plain, UTF-8, escaped, quote, backslash and
// control bytes at random places: the scanner accepts exactly what
// encoding/json accepts as a string, and ends where it ends.
func TestScannerStrAgreesWithEncodingJSON(t *testing.T) {
	rng := testSeed(t)
	pieces := []string{"a", "Z", "0", " ", "é", "€", "\xff", `\"`, `\\`, `\n`, `\u00e9`, `\u12`, `\x`, `"`, `\`, "\x01", "\x1f", "\x7f", "/"}
	for i := 0; i < 20000; i++ {
		var b []byte
		b = append(b, '"')
		n := rng.Intn(40)
		for j := 0; j < n; j++ {
			if rng.Intn(4) == 0 {
				b = append(b, pieces[rng.Intn(len(pieces))]...)
			} else {
				b = append(b, byte('a'+rng.Intn(26)))
			}
		}
		if rng.Intn(5) != 0 {
			b = append(b, '"')
		}
		b = append(b, ",1"...)
		sc := &scanner{b: b}
		got, err := sc.str()
		// encoding/json's verdict on the first string of b: find its end
		// by trying every prefix that ends in a quote.
		want, wantEnd := -1, -1
		for end := 2; end <= len(b); end++ {
			if b[end-1] == '"' && json.Valid(b[:end]) {
				want, wantEnd = 1, end
				break
			}
		}
		if (err == nil) != (want == 1) {
			t.Fatalf("%q: scanner err %v, encoding/json valid %v", b, err, want == 1)
		}
		if err == nil && (sc.i != wantEnd || string(got) != string(b[1:wantEnd-1])) {
			t.Fatalf("%q: scanner ended at %d with %q, encoding/json at %d", b, sc.i, got, wantEnd)
		}
	}
}

// BenchmarkJSONExtractor: the bench's 100-byte event through the extractor
// of the window jobs (user, ts, amount; seq and pad skipped).
func BenchmarkJSONExtractor(b *testing.B) {
	ev := []byte(`{"user":"u17","ts":1764028800123,"amount":17,"seq":42,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	ex := JSONExtractor("user", "ts", "amount")
	b.SetBytes(int64(len(ev)))
	for i := 0; i < b.N; i++ {
		if _, _, _, err := ex(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPlainEnd: the eight-bytes-at-a-time scan stops where the byte-wise
// one does, for every byte value at every offset of a word and past it.
func TestPlainEnd(t *testing.T) {
	ref := func(b []byte, i int) int {
		for i < len(b) && jsonPlain[b[i]] {
			i++
		}
		return i
	}
	for c := 0; c < 256; c++ {
		for n := 0; n <= 20; n++ {
			for pos := 0; pos <= n; pos++ {
				b := []byte(strings.Repeat("x", n))
				if pos < n {
					b[pos] = byte(c)
				}
				// Bytes after the stop that a borrow could flag.
				if pos+1 < n {
					b[pos+1] = byte(255 - c)
				}
				for start := 0; start <= min(n, 3); start++ {
					if got, want := plainEnd(b, start), ref(b, start); got != want {
						t.Fatalf("plainEnd(%q, %d) = %d, want %d", b, start, got, want)
					}
				}
			}
		}
	}
}
