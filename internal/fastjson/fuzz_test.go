package fastjson

import "testing"

// FuzzDecode compares the fast decoder with encoding/json on any input,
// as each of the test types (see decodeBoth). Run it with
// go test -run '^$' -fuzz FuzzDecode -fuzztime 60s ./internal/fastjson/
func FuzzDecode(f *testing.F) {
	for _, tc := range handWritten {
		f.Add([]byte(tc.in))
	}
	c := newChecker()
	f.Fuzz(func(t *testing.T, data []byte) {
		c.check(t, data)
	})
}

// FuzzEncode compares the Encoder with encoding/json on values built from
// any string, floats and integers, as fields of every kind and tag
// option (see encodeBoth). Run it with
// go test -run '^$' -fuzz FuzzEncode -fuzztime 60s -fuzzminimizetime 2s ./internal/fastjson/
// (the default minimizing, up to a minute per new input, stalls it on a
// busy machine).
func FuzzEncode(f *testing.F) {
	for i, s := range encStrings {
		f.Add(s, encFloats[i%len(encFloats)], float32(encFloats[(i+7)%len(encFloats)]), encInts[i%len(encInts)], i%2 == 0)
	}
	ek, eq, en := NewEncoder[kinds](), NewEncoder[quotedTags](), NewEncoder[nested]()
	f.Fuzz(func(t *testing.T, s string, f64 float64, f32 float32, i int64, b bool) {
		encodeBoth(t, ek, kinds{S: s, B: b, I: int(i), I8: int8(i), I16: int16(i), I32: int32(i), I64: i, U: uint(i), U8: uint8(i),
			U16: uint16(i), U32: uint32(i), U64: uint64(i), UP: uintptr(i), F32: f32, F64: f64, Tagged: s, Named: myString(s), Zero: int(i)})
		encodeBoth(t, eq, quotedTags{S: s, B: b, I: int(i), I8: int8(i), U16: uint16(i), F32: f32, F64: f64, PS: &s, PI: &i, PF: &f64,
			In: inner{A: int(i), B: s, F: f64}, PIn: &inner{B: s}, ES: s, EB: b, EI: int32(i), EU: uint64(i), EF32: f32, EF64: f64, EP: &b, HTML: s})
		encodeBoth(t, en, nested{Name: s, In: inner{A: int(i), B: s, F: float64(f32)}, PS: &s})
	})
}
