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
