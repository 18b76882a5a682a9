//go:build goexperiment.jsonv2

package fastjson

// enabled: encoding/json is built on encoding/json/v2, whose edge cases
// the fast path was not written against: everything goes through
// encoding/json.
const enabled = false
