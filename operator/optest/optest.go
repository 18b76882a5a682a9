// Package optest holds what tests of operators share: an in-memory store
// that takes the entries of captures as a task's store does, and restores
// from them.
package optest

import (
	"bytes"
	"sort"

	"github.com/weirstream/weir/operator"
)

// Store is a fake task store: the entries of captures applied in order.
type Store map[string][]byte

// Apply writes the captured entries (a nil value deletes its key, an End
// every key in [Key, End)).
func (s Store) Apply(es []operator.Entry) {
	for _, e := range es {
		if e.End != nil {
			for k := range s {
				if k >= string(e.Key) && k < string(e.End) {
					delete(s, k)
				}
			}
			continue
		}
		if e.Value == nil {
			delete(s, string(e.Key))
		} else {
			s[string(e.Key)] = bytes.Clone(e.Value)
		}
	}
}

// Clone returns a copy of the store: a checkpoint of it.
func (s Store) Clone() Store {
	c := make(Store, len(s))
	for k, v := range s {
		c[k] = v
	}
	return c
}

// Iter reads the store in key order, as a restore does.
func (s Store) Iter() operator.Iter {
	it := &iter{}
	for k, v := range s {
		it.kvs = append(it.kvs, [2][]byte{[]byte(k), v})
	}
	sort.Slice(it.kvs, func(i, j int) bool { return bytes.Compare(it.kvs[i][0], it.kvs[j][0]) < 0 })
	return it
}

type iter struct {
	kvs [][2][]byte
	i   int
}

func (it *iter) First() bool            { it.i = 0; return it.Valid() }
func (it *iter) Valid() bool            { return it.i < len(it.kvs) }
func (it *iter) Next() bool             { it.i++; return it.Valid() }
func (it *iter) Key() []byte            { return it.kvs[it.i][0] }
func (it *iter) Value() ([]byte, error) { return it.kvs[it.i][1], nil }
func (it *iter) Error() error           { return nil }
