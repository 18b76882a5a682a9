package fastjson

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"
)

var seedFlag = flag.Uint64("seed", 0, "TestRandomized: replay the run with this seed (0: pick one and print it)")

// The types the differential tests decode.

// event is the benchmark's event (integration/verify's JSON).
type event struct {
	User   string `json:"user"`
	TS     int64  `json:"ts"`
	Amount int64  `json:"amount"`
	Seq    int64  `json:"seq"`
}

type myString string

// kinds has a field of every scalar kind and the tag cases.
type kinds struct {
	S       string
	B       bool
	I       int
	I8      int8
	I16     int16
	I32     int32
	I64     int64
	U       uint
	U8      uint8
	U16     uint16
	U32     uint32
	U64     uint64
	UP      uintptr
	F32     float32
	F64     float64
	Tagged  string   `json:"tagged,omitempty"`
	Skipped string   `json:"-"`
	Dash    string   `json:"-,"`
	BadTag  string   `json:"a\\b"` // not a valid tag name: the Go name
	Named   myString `json:"named"`
	Zero    int      `json:",omitzero"`
	hidden  string
}

type inner struct {
	A int     `json:"a"`
	B string  `json:"b"`
	F float64 `json:"f"`
}

// nested has nested structs and pointers.
type nested struct {
	Name string  `json:"name"`
	In   inner   `json:"in"`
	P    *inner  `json:"p"`
	PI   *int    `json:"pi"`
	PS   *string `json:"ps"`
	PB   *bool   `json:"pb"`
}

// folds has names that fold into each other or into other letters:
// the Kelvin sign folds to K, the long s to S.
type folds struct {
	Kelvin string `json:"K"`
	LongS  string `json:"ſ"`
	Lower  string `json:"x"`
	Upper  string `json:"X"`
	Word   int    `json:"aBc"`
}

// decodeBoth checks one input against encoding/json for T: the fast
// path may only succeed where encoding/json does, with the same value;
// Decoder.Decode and Unmarshal must return encoding/json's value and
// error. It reports whether the fast path decoded it.
func decodeBoth[T any](t testing.TB, dd *Decoder[T], data []byte) (fast bool) {
	t.Helper()
	want := new(T)
	wantErr := json.Unmarshal(data, want)

	if dd.plan != nil {
		var v T
		d := dec{cache: dd.d.cache}
		fast = d.decode(data, unsafe.Pointer(&v), dd.plan)
		if fast && wantErr != nil {
			t.Fatalf("%T %q: the fast path accepted it, encoding/json says %v", v, data, wantErr)
		}
		if fast && !same(reflect.ValueOf(v), reflect.ValueOf(*want)) {
			t.Fatalf("%T %q: the fast path made %+v, encoding/json %+v", v, data, v, *want)
		}
	}
	for name, decode := range map[string]func([]byte) (T, error){"Decoder.Decode": dd.Decode, "Unmarshal": Unmarshal[T]} {
		got, err := decode(data)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("%T %q: %s: error %v, encoding/json's %v", got, data, name, err, wantErr)
		}
		if !same(reflect.ValueOf(got), reflect.ValueOf(*want)) {
			t.Fatalf("%T %q: %s made %+v, encoding/json %+v", got, data, name, got, *want)
		}
	}
	return fast
}

// same is reflect.DeepEqual with floats compared bit for bit (-0 is not
// 0) and unexported fields included.
func same(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return same(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if !same(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Float32, reflect.Float64:
		return math.Float64bits(a.Float()) == math.Float64bits(b.Float())
	case reflect.String:
		return a.String() == b.String()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	}
	panic(fmt.Sprintf("same: kind %v", a.Kind()))
}

// checker decodes inputs as every test type.
type checker struct {
	event  *Decoder[event]
	kinds  *Decoder[kinds]
	nested *Decoder[nested]
	folds  *Decoder[folds]
}

func newChecker() *checker {
	return &checker{NewDecoder[event](), NewDecoder[kinds](), NewDecoder[nested](), NewDecoder[folds]()}
}

// check decodes data as every type and returns how many took the fast
// path.
func (c *checker) check(t testing.TB, data []byte) int {
	t.Helper()
	n := 0
	for _, fast := range []bool{
		decodeBoth(t, c.event, data),
		decodeBoth(t, c.kinds, data),
		decodeBoth(t, c.nested, data),
		decodeBoth(t, c.folds, data),
	} {
		if fast {
			n++
		}
	}
	return n
}

func TestEligible(t *testing.T) {
	type recursive struct {
		Next *recursive
	}
	type embedded struct {
		inner
		X int
	}
	type embeddedPtr struct{ *inner }
	type quoted struct {
		N int `json:"n,string"`
	}
	type unknownOpt struct {
		N int `json:"n,inline"`
	}
	type number struct{ N json.Number }
	type timeField struct{ T time.Time }
	// Two fields of one name (built at run time: go vet rejects the
	// literal).
	dupNames := reflect.StructOf([]reflect.StructField{
		{Name: "A", Type: reflect.TypeFor[int](), Tag: `json:"x"`},
		{Name: "B", Type: reflect.TypeFor[int](), Tag: `json:"x"`},
	})
	type dupTagged struct {
		A int `json:"X"`
		X int
	}
	type slice struct{ S []int }
	type bytes struct{ B []byte }
	type mapField struct{ M map[string]int }
	type iface struct{ I any }
	type ptrPtr struct{ P **int }
	type array struct{ A [2]int }
	type durations struct{ D time.Duration } // int64 without methods: eligible
	for _, tc := range []struct {
		t    reflect.Type
		want bool
	}{
		{reflect.TypeFor[event](), true},
		{reflect.TypeFor[kinds](), true},
		{reflect.TypeFor[nested](), true},
		{reflect.TypeFor[folds](), true},
		{reflect.TypeFor[durations](), true},
		{reflect.TypeFor[struct{}](), true},
		{reflect.TypeFor[recursive](), false},
		{reflect.TypeFor[embedded](), false},
		{reflect.TypeFor[embeddedPtr](), false},
		{reflect.TypeFor[quoted](), false},
		{reflect.TypeFor[unknownOpt](), false},
		{reflect.TypeFor[number](), false},
		{reflect.TypeFor[timeField](), false},
		{reflect.TypeFor[time.Time](), false},
		{dupNames, false},
		{reflect.TypeFor[dupTagged](), false},
		{reflect.TypeFor[slice](), false},
		{reflect.TypeFor[bytes](), false},
		{reflect.TypeFor[mapField](), false},
		{reflect.TypeFor[iface](), false},
		{reflect.TypeFor[ptrPtr](), false},
		{reflect.TypeFor[array](), false},
		{reflect.TypeFor[*event](), false},
		{reflect.TypeFor[int](), false},
		{reflect.TypeFor[map[string]any](), false},
	} {
		if got := planFor(tc.t) != nil; got != (tc.want && enabled) {
			t.Errorf("%v: eligible %v, want %v", tc.t, got, tc.want)
		}
	}
}

// handWritten are inputs with the fast path's expected verdict for the
// event type ("fast": decoded without encoding/json). Every one is also
// checked against encoding/json for every test type.
var handWritten = []struct {
	in   string
	fast bool
}{
	{`{"user":"u123","ts":1700000000000,"amount":73,"seq":42}`, true},
	{`{"user":"u1","seq":42,"ts":1700000000000,"amount":73,"extra":{"a":[1,2,{"b":null}],"c":"x"},"more":[true,false,null,-1.5e-3]}`, true},
	{" \t\r\n{ \"user\" : \"u1\" ,\n\"ts\":\t1 } \n", true},
	{`{}`, true},
	{`{"user":null,"ts":null}`, true},
	{`{"user":"a","user":"b","ts":1,"ts":2}`, true},
	{`{"user":"a","user":null}`, true},
	{`{"user":"caf\u00e9 \"q\" \\ \/ \b\f\n\r\t"}`, true},
	{`{"user":"\ud83d\ude00 \ud83d \ude00 \ud83d\u0041 \ud83dx"}`, true},
	{"{\"user\":\"caf\xc3\xa9 \xff \xed\xa0\x80 \xe2\x82\"}", true},
	{`{"user":"😀 é"}`, true},
	{`{"ts":-0,"amount":9223372036854775807,"seq":-9223372036854775808}`, true},
	{`{"ts":9223372036854775808}`, false},  // out of range: encoding/json's error
	{`{"ts":-9223372036854775809}`, false}, // out of range
	{`{"ts":1.0}`, false},                  // not an integer
	{`{"ts":1e3}`, false},                  // not an integer
	{`{"ts":"1"}`, false},                  // a string
	{`{"user":1}`, false},                  // a number
	{`{"user":true}`, false},               // a bool
	{`{"user":{}}`, false},                 // an object
	{`{"USER":"u1"}`, false},               // matches only case-insensitively
	{`{"User":"u1","user":"u2"}`, false},   // one folded, one exact
	{`{"us\u0065r":"u1"}`, false},          // an escaped key
	{`{"ſ":"u1"}`, false},                  // a key other than ASCII
	{`{"other":1,"Other":2}`, true},        // unknown either way
	{`null`, false},
	{` null `, false},
	{`[]`, false},
	{`"x"`, false},
	{`1`, false},
	{``, false},
	{`{`, false},
	{`{"user":"u1"`, false},
	{`{"user":"u1",}`, false},
	{`{"user":"u1"}x`, false},
	{`{"user":"u1"}{}`, false},
	{`{"user" "u1"}`, false},
	{`{user:"u1"}`, false},
	{`{"user":'u1'}`, false},
	{`{"ts":01}`, false},
	{`{"ts":+1}`, false},
	{`{"ts":.5}`, false},
	{`{"ts":1.}`, false},
	{`{"ts":1e}`, false},
	{`{"ts":-}`, false},
	{`{"ts":0x10}`, false},
	{`{"ts":NaN}`, false},
	{`{"ts":tru}`, false},
	{`{"x":tru}`, false},
	{`{"x":nul}`, false},
	{`{"x":[1,]}`, false},
	{`{"x":[1 2]}`, false},
	{`{"x":{"a":1,}}`, false},
	{`{"x":{"a" 1}}`, false},
	{`{"x":{1:1}}`, false},
	{`{"x":"\x"}`, false},
	{`{"x":"\'"}`, false},
	{`{"x":"\u12"}`, false},
	{`{"x":"\uZZZZ"}`, false},
	{"{\"x\":\"a\x01b\"}", false},
	{"{\"user\":\"a\tb\"}", false},
	{"{\"user\":\"a\x00b\"}", false},
	{"\xef\xbb\xbf{}", false}, // a byte order mark
	{"{\"user\":\"u1\"}\f", false},
	{"{\"user\":\"u1\"\v}", false},
	{`{"user":"\u0000"}`, true},
	{`{"x":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`, false}, // deeper than the fast path goes
	{`{"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`, false},
	{`{"x":` + strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat("}", 100) + `}`, true},
	// The other types' fields.
	{`{"S":"s","B":true,"I":-1,"I8":-128,"I16":-32768,"I32":-2147483648,"I64":-9223372036854775808,"U":18446744073709551615,"U8":255,"U16":65535,"U32":4294967295,"U64":18446744073709551615,"UP":1,"F32":3.4028234663852886e38,"F64":-0,"tagged":"t","Skipped":"no","-":"dash","BadTag":"bt","named":"n","Zero":0,"hidden":"h"}`, true},
	{`{"I8":128}`, true}, {`{"I8":-129}`, true}, {`{"U8":256}`, true}, {`{"U":-0}`, true}, {`{"U":-1}`, true},
	{`{"U64":18446744073709551616}`, true}, {`{"I":123456789012345678901234567890}`, true},
	{`{"F32":3.5e38}`, true}, {`{"F64":1e400}`, true}, {`{"F64":-1e400}`, true}, {`{"F64":1e-400}`, true},
	{`{"F64":4.9e-324}`, true}, {`{"F64":2.5e-324}`, true}, {`{"F32":1e-46}`, true}, {`{"F64":1E+3}`, true},
	{`{"F64":0.1}`, true}, {`{"F32":0.1}`, true}, {`{"F64":123456789012345678901234567890.5e-10}`, true},
	{`{"B":false,"B":true}`, true}, {`{"B":1}`, true}, {`{"B":"true"}`, true}, {`{"B":null}`, true},
	{`{"s":"lower"}`, true}, {`{"tagged":"x","Tagged":"y"}`, true},
	{`{"name":"n","in":{"a":1,"b":"x","f":2.5,"zz":[]},"p":{"a":2},"pi":3,"ps":"s","pb":true}`, true},
	{`{"p":{"a":2},"p":{"b":"y"}}`, true}, {`{"p":{"a":2},"p":null}`, true}, {`{"p":null,"p":{"a":1}}`, true},
	{`{"in":{"a":1},"in":{"b":"x"}}`, true}, {`{"in":null}`, true}, {`{"in":[]}`, true}, {`{"p":[]}`, true},
	{`{"pi":null}`, true}, {`{"pi":"1"}`, true}, {`{"pi":1.5}`, true}, {`{"in":{"A":1}}`, true},
	{`{"K":"kelvin","ſ":"long s"}`, false}, {`{"k":"k"}`, true}, {`{"S":"s"}`, true}, {`{"s":"s"}`, true},
	{`{"x":"x","X":"X"}`, true}, {`{"abc":1}`, true}, {`{"ABC":1}`, true}, {`{"aBc":1}`, true},
	{`{"K":"ascii K"}`, true},
}

func TestHandWritten(t *testing.T) {
	c := newChecker()
	for _, tc := range handWritten {
		fast := decodeBoth(t, c.event, []byte(tc.in))
		if fast != (tc.fast && enabled) {
			t.Errorf("%q: fast path %v, want %v", tc.in, fast, tc.fast)
		}
		c.check(t, []byte(tc.in))
	}
}

// TestCacheKeepsValues: strings from the cache are the strings decoded,
// also once the cache starts over, and a field whose strings do not
// repeat stops using it without changing what it decodes.
func TestCacheKeepsValues(t *testing.T) {
	dd := NewDecoder[event]()
	for i := range 3 * cacheEntriesMax {
		user := fmt.Sprintf("u%d", i%(cacheEntriesMax+7))
		if i%5 == 0 {
			user = fmt.Sprintf("unique-%d", i)
		}
		in := fmt.Sprintf(`{"user":%q,"ts":%d}`, user, i)
		got, err := dd.Decode([]byte(in))
		if err != nil || got.User != user || got.TS != int64(i) {
			t.Fatalf("%s: %+v, %v", in, got, err)
		}
	}
}

func TestRandomized(t *testing.T) {
	seeds := []uint64{*seedFlag}
	if *seedFlag == 0 {
		seeds = []uint64{uint64(time.Now().UnixNano()), uint64(time.Now().UnixNano()) + 1}
	}
	for _, seed := range seeds {
		t.Logf("seed %d (replay: go test -run TestRandomized -seed %d ./internal/fastjson/)", seed, seed)
		r := rand.New(rand.NewPCG(seed, seed))
		c := newChecker()
		inputs, valid, fast := 0, 0, 0
		for range 20000 {
			in := genInput(r)
			inputs++
			if json.Valid(in) {
				valid++
			}
			fast += c.check(t, in)
			if t.Failed() {
				t.Fatalf("seed %d", seed)
			}
		}
		t.Logf("%d inputs, %d valid JSON, %d decodings (of %d) on the fast path", inputs, valid, fast, 4*inputs)
		if valid < inputs/4 || (enabled && fast < inputs/4) {
			t.Fatalf("seed %d: the generator made too few valid inputs (%d) or fast decodings (%d) of %d to test much", seed, valid, fast, inputs)
		}
	}
}

// The generator's pools.
var (
	genKeys = []string{"user", "ts", "amount", "seq", "S", "B", "I", "I8", "I16", "I32", "I64", "U", "U8", "U16", "U32", "U64",
		"UP", "F32", "F64", "tagged", "Skipped", "-", "BadTag", "named", "Zero", "hidden", "name", "in", "p", "pi", "ps", "pb",
		"a", "b", "f", "K", "ſ", "x", "X", "aBc", "k", "s", "ABC",
		"USER", "Ts", "i8", "f64", "IN", "extra", "", "us\\u0065r", "\\u0074s", "é", "ſeq", "kelvin"}
	genNumbers = []string{"0", "-0", "1", "-1", "127", "128", "-128", "-129", "255", "256", "32767", "32768", "-32769", "65535", "65536",
		"2147483647", "2147483648", "-2147483648", "-2147483649", "4294967295", "4294967296",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
		"18446744073709551615", "18446744073709551616", "123456789012345678901234567890",
		"1.5", "-0.0", "0.1", "1e3", "1E+3", "1e-3", "1e400", "-1e400", "3.4028235e38", "3.5e38", "1e-50", "4.9e-324", "2.5e-324",
		"1.7976931348623157e308", "1.7976931348623159e308", "01", "1.", "-", ".5", "1e", "+1", "0x10", "NaN", "1_0", "1.5e+"}
	genStrings = []string{"", "u123", "a b", `\"`, `\\`, `\/`, `\b\f\n\r\t`, `\u00e9`, `\u0000`, `\ud83d\ude00`, `\ud83d`, `\ude00`,
		`\ud83d\u0041`, `\uD83D\uDE00`, `\uZZZZ`, `\x`, `\'`, "é", "😀", "\xff", "\xed\xa0\x80", "\xe2\x82", "\x01", "\t", "\x7f",
		strings.Repeat("long", 20)}
	genSpace = []string{"", "", "", " ", "\t", "\n", "\r\n", "  ", "\f", "\v"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

// genInput is a random object with the test types' keys and others, or
// its mutation. Half of the objects are typed: their keys are the test
// types' fields with values of the fields' kinds, mostly (near the
// limits of the kinds, with escapes), so that many take the fast path.
func genInput(r *rand.Rand) []byte {
	var b []byte
	b = genObject(r, b, 0, r.IntN(2) == 0)
	if r.IntN(4) == 0 {
		for range 1 + r.IntN(3) {
			b = mutate(r, b)
		}
	}
	return b
}

// genTyped: the test types' keys by the kind of their values.
var genTyped = map[byte][]string{
	's': {"user", "S", "tagged", "Skipped", "-", "BadTag", "named", "hidden", "name", "ps", "b", "K", "ſ", "x", "X"},
	'i': {"ts", "amount", "seq", "I", "I8", "I16", "I32", "I64", "Zero", "pi", "a", "aBc"},
	'u': {"U", "U8", "U16", "U32", "U64", "UP"},
	'f': {"F32", "F64", "f"},
	'b': {"B", "pb"},
	'o': {"in", "p"},
}

const genKinds = "siufbo"

// genTypedValue appends a value of kind k (or, now and then, null or
// any value).
func genTypedValue(r *rand.Rand, b []byte, k byte, depth int) []byte {
	switch r.IntN(20) {
	case 0:
		return append(b, "null"...)
	case 1:
		return genValue(r, b, depth)
	}
	switch k {
	case 's':
		b = append(b, '"')
		for range r.IntN(4) {
			if r.IntN(3) == 0 {
				b = append(b, pick(r, genStrings)...)
			} else {
				b = fmt.Appendf(b, "u%d", r.IntN(20))
			}
		}
		return append(b, '"')
	case 'i', 'u':
		if r.IntN(2) == 0 {
			return append(b, pick(r, genNumbers[:28])...) // the integers
		}
		return strconvAppendNumber(r, b)
	case 'f':
		if r.IntN(2) == 0 {
			return append(b, pick(r, genNumbers)...)
		}
		return strconvAppendNumber(r, b)
	case 'b':
		return append(b, pick(r, []string{"true", "false"})...)
	}
	return genObject(r, b, depth, true)
}

func space(r *rand.Rand, b []byte) []byte {
	if r.IntN(200) == 0 {
		return append(b, pick(r, genSpace)...) // perhaps a space JSON does not allow
	}
	if r.IntN(4) == 0 {
		return append(b, pick(r, genSpace[:8])...)
	}
	return b
}

func genObject(r *rand.Rand, b []byte, depth int, typed bool) []byte {
	b = space(r, b)
	b = append(b, '{')
	for i := range r.IntN(8) {
		if i > 0 {
			b = space(r, b)
			b = append(b, ',')
		}
		b = space(r, b)
		k := genKinds[r.IntN(len(genKinds))]
		if depth > 3 {
			k = genKinds[r.IntN(len(genKinds)-1)] // no more objects
		}
		key := pick(r, genKeys)
		if typed {
			key = pick(r, genTyped[k])
		}
		b = append(b, '"')
		b = append(b, key...)
		b = append(b, '"')
		b = space(r, b)
		b = append(b, ':')
		b = space(r, b)
		if typed {
			b = genTypedValue(r, b, k, depth+1)
		} else {
			b = genValue(r, b, depth+1)
		}
	}
	b = space(r, b)
	b = append(b, '}')
	return space(r, b)
}

func genValue(r *rand.Rand, b []byte, depth int) []byte {
	n := 10
	if depth > 4 {
		n = 7 // no more containers
	}
	switch r.IntN(n) {
	case 0, 1:
		b = append(b, '"')
		for range r.IntN(4) {
			b = append(b, pick(r, genStrings)...)
		}
		return append(b, '"')
	case 2:
		return append(b, pick(r, genNumbers)...)
	case 3:
		return strconvAppendNumber(r, b)
	case 4:
		return append(b, pick(r, []string{"true", "false", "null", "null"})...)
	case 5:
		return append(b, fmt.Sprintf(`"u%d"`, r.IntN(20))...)
	case 6:
		return append(b, fmt.Sprint(r.IntN(1000))...)
	case 7, 8:
		return genObject(r, b, depth, false)
	default:
		b = append(b, '[')
		for i := range r.IntN(4) {
			if i > 0 {
				b = append(b, ',')
			}
			b = space(r, b)
			b = genValue(r, b, depth+1)
		}
		return append(b, ']')
	}
}

// strconvAppendNumber appends a random valid number of any magnitude.
func strconvAppendNumber(r *rand.Rand, b []byte) []byte {
	switch r.IntN(4) {
	case 0:
		return fmt.Append(b, int64(r.Uint64()))
	case 1:
		return fmt.Append(b, r.Uint64()>>r.IntN(64))
	case 2:
		return fmt.Append(b, r.NormFloat64()*math.Pow(10, float64(r.IntN(80)-40)))
	default:
		return fmt.Appendf(b, "%de%d", r.IntN(100), r.IntN(50)-25)
	}
}

// mutate changes, deletes, inserts or truncates a byte.
func mutate(r *rand.Rand, b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	i := r.IntN(len(b))
	const alphabet = "{}[]\",:\\ 0123456789-+.eEtrufalsn\x00\x80\xff"
	switch r.IntN(4) {
	case 0:
		b[i] = alphabet[r.IntN(len(alphabet))]
	case 1:
		b = append(b[:i], b[i+1:]...)
	case 2:
		b = append(b[:i], append([]byte{alphabet[r.IntN(len(alphabet))]}, b[i:]...)...)
	default:
		b = b[:i]
	}
	return b
}
