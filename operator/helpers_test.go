package operator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// memStore is a fake task store: the entries of the captures applied in
// order.
type memStore map[string][]byte

func (m memStore) apply(es []Entry) {
	for _, e := range es {
		if e.Value == nil {
			delete(m, string(e.Key))
		} else {
			m[string(e.Key)] = bytes.Clone(e.Value)
		}
	}
}

// iter returns an Iter over the store in key order.
func (m memStore) iter() *sliceIter {
	it := &sliceIter{}
	for k, v := range m {
		it.kvs = append(it.kvs, [2][]byte{[]byte(k), v})
	}
	slices.SortFunc(it.kvs, func(a, b [2][]byte) int { return bytes.Compare(a[0], b[0]) })
	return it
}

// sliceIter is an Iter over a sorted slice. Like a Pebble iterator it
// reuses its key and value buffers, so a caller that keeps them without
// copying sees them change.
type sliceIter struct {
	kvs      [][2][]byte
	i        int
	kbuf     []byte
	vbuf     []byte
	valueErr error // returned by Value
	err      error // returned by Error
}

func (it *sliceIter) First() bool { it.i = 0; return it.Valid() }
func (it *sliceIter) Valid() bool { return it.i < len(it.kvs) }
func (it *sliceIter) Next() bool  { it.i++; return it.Valid() }
func (it *sliceIter) Key() []byte {
	it.kbuf = append(it.kbuf[:0], it.kvs[it.i][0]...)
	return it.kbuf
}
func (it *sliceIter) Value() ([]byte, error) {
	if it.valueErr != nil {
		return nil, it.valueErr
	}
	it.vbuf = append(it.vbuf[:0], it.kvs[it.i][1]...)
	return it.vbuf, nil
}
func (it *sliceIter) Error() error { return it.err }

// run runs a captured function and fails the test on error.
func run(t *testing.T, f func() ([]Entry, error)) []Entry {
	t.Helper()
	es, err := f()
	if err != nil {
		t.Fatalf("captured function: %v", err)
	}
	return es
}

// storeKey is a store key taken apart, by the layout, independently of
// the code under test.
type storeKey struct {
	kg   int
	kind byte
	name string
	key  string
	sub  []byte // map key bytes
	ts   int64  // timers
}

func parseStoreKey(k []byte) (storeKey, error) {
	var sk storeKey
	if len(k) < 4 {
		return sk, errors.New("short")
	}
	sk.kg = int(binary.BigEndian.Uint16(k))
	sk.kind = k[2]
	nl := int(k[3])
	if len(k) < 4+nl {
		return sk, errors.New("short name")
	}
	sk.name = string(k[4 : 4+nl])
	rest := k[4+nl:]
	switch sk.kind {
	case 'v', 'l':
		sk.key = string(rest)
	case 'm':
		n, w := binary.Uvarint(rest)
		if w <= 0 || int(n) > len(rest)-w {
			return sk, errors.New("bad map key length")
		}
		sk.key = string(rest[w : w+int(n)])
		sk.sub = rest[w+int(n):]
	case 'e', 'p':
		if len(rest) < 8 {
			return sk, errors.New("short timer")
		}
		sk.ts = int64(binary.BigEndian.Uint64(rest) ^ (1 << 63))
		sk.key = string(rest[8:])
	default:
		return sk, fmt.Errorf("kind %q", sk.kind)
	}
	return sk, nil
}

// describe renders entries as sorted readable lines, for comparisons.
func describe(t *testing.T, es []Entry) []string {
	t.Helper()
	var out []string
	for _, e := range es {
		sk, err := parseStoreKey(e.Key)
		if err != nil {
			t.Fatalf("entry %q: %v", e.Key, err)
		}
		var s string
		switch sk.kind {
		case 'e', 'p':
			s = fmt.Sprintf("%c %s@%d", sk.kind, sk.key, sk.ts)
		case 'm':
			s = fmt.Sprintf("m %s/%s/%x", sk.name, sk.key, sk.sub)
		default:
			s = fmt.Sprintf("%c %s/%s", sk.kind, sk.name, sk.key)
		}
		if e.Value == nil {
			s += " DEL"
		} else {
			s += fmt.Sprintf(" = %x", e.Value)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func i64(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

// listBytes encodes list elements as the store does.
func listBytes(elems ...[]byte) []byte {
	var b []byte
	for _, e := range elems {
		b = binary.AppendUvarint(b, uint64(len(e)))
		b = append(b, e...)
	}
	return b
}

// key builds a store key by the layout.
func key(kind byte, name, k string, tail ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(KeyGroup(k)))
	b = append(b, kind, byte(len(name)))
	b = append(b, name...)
	switch kind {
	case 'm':
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = append(b, tail...)
	case 'e', 'p':
		b = append(b, tail...) // the time
		b = append(b, k...)
	default:
		b = append(b, k...)
	}
	return b
}

func tsBytes(ts int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(ts)^(1<<63)) }

// must returns v; an error panics, which fails the test.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
