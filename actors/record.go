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
	if keyField == "" || tsField == "" || keyField == tsField || valField != "" && (keyField == valField || tsField == valField) {
		return slow
	}
	return func(value []byte) ([]byte, int64, float64, error) {
		if key, ts, v, ok := fastExtract(value, keyField, tsField, valField); ok {
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
// reads differently from the full scanner. The fields are distinct, and
// only valField may be empty (no value read).
func fastExtract(b []byte, keyField, tsField, valField string) (key []byte, ts int64, v float64, ok bool) {
	n := len(b)
	i := skipWS(b, 0)
	if i >= n || b[i] != '{' {
		return
	}
	i++
	var haveKey, haveTS bool
	haveValue := valField == ""
	for {
		i = skipWS(b, i)
		if i >= n || b[i] != '"' {
			return // also the empty object: the full scanner reports what is missing
		}
		i++
		start := i
		i = plainEnd(b, i)
		if i >= n || b[i] != '"' {
			return
		}
		name := b[start:i]
		if len(name) == 0 {
			return // matches an empty valField in the full scanner
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
			if string(name) == keyField {
				key, haveKey = b[start:i], true
			} else if string(name) == tsField || string(name) == valField {
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
				for i < n && b[i] >= '0' && b[i] <= '9' {
					mant = mant*10 + uint64(b[i]-'0')
					digits++
					i++
				}
				if digits == 0 {
					return
				}
			}
			if i < n && b[i] == '.' {
				i++
				f := i
				for i < n && b[i] >= '0' && b[i] <= '9' {
					mant = mant*10 + uint64(b[i]-'0')
					i++
				}
				frac = i - f
				if frac == 0 {
					return
				}
				digits += frac
			}
			if i < n && (b[i] == 'e' || b[i] == 'E' || b[i] >= '0' && b[i] <= '9') {
				return // an exponent, or a leading zero followed by digits
			}
			switch {
			case string(name) == keyField:
				key, haveKey = b[start:i], true
			case string(name) == tsField:
				if neg || frac >= 0 || digits > 18 {
					return
				}
				ts, haveTS = int64(mant), true
			case string(name) == valField && valField != "":
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
			if string(name) == keyField || string(name) == tsField || string(name) == valField {
				return
			}
			i += 4
		case c == 'f' && n-i >= 5 && string(b[i:i+5]) == "false":
			if string(name) == keyField || string(name) == tsField || string(name) == valField {
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
