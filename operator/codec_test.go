package operator

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

type point struct {
	X, Y int
	Name string
}

// roundTrip encodes v after a prefix (Append must append) and decodes it.
func roundTrip[T any](t *testing.T, c Codec[T], v T) T {
	t.Helper()
	prefix := []byte("pre")
	b, err := c.Append(bytes.Clone(prefix), v)
	if err != nil {
		t.Fatalf("Append(%v): %v", v, err)
	}
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("Append(%v) = %q, lost the prefix", v, b)
	}
	got, err := c.Decode(b[len(prefix):])
	if err != nil {
		t.Fatalf("Decode(Append(%v)): %v", v, err)
	}
	return got
}

func checkRoundTrips[T any](t *testing.T, name string, c Codec[T], vs []T) {
	t.Run(name, func(t *testing.T) {
		for _, v := range vs {
			if got := roundTrip(t, c, v); !reflect.DeepEqual(got, v) {
				t.Errorf("round trip of %#v = %#v", v, got)
			}
		}
	})
}

func TestCodecRoundTrips(t *testing.T) {
	checkRoundTrips(t, "string", StringCodec(), []string{"", "a", "héllo\x00wörld", strings.Repeat("x", 1000)})
	checkRoundTrips(t, "bytes", BytesCodec(), [][]byte{{}, {0}, {1, 2, 3, 255}})
	checkRoundTrips(t, "int64", Int64Codec(), []int64{0, 1, -1, math.MaxInt64, math.MinInt64})
	checkRoundTrips(t, "int", IntCodec(), []int{0, 1, -1, math.MaxInt, math.MinInt})
	checkRoundTrips(t, "uint64", Uint64Codec(), []uint64{0, 1, math.MaxUint64})
	checkRoundTrips(t, "float64", Float64Codec(), []float64{0, -1.5, math.Pi, math.Inf(1), math.Inf(-1), math.MaxFloat64, math.SmallestNonzeroFloat64})
	checkRoundTrips(t, "bool", BoolCodec(), []bool{false, true})
	checkRoundTrips(t, "json struct", JSONCodec[point](), []point{{}, {1, -2, "a"}})
	checkRoundTrips(t, "json map", JSONCodec[map[string]int](), []map[string]int{{"a": 1, "b": 2}})
	checkRoundTrips(t, "default int32", DefaultCodec[int32](), []int32{0, -1, math.MaxInt32, math.MinInt32})
	checkRoundTrips(t, "default struct", DefaultCodec[point](), []point{{3, 4, "p"}})
	checkRoundTrips(t, "default string", DefaultCodec[string](), []string{"", "k"})

	// NaN is not equal to itself: compare the bits.
	nan := math.Float64frombits(0x7ff8000000000001)
	if got := roundTrip(t, Float64Codec(), nan); math.Float64bits(got) != math.Float64bits(nan) {
		t.Errorf("NaN round trip: bits %x", math.Float64bits(got))
	}
	// A nil []byte decodes as an empty one.
	if got := roundTrip(t, BytesCodec(), nil); got == nil || len(got) != 0 {
		t.Errorf("nil []byte round trip = %#v, want empty non-nil", got)
	}
}

func TestCodecDecodeCopies(t *testing.T) {
	b := []byte("abc")
	got, _ := BytesCodec().Decode(b)
	b[0] = 'X'
	if string(got) != "abc" {
		t.Errorf("BytesCodec.Decode kept its input: %q", got)
	}
}

func TestCodecEncodings(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  func() ([]byte, error)
		want []byte
	}{
		{"int64", func() ([]byte, error) { return Int64Codec().Append(nil, 0x0102030405060708) }, []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{"int64 -1", func() ([]byte, error) { return Int64Codec().Append(nil, -1) }, bytes.Repeat([]byte{0xff}, 8)},
		{"int", func() ([]byte, error) { return IntCodec().Append(nil, 258) }, []byte{0, 0, 0, 0, 0, 0, 1, 2}},
		{"uint64", func() ([]byte, error) { return Uint64Codec().Append(nil, 1<<63) }, []byte{0x80, 0, 0, 0, 0, 0, 0, 0}},
		{"float64", func() ([]byte, error) { return Float64Codec().Append(nil, 1) }, []byte{0x3f, 0xf0, 0, 0, 0, 0, 0, 0}},
		{"int32", func() ([]byte, error) { return DefaultCodec[int32]().Append(nil, 258) }, []byte{0, 0, 1, 2}},
		{"bool", func() ([]byte, error) { return BoolCodec().Append(nil, true) }, []byte{1}},
		{"string", func() ([]byte, error) { return StringCodec().Append(nil, "ab") }, []byte("ab")},
		{"json", func() ([]byte, error) { return JSONCodec[point]().Append(nil, point{1, 2, "n"}) }, []byte(`{"X":1,"Y":2,"Name":"n"}`)},
	} {
		got, err := tc.got()
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got %x, %v; want %x", tc.name, got, err, tc.want)
		}
	}
}

func TestCodecDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		decode func([]byte) error
		in     []byte
		want   string
	}{
		{"int64 short", func(b []byte) error { _, err := Int64Codec().Decode(b); return err }, []byte{1, 2, 3}, "operator: int64 codec: 3 bytes, want 8"},
		{"int64 long", func(b []byte) error { _, err := Int64Codec().Decode(b); return err }, make([]byte, 9), "operator: int64 codec: 9 bytes, want 8"},
		{"int64 empty", func(b []byte) error { _, err := Int64Codec().Decode(b); return err }, nil, "operator: int64 codec: 0 bytes, want 8"},
		{"int", func(b []byte) error { _, err := IntCodec().Decode(b); return err }, []byte{1}, "operator: int codec: 1 bytes, want 8"},
		{"uint64", func(b []byte) error { _, err := Uint64Codec().Decode(b); return err }, make([]byte, 7), "operator: uint64 codec: 7 bytes, want 8"},
		{"float64", func(b []byte) error { _, err := Float64Codec().Decode(b); return err }, make([]byte, 4), "operator: float64 codec: 4 bytes, want 8"},
		{"int32", func(b []byte) error { _, err := DefaultCodec[int32]().Decode(b); return err }, make([]byte, 8), "operator: int32 codec: 8 bytes, want 4"},
		{"bool length", func(b []byte) error { _, err := BoolCodec().Decode(b); return err }, []byte{1, 0}, "operator: bool codec: 2 bytes, want 1"},
		{"bool byte", func(b []byte) error { _, err := BoolCodec().Decode(b); return err }, []byte{2}, "operator: bool codec: byte 2, want 0 or 1"},
		{"json syntax", func(b []byte) error { _, err := JSONCodec[point]().Decode(b); return err }, []byte(`{"X":`), "operator: json codec: decode 5 bytes into operator.point: unexpected end of JSON input"},
		{"json type", func(b []byte) error { _, err := JSONCodec[point]().Decode(b); return err }, []byte(`{"X":"a"}`), "operator: json codec: decode 9 bytes into operator.point: json: cannot unmarshal"},
		{"json empty", func(b []byte) error { _, err := JSONCodec[int]().Decode(b); return err }, nil, "operator: json codec: decode 0 bytes into int: unexpected end of JSON input"},
	} {
		err := tc.decode(tc.in)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: Decode(%x) error %v, want %q", tc.name, tc.in, err, tc.want)
		}
	}
	// Strings and bytes take any input.
	if _, err := StringCodec().Decode([]byte{0xff, 0}); err != nil {
		t.Errorf("StringCodec: %v", err)
	}
}

func TestCodecEncodeError(t *testing.T) {
	_, err := JSONCodec[float64]().Append(nil, math.NaN())
	if err == nil || !strings.HasPrefix(err.Error(), "operator: json codec: encode float64: ") {
		t.Errorf("encode NaN: %v", err)
	}
	_, err = JSONCodec[chan int]().Append(nil, make(chan int))
	if err == nil || !strings.Contains(err.Error(), "chan int") {
		t.Errorf("encode chan: %v", err)
	}
}

func TestDefaultCodec(t *testing.T) {
	type named string
	for _, tc := range []struct {
		got  any
		want any
	}{
		{DefaultCodec[string](), stringCodec{}},
		{DefaultCodec[[]byte](), bytesCodec{}},
		{DefaultCodec[int](), intCodec{}},
		{DefaultCodec[int64](), int64Codec{}},
		{DefaultCodec[uint64](), uint64Codec{}},
		{DefaultCodec[int32](), int32Codec{}},
		{DefaultCodec[float64](), float64Codec{}},
		{DefaultCodec[bool](), boolCodec{}},
		{DefaultCodec[point](), jsonCodec[point]{}},
		{DefaultCodec[named](), jsonCodec[named]{}},
		{DefaultCodec[any](), jsonCodec[any]{}},
		{DefaultCodec[*point](), jsonCodec[*point]{}},
	} {
		if fmt.Sprintf("%T", tc.got) != fmt.Sprintf("%T", tc.want) {
			t.Errorf("DefaultCodec: %T, want %T", tc.got, tc.want)
		}
	}
}
