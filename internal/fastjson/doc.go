// Package fastjson decodes JSON objects into Go structs and encodes Go
// structs as JSON with exactly encoding/json's results, without its cost
// for the common case: a struct of strings, bools, integers and floats
// (and nested structs and pointers of those) read from a flat object or
// written as one. It is the dataflow API's JSON format (weir.JSON,
// weir.KeyedJSON) on the source's and the sink's hot paths.
//
// How it decodes:
//
//  1. Per type, once, it compiles a plan (cached): the fields that
//     encoding/json would decode, with their offsets. A type is eligible
//     only when every field is simple: exported non-embedded fields of
//     kinds string, bool, int*, uint*, float32/64, structs of such fields,
//     and pointers to either; no ",string" tag option, no json.Number, no
//     type implementing json.Unmarshaler or encoding.TextUnmarshaler, no
//     two fields of one name. Other types always use encoding/json.
//  2. Per record it scans the bytes once and writes the fields through
//     their offsets. It takes keys that match a field name exactly; it
//     skips unknown keys after validating their values; the last of
//     duplicate keys wins; null leaves a field as it is (a pointer nil).
//  3. Anything else — a syntax error, a key that might match a field only
//     case-insensitively, a key with escapes, a value of the wrong type,
//     an integer out of range or with a fraction, the top-level null —
//     makes it start over from the zero value with encoding/json.Unmarshal
//     for that record, so every error and every edge case is
//     encoding/json's own, byte for byte.
//
// A Decoder keeps a bounded cache of short strings it has decoded (user
// ids and the like repeat), so a repeating string costs no allocation; it
// is for one goroutine (a source subtask). Unmarshal is the stateless
// form.
//
// How it encodes (Encoder, Marshal): per type, once, a plan (cached) of
// the fields encoding/json would write, in its order, with their names
// escaped as it writes them; per record it appends them through their
// offsets to the caller's buffer (no allocation when the buffer has the
// room), with encoding/json's string escaping (HTML characters, control
// characters, invalid UTF-8, U+2028/U+2029), float formatting, omitempty
// and omitzero, and ",string" option. A type is eligible only when it is a
// struct with an exported field, every field is of the kinds above, no
// embedded field, no json.Number, no type implementing json.Marshaler or
// encoding.TextMarshaler (on the type or its pointer), no omitzero on a
// struct or a type with an IsZero method, no pointer to a pointer or of a
// named pointer type, and no two fields of one name. Other types always
// use encoding/json.Marshal, as does a value with a NaN or an infinity
// (for encoding/json's own error).
//
// With GOEXPERIMENT=jsonv2 (encoding/json built on encoding/json/v2) the
// fast paths are off and everything goes through encoding/json.
package fastjson
