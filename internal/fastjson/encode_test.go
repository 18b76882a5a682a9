package fastjson

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The types the encoder's differential tests encode (besides event,
// kinds, nested and folds of the decoder's tests).

// quotedTags has the ",string" option on every kind it applies to (and
// on those it does not), omitempty on every kind, and tag names that are
// HTML-escaped.
type quotedTags struct {
	S    string   `json:"s,string"`
	B    bool     `json:"b,string"`
	I    int      `json:"i,string"`
	I8   int8     `json:",string"`
	U16  uint16   `json:"u16,string,omitempty"`
	F32  float32  `json:"f32,string"`
	F64  float64  `json:"f64,string"`
	PS   *string  `json:"ps,string"`
	PI   *int64   `json:"pi,string"`
	PF   *float64 `json:"pf,omitempty,string"`
	In   inner    `json:"in,string"` // not quoted: a struct
	PIn  *inner   `json:"pin,string,omitempty"`
	ES   string   `json:"es,omitempty"`
	EB   bool     `json:"eb,omitempty"`
	EI   int32    `json:"ei,omitempty"`
	EU   uint64   `json:"eu,omitempty"`
	EF32 float32  `json:"ef32,omitempty"`
	EF64 float64  `json:"ef64,omitzero"`
	EP   *bool    `json:"ep,omitempty"`
	EIn  inner    `json:"ein,omitempty"` // never empty
	HTML string   `json:"<a&b>"`
	Opt  int      `json:"opt,unknownoption"`
}

// runningTotal is the bench dataflow workload's output record
// (bench/childmain.go).
type runningTotal struct {
	User  string `json:"user"`
	Seq   int64  `json:"seq"`
	Count int64  `json:"count"`
	Sum   int64  `json:"sum"`
}

// encodeBoth checks that the Encoder and Marshal give json.Marshal's
// bytes and error for v; AppendJSON keeps what dst held.
func encodeBoth[T any](t testing.TB, e *Encoder[T], v T) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	prefix := []byte("prefix")
	got, err := e.AppendJSON(prefix, v)
	if fmt.Sprint(err) != fmt.Sprint(wantErr) {
		t.Fatalf("%T %+v: error %v, encoding/json's %v", v, v, err, wantErr)
	}
	if string(got[:len(prefix)]) != "prefix" {
		t.Fatalf("%T %+v: the buffer's contents changed: %q", v, v, got)
	}
	if err == nil && string(got[len(prefix):]) != string(want) {
		t.Fatalf("%T %+v:\n got %s\nwant %s", v, v, got[len(prefix):], want)
	}
	if err != nil && len(got) != len(prefix) {
		t.Fatalf("%T %+v: error %v and the buffer grew: %q", v, v, err, got)
	}
	got, err = Marshal(v)
	if fmt.Sprint(err) != fmt.Sprint(wantErr) || string(got) != string(want) {
		t.Fatalf("%T %+v: Marshal: %s, %v; encoding/json %s, %v", v, v, got, err, want, wantErr)
	}
}

// Tricky values for the generator.
var (
	encStrings = []string{"", "u123", "a b", `"`, `\`, "/", "\b\f\n\r\t", "\x00", "\x01\x1f", "\x7f", "<script>&amp;</script>",
		"é", "😀", "\xff", "\xed\xa0\x80", "\xe2\x82", "a\xe2\x82", "\u2028", "\u2029", "x\u2028y\u2029z", "\ufffd", "\uFEFF",
		"Kelvin \u212a", `{"a":1}`, `\"\\`, strings.Repeat("long", 20)}
	encFloats = []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1.5, 1e-6, 9.99999e-7, 1e-7, 1e-9, 1e20, 1e21, 999999999999999999999,
		1e-300, 5e-324, math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 123456789.123456789, 1.0 / 3,
		math.MaxFloat32, math.SmallestNonzeroFloat32, 3.4e38, 1e-45, 1e22, 12345678901234567890, 100, 1e6, 1.7e-10}
	encNonFinite = []float64{math.NaN(), math.Inf(1), math.Inf(-1)}
	encInts      = []int64{0, 1, -1, 127, -128, 255, 32767, -32768, 65535, math.MaxInt32, math.MinInt32, math.MaxUint32,
		math.MaxInt64, math.MinInt64, 1_700_000_000_000}
)

// genValue fills v (settable) with random values of its kind: mostly
// tricky ones; pointers nil a third of the time; rarely a NaN or an
// infinity (which make encoding/json fail).
func genEncValue(r *rand.Rand, v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if r.IntN(4) == 0 {
			b := make([]byte, r.IntN(12))
			for i := range b {
				b[i] = byte(r.IntN(256))
			}
			v.SetString(string(b))
			return
		}
		s := pick(r, encStrings)
		if r.IntN(3) == 0 {
			s += pick(r, encStrings)
		}
		v.SetString(s)
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		x := pick(r, encInts)
		if r.IntN(2) == 0 {
			x = int64(r.Uint64())
		}
		v.SetInt(x) // truncated to the size
		if v.Int() != x {
			v.SetInt(int64(int8(x)))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		x := uint64(pick(r, encInts))
		if r.IntN(2) == 0 {
			x = r.Uint64()
		}
		v.SetUint(x)
		if v.Uint() != x {
			v.SetUint(uint64(uint8(x)))
		}
	case reflect.Float32, reflect.Float64:
		var f float64
		switch r.IntN(10) {
		case 0:
			f = math.Float64frombits(r.Uint64())
			if v.Kind() == reflect.Float32 {
				f = float64(math.Float32frombits(r.Uint32()))
			}
		case 1:
			f = r.NormFloat64() * math.Pow(10, float64(r.IntN(60)-30))
		case 2:
			if r.IntN(20) == 0 {
				f = pick(r, encNonFinite)
				break
			}
			fallthrough
		default:
			f = pick(r, encFloats)
			if r.IntN(2) == 0 {
				f = -f
			}
		}
		v.SetFloat(f)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				genEncValue(r, v.Field(i))
			}
		}
	case reflect.Pointer:
		if r.IntN(3) == 0 {
			v.SetZero()
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		genEncValue(r, v.Elem())
	}
	// Zero values now and then, for omitempty.
	if r.IntN(6) == 0 && v.CanSet() && v.Kind() != reflect.Struct {
		v.SetZero()
	}
}

func genEncode[T any](t *testing.T, r *rand.Rand, e *Encoder[T], n int) {
	t.Helper()
	if enabled && e.plan == nil {
		t.Fatalf("%s is not eligible", reflect.TypeFor[T]())
	}
	for range n {
		var v T
		genEncValue(r, reflect.ValueOf(&v).Elem())
		encodeBoth(t, e, v)
	}
}

// TestEncodeRandomized: json.Marshal's bytes and errors for random
// values of the test types.
func TestEncodeRandomized(t *testing.T) {
	seeds := []uint64{*seedFlag}
	if *seedFlag == 0 {
		seeds = []uint64{uint64(time.Now().UnixNano()), uint64(time.Now().UnixNano()) + 1}
	}
	for _, seed := range seeds {
		t.Logf("seed %d (replay: go test -run TestEncodeRandomized -seed %d ./internal/fastjson/)", seed, seed)
		r := rand.New(rand.NewPCG(seed, seed))
		genEncode(t, r, NewEncoder[event](), 5000)
		genEncode(t, r, NewEncoder[kinds](), 5000)
		genEncode(t, r, NewEncoder[nested](), 5000)
		genEncode(t, r, NewEncoder[folds](), 2000)
		genEncode(t, r, NewEncoder[quotedTags](), 10000)
		genEncode(t, r, NewEncoder[runningTotal](), 2000)
	}
}

// TestEncodeHandWritten: the exactness cases one by one.
func TestEncodeHandWritten(t *testing.T) {
	ek := NewEncoder[kinds]()
	for _, s := range append(encStrings, "<>&", "\u2028\u2029", "a\x00b\x1fc\x7fd", "\xc0\xaf", "\xf4\x90\x80\x80", "\xef\xbf\xbf") {
		encodeBoth(t, ek, kinds{S: s, Tagged: s, Named: myString(s)})
	}
	for _, f := range append(encFloats, encNonFinite...) {
		encodeBoth(t, ek, kinds{F64: f, F32: float32(f)})
		encodeBoth(t, ek, kinds{F64: -f, F32: -float32(f)})
	}
	for _, f := range []float32{1e-6, 9.9999e-7, 1e21, 1e20, 0.1, 16777216, 3.4e38, 1.0 / 3} {
		encodeBoth(t, ek, kinds{F32: f, F64: float64(f)})
	}
	encodeBoth(t, ek, kinds{I: math.MinInt64, I8: math.MinInt8, I16: math.MinInt16, I32: math.MinInt32, I64: math.MinInt64,
		U: math.MaxUint64, U8: math.MaxUint8, U16: math.MaxUint16, U32: math.MaxUint32, U64: math.MaxUint64, UP: math.MaxUint64,
		Zero: 5, Skipped: "x", Dash: "-", BadTag: "b", hidden: "h"})

	eq := NewEncoder[quotedTags]()
	s, i, f, b := "a\"b\\c<\u2028\n", int64(-7), math.Copysign(0, -1), false
	encodeBoth(t, eq, quotedTags{})
	encodeBoth(t, eq, quotedTags{S: s, B: true, I: -1, I8: 8, U16: 16, F32: 1e-7, F64: 1e21, PS: &s, PI: &i, PF: &f, PIn: &inner{B: s},
		ES: "x", EB: true, EI: -1, EU: 1, EF32: float32(f), EF64: f, EP: &b, HTML: s})
	nan := math.NaN()
	encodeBoth(t, eq, quotedTags{PF: &nan})
	encodeBoth(t, eq, quotedTags{In: inner{F: math.Inf(-1)}})

	en := NewEncoder[nested]()
	encodeBoth(t, en, nested{})
	encodeBoth(t, en, nested{Name: "n", P: &inner{A: 1}, PI: new(int), PS: new(string), PB: new(bool)})
}

// Fallback types: encoding/json for all of them.
type (
	withMap      struct{ M map[string]int }
	withSlice    struct{ S []int }
	withIface    struct{ V any }
	withTime     struct{ T time.Time }
	withBytes    struct{ B []byte }
	withArray    struct{ A [2]int }
	withNumber   struct{ N json.Number }
	marshalsJSON struct{ A int }
	marshalsPtr  struct{ A int }
	textPtr      struct{ A int }
	withNested   struct{ In marshalsJSON }
	withNestedP  struct{ P *textPtr }
	unexported   struct{ a, b int }
	embedded     struct {
		inner
		X int
	}
	duplicate struct {
		A int `json:"B"` // wins over B
		B int
	}
	recursive struct {
		Next *recursive
	}
	zeroer struct {
		Z isZeroInt `json:",omitzero"`
	}
	structZero struct {
		In inner `json:",omitzero"`
	}
	isZeroInt   int
	namedPtr    *int
	withNamedP  struct{ P namedPtr }
	doublePtr   struct{ P **int }
	textNamed   string
	withTextStr struct{ T textNamed }
)

func (marshalsJSON) MarshalJSON() ([]byte, error) { return []byte(`"custom"`), nil }
func (*marshalsPtr) MarshalJSON() ([]byte, error) { return []byte(`"custom"`), nil }
func (*textPtr) MarshalText() ([]byte, error)     { return []byte("text"), nil }
func (textNamed) MarshalText() ([]byte, error)    { return []byte("text"), nil }
func (z isZeroInt) IsZero() bool                  { return z == 7 }

func fallback[T any](t *testing.T, v T) {
	t.Helper()
	e := NewEncoder[T]()
	if e.plan != nil {
		t.Errorf("%T is eligible, want encoding/json for it", v)
	}
	encodeBoth(t, e, v)
}

func TestEncodeFallback(t *testing.T) {
	n := 3
	fallback(t, withMap{M: map[string]int{"b": 1, "a": 2}})
	fallback(t, withSlice{S: []int{1, 2}})
	fallback(t, withIface{V: 1.5})
	fallback(t, withTime{T: time.Unix(1_700_000_000, 5).UTC()})
	fallback(t, withBytes{B: []byte("hi")})
	fallback(t, withArray{A: [2]int{1, 2}})
	fallback(t, withNumber{N: "12.5"})
	fallback(t, withNumber{N: "bad"})
	fallback(t, marshalsJSON{})
	fallback(t, marshalsPtr{A: 1})
	fallback(t, textPtr{A: 1})
	fallback(t, withNested{})
	fallback(t, withNestedP{P: &textPtr{}})
	fallback(t, unexported{a: 1})
	fallback(t, embedded{inner: inner{A: 1}, X: 2})
	fallback(t, duplicate{A: 1, B: 2})
	fallback(t, recursive{Next: &recursive{}})
	fallback(t, zeroer{Z: 7})
	fallback(t, structZero{In: inner{F: math.Copysign(0, -1)}})
	fallback(t, withNamedP{P: &n})
	fallback(t, doublePtr{})
	fallback(t, withTextStr{T: "x"})
	fallback(t, 5)
	fallback(t, "a<b")
	fallback(t, &event{User: "u"})
	fallback(t, []event{{User: "u"}})
	fallback(t, map[string]event{"k": {}})
	fallback[any](t, event{User: "u"})
}

// BenchmarkEncode: the bench's dataflow output record, fast (AppendJSON
// into a buffer; Marshal) and encoding/json.
func BenchmarkEncode(b *testing.B) {
	values := make([]runningTotal, 1024)
	for i := range values {
		values[i] = runningTotal{User: fmt.Sprintf("u%d", i%1000), Seq: int64(i), Count: int64(i % 17), Sum: int64(i) * 37}
	}
	b.Run("fast-append", func(b *testing.B) {
		e := NewEncoder[runningTotal]()
		buf := make([]byte, 0, 256)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			var err error
			if buf, err = e.AppendJSON(buf[:0], values[i%len(values)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast-marshal", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := Marshal(values[i%len(values)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := json.Marshal(values[i%len(values)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
