package fastjson

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// kind is how a field's value is written.
type kind uint8

const (
	kString kind = iota
	kBool
	kInt  // signed, size bytes
	kUint // unsigned, size bytes
	kFloat32
	kFloat64
	kStruct // sub, inline
	kPtr    // pointer to elem
)

// field is one field encoding/json would decode.
type field struct {
	name string
	off  uintptr
	kind kind
	size uint8        // kInt, kUint: bytes
	sub  *plan        // kStruct: the struct's plan
	elem *field       // kPtr: what it points to (off 0)
	typ  reflect.Type // kPtr: the element type, to allocate
	slot int          // kString: the field's string statistics slot
}

// plan is how to decode a struct type.
type plan struct {
	fields []field
	// foldAll: some field name is not ASCII, so any key that is not an
	// exact match might match one case-insensitively (encoding/json folds
	// e.g. the Kelvin sign to K).
	foldAll bool
	slots   int // string slots of the type and its nested structs (top-level plan only)
}

// lookup is the field named exactly key, or nil.
func (p *plan) lookup(key []byte, hint int) (*field, int) {
	fs := p.fields
	if hint < len(fs) && fs[hint].name == string(key) {
		return &fs[hint], hint
	}
	for i := range fs {
		if fs[i].name == string(key) {
			return &fs[i], i
		}
	}
	return nil, 0
}

// unknownOK reports whether key, which matches no field exactly, is for
// certain no field's case-insensitive match either: an ASCII key whose
// ASCII fold matches no name, and no name with other letters.
func (p *plan) unknownOK(key []byte) bool {
	if p.foldAll {
		return false
	}
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	for i := range p.fields {
		if equalFoldASCII(key, p.fields[i].name) {
			return false
		}
	}
	return true
}

func equalFoldASCII(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// plans caches planFor: reflect.Type -> *plan (nil: not eligible).
var plans sync.Map

// planFor is t's plan, or nil when t is not eligible.
func planFor(t reflect.Type) *plan {
	if !enabled {
		return nil
	}
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	c := compiler{inProgress: map[reflect.Type]bool{}}
	p := c.structPlan(t)
	if p != nil {
		p.slots = c.slots
	}
	plans.Store(t, p)
	return p
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	numberType          = reflect.TypeFor[json.Number]()
)

type compiler struct {
	inProgress map[reflect.Type]bool // recursive types are not eligible
	slots      int
}

// custom reports whether encoding/json would call a method of t's to
// decode it.
func custom(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return t.Implements(unmarshalerType) || pt.Implements(unmarshalerType) ||
		t.Implements(textUnmarshalerType) || pt.Implements(textUnmarshalerType)
}

func (c *compiler) structPlan(t reflect.Type) *plan {
	if t.Kind() != reflect.Struct || custom(t) || c.inProgress[t] {
		return nil
	}
	c.inProgress[t] = true
	defer delete(c.inProgress, t)
	p := &plan{}
	seen := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Anonymous {
			return nil // embedded: promotion rules are encoding/json's alone
		}
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts != "" {
			for _, o := range strings.Split(opts, ",") {
				if o != "omitempty" && o != "omitzero" {
					return nil // ",string" and whatever else: encoding/json's
				}
			}
		}
		if !isValidTag(name) {
			name = sf.Name
		}
		if seen[name] {
			return nil // which one wins is encoding/json's business
		}
		seen[name] = true
		f, ok := c.field(sf.Type)
		if !ok {
			return nil
		}
		f.name, f.off = name, sf.Offset
		for _, r := range name {
			if r >= utf8.RuneSelf {
				p.foldAll = true
			}
		}
		p.fields = append(p.fields, f)
	}
	return p
}

// scalar returns the kind of a string, bool, integer or float type t (with
// its size for integers); false for any other type.
func scalar(t reflect.Type) (kind, uint8, bool) {
	switch t.Kind() {
	case reflect.String:
		return kString, 0, true
	case reflect.Bool:
		return kBool, 0, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return kInt, uint8(t.Size()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return kUint, uint8(t.Size()), true
	case reflect.Float32:
		return kFloat32, 0, true
	case reflect.Float64:
		return kFloat64, 0, true
	}
	return 0, 0, false
}

// field is how to decode a value of type t (name and offset unset).
func (c *compiler) field(t reflect.Type) (field, bool) {
	if custom(t) || t == numberType {
		return field{}, false
	}
	if k, size, ok := scalar(t); ok {
		f := field{kind: k, size: size}
		if k == kString {
			f.slot = c.slots
			c.slots++
		}
		return f, true
	}
	switch t.Kind() {
	case reflect.Struct:
		sub := c.structPlan(t)
		if sub == nil {
			return field{}, false
		}
		return field{kind: kStruct, sub: sub}, true
	case reflect.Pointer:
		e := t.Elem()
		if e.Kind() == reflect.Pointer {
			return field{}, false
		}
		ef, ok := c.field(e)
		if !ok {
			return field{}, false
		}
		return field{kind: kPtr, elem: &ef, typ: e}, true
	}
	return field{}, false
}

// isValidTag is encoding/json's rule for a tag name it uses (else it
// uses the Go field name).
func isValidTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}
