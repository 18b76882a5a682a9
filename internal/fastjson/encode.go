package fastjson

import (
	"encoding"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// Encoder encodes values of T as encoding/json.Marshal does, byte for
// byte. It holds no state but T's plan: one Encoder may be used by many
// goroutines.
type Encoder[T any] struct {
	plan *encPlan // nil: T is not eligible
}

// NewEncoder returns an Encoder for T.
func NewEncoder[T any]() *Encoder[T] {
	return &Encoder[T]{plan: encPlanFor(reflect.TypeFor[T]())}
}

// AppendJSON appends what encoding/json.Marshal makes of v to dst and
// returns the extended buffer; on an error (encoding/json's own) it
// returns dst as it was. For an eligible T it allocates nothing when dst
// has the room.
func (e *Encoder[T]) AppendJSON(dst []byte, v T) ([]byte, error) {
	if e.plan != nil {
		if out, ok := appendStruct(dst, unsafe.Pointer(&v), e.plan); ok {
			return out, nil
		}
		// A NaN or an infinity: encoding/json's error.
	}
	return appendMarshal(dst, v)
}

// Marshal is encoding/json.Marshal(v), through T's cached plan: for an
// eligible T one allocation, of the result's size.
func Marshal[T any](v T) ([]byte, error) {
	e := Encoder[T]{plan: encPlanFor(reflect.TypeFor[T]())}
	return e.Marshal(v)
}

// Marshal is encoding/json.Marshal(v): AppendJSON into a pooled scratch
// buffer, copied once to a new slice of the result's size.
func (e *Encoder[T]) Marshal(v T) ([]byte, error) {
	if e.plan == nil {
		return json.Marshal(v)
	}
	sp := scratchPool.Get().(*[]byte)
	out, err := e.AppendJSON((*sp)[:0], v)
	var b []byte
	if err == nil {
		b = append(make([]byte, 0, len(out)), out...)
	}
	if cap(out) <= scratchMax {
		*sp = out
	}
	scratchPool.Put(sp)
	return b, err
}

// scratchPool holds the buffers of Encoder.Marshal (*[]byte).
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendMarshal is encoding/json's encoding of v appended to dst (its own
// function: boxing v for the interface must not move the fast path's v
// to the heap).
//
//go:noinline
func appendMarshal[T any](dst []byte, v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// encField is one field encoding/json would encode.
type encField struct {
	name      string // `"name":`, escaped as encoding/json writes it
	off       uintptr
	kind      kind
	size      uint8     // kInt, kUint: bytes
	sub       *encPlan  // kStruct
	elem      *encField // kPtr: what it points to (off 0)
	omitEmpty bool      // omitempty or omitzero: both mean the zero value for the kinds here
	quoted    bool      // the ",string" option
}

// encPlan is how to encode a struct type.
type encPlan struct {
	fields []encField
}

// encPlans caches encPlanFor: reflect.Type -> *encPlan (nil: not eligible).
var encPlans sync.Map

// encPlanFor is t's plan, or nil when t is not eligible: it must be a
// struct whose fields are all simple (see doc.go).
func encPlanFor(t reflect.Type) *encPlan {
	if !enabled {
		return nil
	}
	if p, ok := encPlans.Load(t); ok {
		return p.(*encPlan)
	}
	c := encCompiler{inProgress: map[reflect.Type]bool{}}
	p := c.structPlan(t)
	encPlans.Store(t, p)
	return p
}

var (
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	isZeroerType      = reflect.TypeFor[interface{ IsZero() bool }]()
)

// marshals reports whether encoding/json would call a method of t's to
// encode it.
func marshals(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return t.Implements(marshalerType) || pt.Implements(marshalerType) ||
		t.Implements(textMarshalerType) || pt.Implements(textMarshalerType)
}

type encCompiler struct {
	inProgress map[reflect.Type]bool // recursive types are not eligible
}

func (c *encCompiler) structPlan(t reflect.Type) *encPlan {
	if t.Kind() != reflect.Struct || marshals(t) || c.inProgress[t] {
		return nil
	}
	c.inProgress[t] = true
	defer delete(c.inProgress, t)
	p := &encPlan{}
	seen := map[string]bool{}
	exported := false
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Anonymous {
			return nil // embedded: promotion rules are encoding/json's alone
		}
		if !sf.IsExported() {
			continue
		}
		exported = true
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		var omitEmpty, omitZero, str bool
		if opts != "" {
			for _, o := range strings.Split(opts, ",") {
				switch o {
				case "omitempty":
					omitEmpty = true
				case "omitzero":
					omitZero = true
				case "string":
					str = true
				} // other options: encoding/json ignores them
			}
		}
		if !isValidTag(name) {
			name = sf.Name
		}
		if seen[name] {
			return nil // which one wins is encoding/json's business
		}
		seen[name] = true
		ft := sf.Type
		if omitZero {
			// An IsZero method decides, or for a struct reflect's
			// IsZero (which differs from == for -0 inside): encoding/json's.
			if ft.Implements(isZeroerType) || reflect.PointerTo(ft).Implements(isZeroerType) || ft.Kind() == reflect.Struct {
				return nil
			}
		}
		f, ok := c.field(ft)
		if !ok {
			return nil
		}
		// ",string" quotes a bool, number or string, or the one a
		// pointer (of an unnamed pointer type) points to.
		if str {
			switch {
			case f.kind == kPtr && f.elem.kind != kStruct:
				f.elem.quoted = true
			case f.kind != kPtr && f.kind != kStruct:
				f.quoted = true
			}
		}
		f.name, f.off = string(appendString(nil, name, true))+":", sf.Offset
		// Struct fields are never empty; for the kinds here omitempty
		// and omitzero both mean reflect.Value.IsZero.
		f.omitEmpty = (omitEmpty || omitZero) && f.kind != kStruct
		p.fields = append(p.fields, f)
	}
	if !exported {
		return nil
	}
	return p
}

// field is how to encode a value of type t (name and offset unset).
func (c *encCompiler) field(t reflect.Type) (encField, bool) {
	if marshals(t) || t == numberType {
		return encField{}, false
	}
	if k, size, ok := scalar(t); ok {
		return encField{kind: k, size: size}, true
	}
	switch t.Kind() {
	case reflect.Struct:
		sub := c.structPlan(t)
		if sub == nil {
			return encField{}, false
		}
		return encField{kind: kStruct, sub: sub}, true
	case reflect.Pointer:
		e := t.Elem()
		if t.Name() != "" || e.Kind() == reflect.Pointer {
			return encField{}, false
		}
		ef, ok := c.field(e)
		if !ok {
			return encField{}, false
		}
		return encField{kind: kPtr, elem: &ef}, true
	}
	return encField{}, false
}

// appendStruct appends the struct at p whose plan is pl; false: a NaN or
// an infinity (encoding/json's error), dst's contents past its length
// undefined.
func appendStruct(dst []byte, p unsafe.Pointer, pl *encPlan) ([]byte, bool) {
	next := byte('{')
	for i := range pl.fields {
		f := &pl.fields[i]
		fp := unsafe.Add(p, f.off)
		if f.omitEmpty && isZero(fp, f) {
			continue
		}
		dst = append(dst, next)
		next = ','
		dst = append(dst, f.name...)
		var ok bool
		if dst, ok = appendValue(dst, fp, f); !ok {
			return dst, false
		}
	}
	if next == '{' {
		return append(dst, '{', '}'), true
	}
	return append(dst, '}'), true
}

// isZero reports whether the value at p of f's kind is its zero value
// as reflect.Value.IsZero says (a float's -0 is zero too). Not for
// kStruct.
func isZero(p unsafe.Pointer, f *encField) bool {
	switch f.kind {
	case kString:
		return len(*(*string)(p)) == 0
	case kBool:
		return !*(*bool)(p)
	case kInt, kUint:
		return loadUint(p, f.size) == 0
	case kFloat32:
		return *(*float32)(p) == 0
	case kFloat64:
		return *(*float64)(p) == 0
	case kPtr:
		return *(*unsafe.Pointer)(p) == nil
	}
	return false
}

func loadUint(p unsafe.Pointer, size uint8) uint64 {
	switch size {
	case 1:
		return uint64(*(*uint8)(p))
	case 2:
		return uint64(*(*uint16)(p))
	case 4:
		return uint64(*(*uint32)(p))
	}
	return *(*uint64)(p)
}

func loadInt(p unsafe.Pointer, size uint8) int64 {
	switch size {
	case 1:
		return int64(*(*int8)(p))
	case 2:
		return int64(*(*int16)(p))
	case 4:
		return int64(*(*int32)(p))
	}
	return *(*int64)(p)
}

// appendValue appends the value at p of f's kind.
func appendValue(dst []byte, p unsafe.Pointer, f *encField) ([]byte, bool) {
	switch f.kind {
	case kString:
		if f.quoted {
			return appendQuotedString(dst, *(*string)(p)), true
		}
		return appendString(dst, *(*string)(p), true), true
	case kBool:
		if f.quoted {
			dst = append(dst, '"')
		}
		dst = strconv.AppendBool(dst, *(*bool)(p))
	case kInt:
		if f.quoted {
			dst = append(dst, '"')
		}
		dst = strconv.AppendInt(dst, loadInt(p, f.size), 10)
	case kUint:
		if f.quoted {
			dst = append(dst, '"')
		}
		dst = strconv.AppendUint(dst, loadUint(p, f.size), 10)
	case kFloat32, kFloat64:
		var ok bool
		if dst, ok = appendFloat(dst, p, f); !ok {
			return dst, false
		}
	case kStruct:
		return appendStruct(dst, p, f.sub)
	case kPtr:
		ep := *(*unsafe.Pointer)(p)
		if ep == nil {
			return append(dst, "null"...), true
		}
		return appendValue(dst, ep, f.elem)
	}
	if f.quoted {
		dst = append(dst, '"')
	}
	return dst, true
}

// appendFloat is encoding/json's float encoding (without the closing
// quote of ",string"); false for a NaN or an infinity.
func appendFloat(dst []byte, p unsafe.Pointer, f *encField) ([]byte, bool) {
	var v float64
	bits := 64
	if f.kind == kFloat32 {
		v, bits = float64(*(*float32)(p)), 32
	} else {
		v = *(*float64)(p)
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return dst, false
	}
	if f.quoted {
		dst = append(dst, '"')
	}
	abs := math.Abs(v)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, v, format, -1, bits)
	if format == 'e' {
		// e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, true
}

const hexDigits = "0123456789abcdef"

// htmlSafe[b]: ASCII byte b is written as it is with HTML escaping on.
var htmlSafe = func() (s [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		s[b] = !strings.ContainsRune("\"\\<>&", rune(b))
	}
	return s
}()

// appendString is encoding/json's string encoding: with html, <, > and
// & are escaped too (only '"' and '\\' are escaped otherwise, for the
// already escaped strings of appendQuotedString).
func appendString(dst []byte, s string, html bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if htmlSafe[b] || (!html && (b == '<' || b == '>' || b == '&')) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendQuotedString is a string with the ",string" option: its encoding
// encoded again as a string (in place: the inner encoding has no control
// characters, invalid UTF-8 or <>&, so only '"' and '\\' are escaped).
func appendQuotedString(dst []byte, s string) []byte {
	start := len(dst)
	dst = appendString(dst, s, true)
	n := 0
	for _, c := range dst[start:] {
		if c == '"' || c == '\\' {
			n++
		}
	}
	end := len(dst)
	dst = slices.Grow(dst, n+2)[:end+n+2]
	w := len(dst) - 1
	dst[w] = '"'
	w--
	for r := end - 1; r >= start; r-- {
		c := dst[r]
		dst[w] = c
		w--
		if c == '"' || c == '\\' {
			dst[w] = '\\'
			w--
		}
	}
	dst[w] = '"' // w == start
	return dst
}
