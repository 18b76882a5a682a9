package operator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// The store layout is described in the package documentation (doc.go).

func appendUint64(dst []byte, v uint64) []byte  { return binary.BigEndian.AppendUint64(dst, v) }
func uint64From(b []byte) uint64                { return binary.BigEndian.Uint64(b) }
func appendUvarint(dst []byte, v uint64) []byte { return binary.AppendUvarint(dst, v) }
func uvarint(b []byte) (uint64, int)            { return binary.Uvarint(b) }

const tsFlip = 1 << 63

// Capture ends the current checkpoint epoch, in O(1) on the caller's
// goroutine: it hands the set of entries changed since the previous
// Capture over whole and starts a new one. It returns the function that
// encodes them, for the snapshot worker: it runs later, on another
// goroutine, while processing goes on (the cells it reads are never
// changed again: copy-on-write). It returns the entries changed, and a
// delete entry (Value nil) for each one cleared, removed, expired, fired
// or deleted; the entries hold no memory of the keyed state. An entry
// that does not encode is an error naming the state and the key.
//
// Before that, Capture deletes the entries whose TTL passed since the
// last Capture (work proportional to them, each once).
//
// With KeyedStateConfig.Track off, the function returns nil.
func (s *KeyedState) Capture() func() ([]Entry, error) {
	s.expireDue()
	if len(s.dirty) == 0 {
		return func() ([]Entry, error) { return nil, nil }
	}
	dirty := s.dirty
	s.dirty = map[entryRef]any{}
	s.epoch++
	return func() ([]Entry, error) { return encodeEntries(dirty) }
}

// encodeEntries encodes the changed entries into one arena; a nil cell
// deletes its entry.
func encodeEntries(dirty map[entryRef]any) ([]Entry, error) {
	size := 0
	for ref := range dirty {
		size += 4 + len(ref.st.name) + 10 + len(ref.key) + 16
	}
	arena := make([]byte, 0, size)
	entries := make([]Entry, 0, len(dirty))
	for ref, c := range dirty {
		st := ref.st
		start := len(arena)
		arena = appendKeyPrefix(arena, ref.key, st.kind, st.name)
		var err error
		switch st.kind {
		case kindEventTime, kindProcTime:
			arena = appendUint64(arena, uint64(ref.ts)^tsFlip)
			arena = append(arena, ref.key...)
		case kindMap:
			arena = appendUvarint(arena, uint64(len(ref.key)))
			arena = append(arena, ref.key...)
			if arena, err = st.appendSub(arena, ref.key, ref.sub); err != nil {
				return nil, err
			}
		default:
			arena = append(arena, ref.key...)
		}
		e := Entry{Key: arena[start:len(arena):len(arena)]}
		if c != nil {
			vs := len(arena)
			if st.kind != kindEventTime && st.kind != kindProcTime {
				if arena, err = st.appendVal(arena, ref.key, c); err != nil {
					return nil, err
				}
			}
			e.Value = arena[vs:len(arena):len(arena)]
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func appendKeyPrefix(dst []byte, key string, kind byte, name string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(KeyGroup(key)))
	dst = append(dst, kind, byte(len(name)))
	return append(dst, name...)
}

// rawEntry is a restored entry of a state not registered yet.
type rawEntry struct {
	key string
	sub []byte // the encoded map key (maps only)
	val []byte
}

// pendingState holds the restored entries of one state until it is
// registered.
type pendingState struct {
	kind    byte
	entries []rawEntry
}

// Restore reads the keyed state of a checkpoint from it, once, before
// processing (a nil it restores nothing). Timers are restored at once.
// The entries of a state are kept as they are until the state is
// registered (Value, Map, List), which decodes them; a state registered
// already takes its entries now. A malformed store entry is an error.
// Restored entries are in the store already: they are not written again
// unless they change.
func (s *KeyedState) Restore(it Iter) error {
	if s == nil {
		return errors.New("operator: Restore on a nil KeyedState")
	}
	if s.restored {
		return errors.New("operator: Restore called twice")
	}
	s.restored = true
	if it == nil {
		return nil
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		v, err := it.Value()
		if err != nil {
			return fmt.Errorf("operator: restore: read the value of %q: %w", k, err)
		}
		if err := s.restoreEntry(k, v); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("operator: restore: %w", err)
	}
	for name, core := range s.states {
		p := s.pending[name]
		if p == nil {
			continue
		}
		if p.kind != core.kind {
			return fmt.Errorf("operator: state %q was restored as a %s state, registered as a %s state", name, kindName(p.kind), kindName(core.kind))
		}
		if err := core.load(p.entries); err != nil {
			return err
		}
		delete(s.pending, name)
	}
	return nil
}

func malformed(k []byte, why string) error {
	if len(k) > 64 {
		return fmt.Errorf("operator: restore: malformed store key %q... (%d bytes): %s", k[:64], len(k), why)
	}
	return fmt.Errorf("operator: restore: malformed store key %q: %s", k, why)
}

// restoreEntry restores one store entry; k and v are the iterator's,
// valid until it moves.
func (s *KeyedState) restoreEntry(k, v []byte) error {
	if len(k) < 4 {
		return malformed(k, "shorter than 4 bytes")
	}
	kg := int(binary.BigEndian.Uint16(k))
	kind := k[2]
	nl := int(k[3])
	if len(k) < 4+nl {
		return malformed(k, fmt.Sprintf("name of %d bytes past the end", nl))
	}
	name := k[4 : 4+nl]
	rest := k[4+nl:]
	var key string
	var sub []byte
	switch kind {
	case kindEventTime, kindProcTime:
		if nl != 0 {
			return malformed(k, "a timer with a name")
		}
		if len(rest) < 8 {
			return malformed(k, "timer time shorter than 8 bytes")
		}
		key = string(rest[8:])
	case kindValue, kindList:
		if nl == 0 {
			return malformed(k, "a state with an empty name")
		}
		key = string(rest)
	case kindMap:
		if nl == 0 {
			return malformed(k, "a state with an empty name")
		}
		n, w := uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return malformed(k, "bad key length")
		}
		key = string(rest[w : w+int(n)])
		sub = bytes.Clone(rest[w+int(n):])
		if sub == nil {
			sub = []byte{}
		}
	default:
		return malformed(k, fmt.Sprintf("unknown kind %q", kind))
	}
	if want := KeyGroup(key); kg != want {
		return malformed(k, fmt.Sprintf("key group %d, the key's is %d", kg, want))
	}
	switch kind {
	case kindEventTime:
		s.event.add(key, int64(uint64From(rest)^tsFlip))
		return nil
	case kindProcTime:
		s.proc.add(key, int64(uint64From(rest)^tsFlip))
		return nil
	}
	p := s.pending[string(name)]
	if p == nil {
		p = &pendingState{kind: kind}
		s.pending[string(name)] = p
	} else if p.kind != kind {
		return fmt.Errorf("operator: restore: state %q has both %s and %s entries", name, kindName(p.kind), kindName(kind))
	}
	val := bytes.Clone(v)
	if val == nil {
		val = []byte{}
	}
	p.entries = append(p.entries, rawEntry{key: key, sub: sub, val: val})
	return nil
}
