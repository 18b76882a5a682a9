package fastjson

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Decoder decodes JSON into values of T as encoding/json.Unmarshal does
// into a zero T, with a cache of the short strings it has decoded. It is
// for one goroutine.
type Decoder[T any] struct {
	plan *plan // nil: T is not eligible
	d    dec
}

// NewDecoder returns a Decoder for T.
func NewDecoder[T any]() *Decoder[T] {
	dd := &Decoder[T]{plan: planFor(reflect.TypeFor[T]())}
	if dd.plan != nil {
		dd.d.cache = newStrCache(dd.plan.slots)
	}
	return dd
}

// Decode returns what encoding/json.Unmarshal makes of data in a zero T,
// and its error.
func (dd *Decoder[T]) Decode(data []byte) (T, error) {
	var v T
	if dd.plan != nil && dd.d.decode(data, unsafe.Pointer(&v), dd.plan) {
		return v, nil
	}
	return unmarshal[T](data)
}

// Unmarshal is Decode without a string cache (every string is allocated).
func Unmarshal[T any](data []byte) (T, error) {
	var v T
	if p := planFor(reflect.TypeFor[T]()); p != nil {
		var d dec
		if d.decode(data, unsafe.Pointer(&v), p) {
			return v, nil
		}
	}
	return unmarshal[T](data)
}

// unmarshal is encoding/json's decoding into a zero T (its own variable:
// taking v's address for an interface would move the fast path's v to
// the heap).
func unmarshal[T any](data []byte) (T, error) {
	v := new(T)
	err := json.Unmarshal(data, v)
	return *v, err
}

// maxDepth bounds the nesting of values skipped; deeper input goes to
// encoding/json (whose own limit is 10000).
const maxDepth = 512

// scratchMax bounds the buffer a Decoder keeps for strings with escapes.
const scratchMax = 64 << 10

// dec is the state of one fast decoding.
type dec struct {
	data    []byte
	i       int
	cache   *strCache // nil: no cache
	scratch []byte    // strings with escapes or other than ASCII
}

// decode decodes data into the zero struct at p whose plan is pl, and
// reports whether it could: false means p holds a partial result and
// encoding/json must decide.
func (d *dec) decode(data []byte, p unsafe.Pointer, pl *plan) bool {
	d.data, d.i = data, 0
	ok := d.top(p, pl)
	d.data = nil
	return ok
}

func (d *dec) top(p unsafe.Pointer, pl *plan) bool {
	d.ws()
	if d.i >= len(d.data) || d.data[d.i] != '{' {
		return false // a top-level null included: rare, encoding/json's
	}
	d.i++
	if !d.object(p, pl, 1) {
		return false
	}
	d.ws()
	return d.i == len(d.data)
}

// after reads what follows a member of an object or an element of an
// array: a comma (more to come) or close (the end: ok); anything else is
// not JSON (not ok).
func (d *dec) after(close byte) (more, ok bool) {
	d.ws()
	if d.i >= len(d.data) {
		return false, false
	}
	switch d.data[d.i] {
	case ',':
		d.i++
		d.ws()
		return true, true
	case close:
		d.i++
		return false, true
	}
	return false, false
}

func (d *dec) ws() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// lit consumes s (a literal whose first byte is at d.i).
func (d *dec) lit(s string) bool {
	if len(d.data)-d.i < len(s) || string(d.data[d.i:d.i+len(s)]) != s {
		return false
	}
	d.i += len(s)
	return true
}

// object decodes the members of an object whose '{' is consumed into
// the struct at p.
func (d *dec) object(p unsafe.Pointer, pl *plan, depth int) bool {
	d.ws()
	if d.i < len(d.data) && d.data[d.i] == '}' {
		d.i++
		return true
	}
	hint := 0 // keys tend to come in field order
	for {
		if d.i >= len(d.data) || d.data[d.i] != '"' {
			return false
		}
		d.i++
		key, ok := d.plainKey()
		if !ok {
			return false
		}
		d.ws()
		if d.i >= len(d.data) || d.data[d.i] != ':' {
			return false
		}
		d.i++
		d.ws()
		if f, at := pl.lookup(key, hint); f != nil {
			hint = at + 1
			if !d.value(unsafe.Add(p, f.off), f, depth+1) {
				return false
			}
		} else if !pl.unknownOK(key) || !d.skip(depth+1) {
			return false
		}
		if more, ok := d.after('}'); !more {
			return ok
		}
	}
}

// plainKey consumes the rest of a key without escapes or control
// characters and returns its bytes.
func (d *dec) plainKey() ([]byte, bool) {
	start := d.i
	for d.i < len(d.data) {
		c := d.data[d.i]
		if c == '"' {
			d.i++
			return d.data[start : d.i-1], true
		}
		if c == '\\' || c < 0x20 {
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// value decodes the value at d.i into the field f at p.
func (d *dec) value(p unsafe.Pointer, f *field, depth int) bool {
	if d.i >= len(d.data) {
		return false
	}
	c := d.data[d.i]
	if c == 'n' {
		if !d.lit("null") {
			return false
		}
		if f.kind == kPtr {
			*(*unsafe.Pointer)(p) = nil
		}
		return true // anything else stays as it is
	}
	switch f.kind {
	case kString:
		if c != '"' {
			return false
		}
		d.i++
		s, ok := d.str(f.slot)
		if !ok {
			return false
		}
		*(*string)(p) = s
	case kBool:
		switch {
		case c == 't' && d.lit("true"):
			*(*bool)(p) = true
		case c == 'f' && d.lit("false"):
			*(*bool)(p) = false
		default:
			return false
		}
	case kInt:
		b, isInt := d.number()
		if !isInt {
			return false
		}
		n, ok := parseInt(b)
		if !ok {
			return false
		}
		switch f.size {
		case 1:
			if n < math.MinInt8 || n > math.MaxInt8 {
				return false
			}
			*(*int8)(p) = int8(n)
		case 2:
			if n < math.MinInt16 || n > math.MaxInt16 {
				return false
			}
			*(*int16)(p) = int16(n)
		case 4:
			if n < math.MinInt32 || n > math.MaxInt32 {
				return false
			}
			*(*int32)(p) = int32(n)
		default:
			*(*int64)(p) = n
		}
	case kUint:
		b, isInt := d.number()
		if !isInt {
			return false
		}
		n, ok := parseUint(b)
		if !ok {
			return false
		}
		switch f.size {
		case 1:
			if n > math.MaxUint8 {
				return false
			}
			*(*uint8)(p) = uint8(n)
		case 2:
			if n > math.MaxUint16 {
				return false
			}
			*(*uint16)(p) = uint16(n)
		case 4:
			if n > math.MaxUint32 {
				return false
			}
			*(*uint32)(p) = uint32(n)
		default:
			*(*uint64)(p) = n
		}
	case kFloat32, kFloat64:
		start := d.i
		if _, ok := d.numberOK(); !ok {
			return false
		}
		b := d.data[start:d.i]
		bits := 64
		if f.kind == kFloat32 {
			bits = 32
		}
		// encoding/json: strconv.ParseFloat(string(item), bits), an
		// error for a value out of range.
		x, err := strconv.ParseFloat(unsafe.String(&b[0], len(b)), bits)
		if err != nil {
			return false
		}
		if bits == 32 {
			*(*float32)(p) = float32(x)
		} else {
			*(*float64)(p) = x
		}
	case kStruct:
		if c != '{' {
			return false
		}
		d.i++
		return d.object(p, f.sub, depth)
	case kPtr:
		// As encoding/json: a nil pointer gets a new value, a set one is
		// decoded into.
		ep := *(*unsafe.Pointer)(p)
		if ep == nil {
			ep = reflect.New(f.typ).UnsafePointer()
			*(*unsafe.Pointer)(p) = ep
		}
		return d.value(ep, f.elem, depth)
	default:
		return false
	}
	return true
}

// number consumes a number and returns its bytes and whether it is an
// integer (no fraction, no exponent); false for anything else.
func (d *dec) number() ([]byte, bool) {
	start := d.i
	isInt, ok := d.numberOK()
	if !ok || !isInt {
		return nil, false
	}
	return d.data[start:d.i], true
}

// numberOK consumes a number as JSON's grammar has it:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. What follows is the
// caller's to check.
func (d *dec) numberOK() (isInt, ok bool) {
	data, i := d.data, d.i
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return false, false
	case data[i] == '0':
		i++
	case '1' <= data[i] && data[i] <= '9':
		i++
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
	default:
		return false, false
	}
	isInt = true
	if i < len(data) && data[i] == '.' {
		isInt = false
		i++
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			return false, false
		}
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		isInt = false
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			return false, false
		}
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
	}
	d.i = i
	return isInt, true
}

// parseInt is strconv.ParseInt(b, 10, 64) of a JSON integer.
func parseInt(b []byte) (int64, bool) {
	neg := b[0] == '-'
	digits := b
	if neg {
		digits = b[1:]
	}
	if len(digits) > 18 { // might not fit
		n, err := strconv.ParseInt(unsafe.String(&b[0], len(b)), 10, 64)
		return n, err == nil
	}
	var n int64
	for _, c := range digits {
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// parseUint is strconv.ParseUint(b, 10, 64) of a JSON integer (which
// fails for a sign, "-0" included).
func parseUint(b []byte) (uint64, bool) {
	if b[0] == '-' {
		return 0, false
	}
	if len(b) > 19 {
		n, err := strconv.ParseUint(unsafe.String(&b[0], len(b)), 10, 64)
		return n, err == nil
	}
	var n uint64
	for _, c := range b {
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// str consumes the rest of a string (its '"' consumed) and returns its
// value as encoding/json unquotes it.
func (d *dec) str(slot int) (string, bool) {
	start := d.i
	for d.i < len(d.data) {
		c := d.data[d.i]
		if c == '"' {
			b := d.data[start:d.i]
			d.i++
			return d.intern(b, slot), true
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			d.i = start
			return d.strSlow(slot)
		}
		d.i++
	}
	return "", false
}

func (d *dec) intern(b []byte, slot int) string {
	if d.cache == nil {
		return string(b)
	}
	return d.cache.get(b, slot)
}

// strSlow is str for a string with escapes or bytes other than ASCII:
// escapes are replaced as JSON has them, a \u surrogate pair by its rune
// and a lone surrogate by U+FFFD, and every byte of invalid UTF-8 by
// U+FFFD (as encoding/json's unquote).
func (d *dec) strSlow(slot int) (string, bool) {
	b := d.scratch[:0]
	data, i := d.data, d.i
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			d.i = i + 1
			s := d.intern(b, slot)
			if cap(b) <= scratchMax { // a huge string's buffer goes
				d.scratch = b
			}
			return s, true
		case c == '\\':
			if i+1 >= len(data) {
				return "", false
			}
			switch data[i+1] {
			case '"', '\\', '/':
				b = append(b, data[i+1])
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := getu4(data[i:])
				if r < 0 {
					return "", false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if pair := utf16.DecodeRune(r, getu4(data[i:])); pair != utf8.RuneError {
						i += 6 // a valid pair
						b = utf8.AppendRune(b, pair)
						continue
					}
					r = utf8.RuneError
				}
				b = utf8.AppendRune(b, r)
				continue
			default:
				return "", false
			}
			i += 2
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			b = utf8.AppendRune(b, r)
			i += size
		}
	}
	return "", false
}

// getu4 is the rune of the \uXXXX at the start of s, or -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// skip consumes any valid JSON value.
func (d *dec) skip(depth int) bool {
	if depth > maxDepth || d.i >= len(d.data) {
		return false
	}
	switch d.data[d.i] {
	case '"':
		d.i++
		return d.skipString()
	case '{':
		d.i++
		d.ws()
		if d.i < len(d.data) && d.data[d.i] == '}' {
			d.i++
			return true
		}
		for {
			if d.i >= len(d.data) || d.data[d.i] != '"' {
				return false
			}
			d.i++
			if !d.skipString() {
				return false
			}
			d.ws()
			if d.i >= len(d.data) || d.data[d.i] != ':' {
				return false
			}
			d.i++
			d.ws()
			if !d.skip(depth + 1) {
				return false
			}
			if more, ok := d.after('}'); !more {
				return ok
			}
		}
	case '[':
		d.i++
		d.ws()
		if d.i < len(d.data) && d.data[d.i] == ']' {
			d.i++
			return true
		}
		for {
			if !d.skip(depth + 1) {
				return false
			}
			if more, ok := d.after(']'); !more {
				return ok
			}
		}
	case 't':
		return d.lit("true")
	case 'f':
		return d.lit("false")
	case 'n':
		return d.lit("null")
	}
	_, ok := d.numberOK()
	return ok
}

// skipString consumes the rest of a valid string (its '"' consumed).
func (d *dec) skipString() bool {
	data := d.data
	for i := d.i; i < len(data); {
		c := data[i]
		switch {
		case c == '"':
			d.i = i + 1
			return true
		case c == '\\':
			if i+1 >= len(data) {
				return false
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if getu4(data[i:]) < 0 {
					return false
				}
				i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			i++
		}
	}
	return false
}
