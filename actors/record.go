package actors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"

	"github.com/weirstream/weir/operator"
)

// KeyGroups is the fixed number of key groups (see operator.KeyGroups).
const KeyGroups = operator.KeyGroups

// KeyGroup returns the key group of key.
func KeyGroup(key string) int { return operator.KeyGroup(key) }

// SubtaskForKeyGroup returns the subtask, of parallelism p, that owns key
// group kg.
func SubtaskForKeyGroup(kg, p int) int { return operator.SubtaskForKeyGroup(kg, p) }

// Extractor turns a record's value into a Record.
type Extractor func(value []byte) (key []byte, ts int64, v float64, err error)

// JSONExtractor returns an extractor reading top-level fields of a JSON
// object: keyField (string or number), tsField (integer milliseconds) and,
// when valField is not empty, valField (number). It validates the whole
// object, so malformed JSON is an error, not a guess.
//
// Most records take a fast path over plain JSON (no escapes, no nesting,
// no exponents, at most 15 significant digits in the value); whatever it
// does not accept goes through the full scanner, which gives the same
// answer or the error.
func JSONExtractor(keyField, tsField, valField string) Extractor {
	slow := jsonExtractorSlow(keyField, tsField, valField)
	if !plainName(keyField) || !plainName(tsField) || keyField == tsField || valField != "" && (!plainName(valField) || keyField == valField || tsField == valField) {
		return slow
	}
	f := newFieldNames(keyField, tsField, valField)
	return func(value []byte) ([]byte, int64, float64, error) {
		if key, ts, v, ok := fastExtract(value, &f); ok {
			return key, ts, v, nil
		}
		return slow(value)
	}
}

// jsonPlain marks the bytes a JSON string holds as they are: not a quote,
// a backslash or a control character.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// pow10 holds the powers of ten a float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// fastExtract is JSONExtractor's fast path: ok is false for anything it
// does not take (the full scanner then answers), never for a record it
// reads differently from the full scanner. The fields are distinct and
// plain (see plainName), and only valField may be empty (no value read).
//
// A name is matched against the fields where it starts (the field's bytes,
// then the closing quote), so only the other names are scanned; digits are
// read eight at a time (readDigits).
func fastExtract(b []byte, f *fieldNames) (key []byte, ts int64, v float64, ok bool) {
	n := len(b)
	i := skipWS(b, 0)
	if i >= n || b[i] != '{' {
		return
	}
	i++
	var haveKey, haveTS bool
	haveValue := f.val.name == ""
	for {
		i = skipWS(b, i)
		if i >= n || b[i] != '"' {
			return // also the empty object: the full scanner reports what is missing
		}
		i++
		// which field the name is: 1 key, 2 ts, 3 value, 0 another.
		which := 0
		switch {
		case f.key.at(b, i):
			which, i = 1, i+len(f.key.name)
		case f.ts.at(b, i):
			which, i = 2, i+len(f.ts.name)
		case f.val.at(b, i):
			which, i = 3, i+len(f.val.name)
		default:
			start := i
			i = plainEnd(b, i)
			if i >= n || b[i] != '"' {
				return
			}
			if i == start {
				return // matches an empty valField in the full scanner
			}
		}
		i++
		i = skipWS(b, i)
		if i >= n || b[i] != ':' {
			return
		}
		i++
		i = skipWS(b, i)
		if i >= n {
			return
		}
		c := b[i]
		switch {
		case c == '"':
			i++
			start := i
			i = plainEnd(b, i)
			if i >= n || b[i] != '"' {
				return
			}
			switch which {
			case 1:
				key, haveKey = b[start:i], true
			case 2, 3:
				return // not a number: the full scanner's error
			}
			i++
		case c == '-' || c >= '0' && c <= '9':
			// -?(0|[1-9][0-9]*)(\.[0-9]+)?, no exponent; mant holds up to
			// 18 digits of it.
			start := i
			neg := c == '-'
			if neg {
				i++
			}
			digits, frac := 0, -1
			var mant uint64
			if i < n && b[i] == '0' {
				i++
				digits = 1
			} else {
				mant, digits, i = readDigits(b, i, 0)
				if digits == 0 {
					return
				}
			}
			if i < n && b[i] == '.' {
				i++
				mant, frac, i = readDigits(b, i, mant)
				if frac == 0 {
					return
				}
				digits += frac
			}
			if i < n && (b[i] == 'e' || b[i] == 'E' || b[i] >= '0' && b[i] <= '9') {
				return // an exponent, or a leading zero followed by digits
			}
			switch which {
			case 1:
				key, haveKey = b[start:i], true
			case 2:
				if neg || frac >= 0 || digits > 18 {
					return
				}
				ts, haveTS = int64(mant), true
			case 3:
				if digits > 15 {
					return
				}
				v = float64(mant)
				if frac > 0 {
					v /= pow10[frac]
				}
				if neg {
					v = -v
				}
				haveValue = true
			}
		case c == 't' && n-i >= 4 && string(b[i:i+4]) == "true",
			c == 'n' && n-i >= 4 && string(b[i:i+4]) == "null":
			if which != 0 {
				return
			}
			i += 4
		case c == 'f' && n-i >= 5 && string(b[i:i+5]) == "false":
			if which != 0 {
				return
			}
			i += 5
		default:
			return // nesting, or not JSON
		}
		i = skipWS(b, i)
		if i >= n {
			return
		}
		if b[i] == ',' {
			i++
			continue
		}
		if b[i] != '}' {
			return
		}
		i++
		break
	}
	i = skipWS(b, i)
	if i != n || !haveKey || !haveTS || !haveValue {
		return
	}
	return key, ts, v, true
}

// fieldNames are the fields fastExtract reads.
type fieldNames struct{ key, ts, val fieldName }

func newFieldNames(keyField, tsField, valField string) fieldNames {
	return fieldNames{newFieldName(keyField), newFieldName(tsField), newFieldName(valField)}
}

// fieldName is a field's name and, when the name and its closing quote
// fit in eight bytes, those bytes as a little-endian word and its mask.
type fieldName struct {
	name       string
	word, mask uint64
}

func newFieldName(name string) fieldName {
	f := fieldName{name: name}
	if name != "" && len(name) < 8 {
		var w [8]byte
		copy(w[:], name+`"`)
		f.word = binary.LittleEndian.Uint64(w[:])
		f.mask = 1<<(8*(len(name)+1)) - 1
	}
	return f
}

// at reports whether the name that starts at b[i] (after its opening
// quote) is f: f's bytes, then the closing quote. f is plain (plainName),
// so no escaped name can match here; an escaped spelling of f goes
// through plainEnd, which stops at the backslash. The empty name (no
// value field) matches nothing.
func (f *fieldName) at(b []byte, i int) bool {
	if f.mask != 0 && i+8 <= len(b) {
		return binary.LittleEndian.Uint64(b[i:])&f.mask == f.word
	}
	j := i + len(f.name)
	return f.name != "" && j < len(b) && b[j] == '"' && string(b[i:j]) == f.name
}

// plainName reports whether JSON writes the name f as its bytes: not
// empty, no quote, backslash or control character.
func plainName(f string) bool {
	if f == "" {
		return false
	}
	for k := 0; k < len(f); k++ {
		if !jsonPlain[f[k]] {
			return false
		}
	}
	return true
}

// pow10u holds the powers of ten up to 10^8.
var pow10u = [...]uint64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000}

// readDigits reads the run of decimal digits at b[i], folding them into
// mant (mant*10 + digit for each, modulo 2^64), and returns mant, the
// number of digits and the index after them. While eight bytes remain it
// finds the digits among them at once, and converts five to eight of
// them at once (fewer go one by one: cheaper than the word's arithmetic).
func readDigits(b []byte, i int, mant uint64) (uint64, int, int) {
	start := i
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		// A byte is a digit when its high nibble is 3 and adding 6 keeps
		// it so. The first non-digit's byte is exact; a carry out of a
		// byte above 0xf9 may mark bytes above it, never below.
		m := (x&0xf0f0f0f0f0f0f0f0 ^ 0x3030303030303030) | ((x+0x0606060606060606)&0xf0f0f0f0f0f0f0f0 ^ 0x3030303030303030)
		k := 8
		if m != 0 {
			k = bits.TrailingZeros64(m) >> 3
		}
		if k < 5 {
			for e := i + k; i < e; i++ {
				mant = mant*10 + uint64(b[i]-'0')
			}
			return mant, i - start, i
		}
		// The k digits to the top of the word, zeros (digit 0) below
		// them, then pairs, fours and eights of digits.
		d := (x - 0x3030303030303030) << (64 - 8*k)
		d = (d*10 + d>>8) & 0x00ff00ff00ff00ff
		d = (d*100 + d>>16) & 0x0000ffff0000ffff
		d = (d*10000 + d>>32) & 0xffffffff
		mant = mant*pow10u[k] + d
		i += k
		if k < 8 {
			return mant, i - start, i
		}
	}
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		mant = mant*10 + uint64(b[i]-'0')
		i++
	}
	return mant, i - start, i
}

// skipWS returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipWS(b []byte, i int) int {
	// Every JSON whitespace byte is at most ' ': one compare rejects the
	// rest (most calls find no whitespace).
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainEnd returns the index of the first byte at or after i that a JSON
// string does not hold as it is (see jsonPlain). It reads eight bytes at a
// time while eight remain, then one at a time.
func plainEnd(b []byte, i int) int {
	for i+8 <= len(b) {
		if m := notPlain8(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		i += 8
	}
	return plainTail(b, i)
}

// plainTail is plainEnd byte by byte (fewer than eight bytes remain).
func plainTail(b []byte, i int) int {
	for i < len(b) && jsonPlain[b[i]] {
		i++
	}
	return i
}

// SWAR constants: a byte of ones in each byte, and each byte's high bit.
const (
	swarOnes  = 0x0101010101010101
	swarHighs = 0x8080808080808080
)

// notPlain8 sets the high bit of the bytes of the little-endian word x
// that a JSON string does not hold as they are (a quote, a backslash, a
// control character). The lowest one set is exact; a borrow may set bits
// above it, never below, and plainEnd reads only the lowest.
func notPlain8(x uint64) uint64 {
	q := x ^ ('"' * swarOnes)
	s := x ^ ('\\' * swarOnes)
	return ((q-swarOnes)&^q | (s-swarOnes)&^s | (x-0x20*swarOnes)&^x) & swarHighs
}

// jsonExtractorSlow is JSONExtractor's full scanner.
func jsonExtractorSlow(keyField, tsField, valField string) Extractor {
	return func(value []byte) ([]byte, int64, float64, error) {
		var (
			key       []byte
			ts        int64
			v         float64
			haveKey   bool
			haveTS    bool
			haveValue = valField == ""
		)
		s := scanner{b: value}
		s.ws()
		if !s.consume('{') {
			return nil, 0, 0, s.fail("not a JSON object")
		}
		s.ws()
		if s.consume('}') {
			goto done
		}
		for {
			s.ws()
			name, err := s.str()
			if err != nil {
				return nil, 0, 0, err
			}
			s.ws()
			if !s.consume(':') {
				return nil, 0, 0, s.fail("expected ':' after a field name")
			}
			s.ws()
			switch string(name) {
			case keyField:
				k, err := s.scalar()
				if err != nil {
					return nil, 0, 0, fmt.Errorf("field %q: %w", keyField, err)
				}
				if bytes.IndexByte(k, '\\') >= 0 {
					// A string key with escapes: the key is what it
					// stands for (rare, so the slow path).
					var dec string
					if err := json.Unmarshal(append(append([]byte{'"'}, k...), '"'), &dec); err != nil {
						return nil, 0, 0, fmt.Errorf("field %q: %w", keyField, err)
					}
					k = []byte(dec)
				}
				key, haveKey = k, true
			case tsField:
				n, err := s.number()
				if err != nil {
					return nil, 0, 0, fmt.Errorf("field %q: %w", tsField, err)
				}
				t, err := strconv.ParseInt(string(n), 10, 64)
				if err != nil {
					return nil, 0, 0, fmt.Errorf("field %q: %s is not whole milliseconds", tsField, n)
				}
				if t < 0 {
					return nil, 0, 0, fmt.Errorf("field %q: %d is before 1970", tsField, t)
				}
				ts, haveTS = t, true
			case valField:
				n, err := s.number()
				if err != nil {
					return nil, 0, 0, fmt.Errorf("field %q: %w", valField, err)
				}
				f, err := strconv.ParseFloat(string(n), 64)
				if err != nil || math.IsInf(f, 0) {
					return nil, 0, 0, fmt.Errorf("field %q: %s is not a finite number", valField, n)
				}
				v, haveValue = f, true
			default:
				if err := s.skip(0); err != nil {
					return nil, 0, 0, err
				}
			}
			s.ws()
			if s.consume(',') {
				continue
			}
			if s.consume('}') {
				break
			}
			return nil, 0, 0, s.fail("expected ',' or '}'")
		}
	done:
		s.ws()
		if s.i != len(s.b) {
			return nil, 0, 0, s.fail("data after the JSON object")
		}
		switch {
		case !haveKey:
			return nil, 0, 0, fmt.Errorf("no field %q (the key)", keyField)
		case !haveTS:
			return nil, 0, 0, fmt.Errorf("no field %q (the event time)", tsField)
		case !haveValue:
			return nil, 0, 0, fmt.Errorf("no field %q (the value)", valField)
		}
		return key, ts, v, nil
	}
}

const maxJSONDepth = 64

var errJSONEnd = errors.New("JSON ends early")

type scanner struct {
	b []byte
	i int
}

func (s *scanner) fail(what string) error {
	if s.i >= len(s.b) {
		return fmt.Errorf("malformed JSON: %s at the end", what)
	}
	return fmt.Errorf("malformed JSON: %s at byte %d", what, s.i)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) consume(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a JSON string and returns its raw contents (escapes are kept;
// field names and keys with escapes are compared and used as written).
func (s *scanner) str() ([]byte, error) {
	if !s.consume('"') {
		return nil, s.fail("expected a string")
	}
	start := s.i
	for s.i < len(s.b) {
		// Eight plain bytes at a time, then one by one from the first
		// quote, backslash or control character.
		for s.i+8 <= len(s.b) && !strSpecial8(binary.LittleEndian.Uint64(s.b[s.i:])) {
			s.i += 8
		}
		if s.i >= len(s.b) {
			break
		}
		c := s.b[s.i]
		switch {
		case c == '"':
			out := s.b[start:s.i]
			s.i++
			return out, nil
		case c == '\\':
			if s.i+1 >= len(s.b) {
				return nil, errJSONEnd
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return nil, errJSONEnd
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return nil, s.fail("bad \\u escape")
					}
				}
				s.i += 6
			default:
				return nil, s.fail("bad escape")
			}
		case c < 0x20:
			return nil, s.fail("control character in a string")
		default:
			s.i++
		}
	}
	return nil, errJSONEnd
}

// strSpecial8 reports whether one of the eight bytes of x is a quote, a
// backslash or a control character (below 0x20): bytewise "has a zero"
// and "has a byte below n" tests, exact as a yes/no answer (a borrow only
// starts at a byte that matches).
func strSpecial8(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q := x ^ (lo * '"')
	b := x ^ (lo * '\\')
	return ((q-lo)&^q|(b-lo)&^b|(x-lo*0x20)&^x)&hi != 0
}

func (s *scanner) number() ([]byte, error) {
	start := s.i
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	bad := func() ([]byte, error) {
		s.i = start
		return nil, s.fail("expected a number")
	}
	s.consume('-')
	if s.consume('0') {
		// a leading zero stands alone
	} else if digits() == 0 {
		return bad()
	}
	if s.consume('.') && digits() == 0 {
		return bad()
	}
	if s.consume('e') || s.consume('E') {
		if !s.consume('+') {
			s.consume('-')
		}
		if digits() == 0 {
			return bad()
		}
	}
	return s.b[start:s.i], nil
}

// scalar reads a string or a number.
func (s *scanner) scalar() ([]byte, error) {
	if s.i < len(s.b) && s.b[s.i] == '"' {
		return s.str()
	}
	return s.number()
}

func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// skip reads over any JSON value.
func (s *scanner) skip(depth int) error {
	if depth > maxJSONDepth {
		return s.fail("nested too deep")
	}
	if s.i >= len(s.b) {
		return errJSONEnd
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, err := s.str()
		return err
	case c == '{' || c == '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		s.i++
		s.ws()
		if s.consume(closing) {
			return nil
		}
		for {
			s.ws()
			if c == '{' {
				if _, err := s.str(); err != nil {
					return err
				}
				s.ws()
				if !s.consume(':') {
					return s.fail("expected ':'")
				}
				s.ws()
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			s.ws()
			if s.consume(',') {
				continue
			}
			if s.consume(closing) {
				return nil
			}
			return s.fail("expected ',' or a closing bracket")
		}
	case c == 't':
		if s.literal("true") {
			return nil
		}
	case c == 'f':
		if s.literal("false") {
			return nil
		}
	case c == 'n':
		if s.literal("null") {
			return nil
		}
	default:
		_, err := s.number()
		return err
	}
	return s.fail("unexpected character")
}
