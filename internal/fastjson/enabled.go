//go:build !goexperiment.jsonv2

package fastjson

// enabled: encoding/json is the classic decoder whose behaviour the fast
// path reproduces.
const enabled = true
