package txsink

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// State is the part of a sink subtask's operator state that txsink owns:
// what PreCommit returns to be saved with checkpoint N, and what Recover is
// given back. It is encoded with a version and a checksum.
type State struct {
	// IDs are the transactional identities the writer could have used.
	// Recover fences all of them, even when no epoch is pending, so that a
	// transaction opened after the checkpoint by a subtask that no longer
	// exists (a different parallelism) is aborted.
	IDs []string
	// Pending are the epochs pre-committed but not known to be committed,
	// in epoch order, with their records.
	Pending []PendingEpoch
}

// PendingEpoch is one pre-committed epoch kept in state.
type PendingEpoch struct {
	Epoch uint64
	// Owner is the progress-marker key the epoch was written under.
	Owner   string
	Records []Record
	// Spill, when set, names the spill file that holds the records
	// (Config.SpillDir) instead of Records.
	Spill *SpillRef
	// Routed: Records carry their topics and headers (Config.Routed).
	Routed bool
}

// stateMagic heads a state whose pending epochs hold their records;
// stateMagicSpill one whose pending epochs each say which they hold (kind
// 0: records, 1: a spill file); stateMagicRouted is stateMagicSpill with
// two more kinds, whose records carry topics and headers (2: records, 3:
// a routed spill file). The oldest magic that holds a state is used, so
// states of a sink without routed epochs read as before.
const (
	stateMagic       = "WTX1"
	stateMagicSpill  = "WTX2"
	stateMagicRouted = "WTX3"
)

// Pending epoch kinds after stateMagicSpill.
const (
	kindRecords       = 0
	kindSpill         = 1
	kindRoutedRecords = 2
	kindRoutedSpill   = 3
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// EncodeState returns the binary form of st.
func EncodeState(st State) []byte {
	n := len(stateMagic) + 16
	for _, id := range st.IDs {
		n += len(id) + 4
	}
	magic := stateMagic
	for _, p := range st.Pending {
		n += 24 + len(p.Owner)
		for _, r := range p.Records {
			n += r.size() + 8
		}
		if p.Spill != nil {
			if magic == stateMagic {
				magic = stateMagicSpill
			}
			n += len(p.Spill.Name) + 32
		}
		if p.Routed || p.Spill != nil && p.Spill.Routed {
			magic = stateMagicRouted
			for _, r := range p.Records {
				n += r.routeBytes()
			}
		}
	}
	b := make([]byte, 0, n)
	b = append(b, magic...)
	b = binary.AppendUvarint(b, uint64(len(st.IDs)))
	for _, id := range st.IDs {
		b = appendBytes(b, []byte(id), false)
	}
	b = binary.AppendUvarint(b, uint64(len(st.Pending)))
	for _, p := range st.Pending {
		b = binary.AppendUvarint(b, p.Epoch)
		b = appendBytes(b, []byte(p.Owner), false)
		routed := false
		if magic != stateMagic {
			switch {
			case p.Spill != nil && p.Spill.Routed:
				b = append(b, kindRoutedSpill)
			case p.Spill != nil:
				b = append(b, kindSpill)
			case p.Routed:
				b, routed = append(b, kindRoutedRecords), true
			default:
				b = append(b, kindRecords)
			}
			if p.Spill != nil {
				b = appendSpillRef(b, *p.Spill)
				continue
			}
		}
		b = binary.AppendUvarint(b, uint64(len(p.Records)))
		for _, r := range p.Records {
			b = appendRecord(b, r, routed)
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// nullableLen is the length prefix appendBytes writes for a nullable s.
func nullableLen(s []byte) uint64 {
	if s == nil {
		return 0
	}
	return uint64(len(s)) + 1
}

// uvarintLen is the length of v as a uvarint.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendBytes appends a length-prefixed byte string; with nullable, a nil
// slice is encoded apart from an empty one (Kafka's null key).
func appendBytes(b, s []byte, nullable bool) []byte {
	switch {
	case !nullable:
		b = binary.AppendUvarint(b, uint64(len(s)))
	case s == nil:
		return binary.AppendUvarint(b, 0)
	default:
		b = binary.AppendUvarint(b, uint64(len(s))+1)
	}
	return append(b, s...)
}

// DecodeState parses what EncodeState returned. Empty input is the state of
// a fresh start. Record bytes alias b.
func DecodeState(b []byte) (State, error) {
	if len(b) == 0 {
		return State{}, nil
	}
	if len(b) < len(stateMagic)+4 {
		return State{}, fmt.Errorf("%w: no %s header", ErrState, stateMagic)
	}
	magic := string(b[:len(stateMagic)])
	if magic != stateMagic && magic != stateMagicSpill && magic != stateMagicRouted {
		return State{}, fmt.Errorf("%w: no %s, %s or %s header", ErrState, stateMagic, stateMagicSpill, stateMagicRouted)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return State{}, fmt.Errorf("%w: checksum mismatch", ErrState)
	}
	d := decoder{b: body[len(stateMagic):]}
	var st State
	nIDs := d.count()
	for range nIDs {
		st.IDs = append(st.IDs, string(d.bytes(false)))
	}
	nPending := d.count()
	for range nPending {
		p := PendingEpoch{Epoch: d.uvarint(), Owner: string(d.bytes(false))}
		if magic != stateMagic {
			maxKind := byte(kindSpill)
			if magic == stateMagicRouted {
				maxKind = kindRoutedSpill
			}
			switch kind := d.byte(); {
			case d.err != nil:
			case kind > maxKind:
				d.err = fmt.Errorf("pending epoch kind %d", kind)
			case kind == kindSpill || kind == kindRoutedSpill:
				r := d.spillRef()
				r.Routed = kind == kindRoutedSpill
				p.Spill = &r
				st.Pending = append(st.Pending, p)
				continue
			case kind == kindRoutedRecords:
				p.Routed = true
			}
		}
		nRecs := d.count()
		p.Records = make([]Record, 0, nRecs)
		for range nRecs {
			p.Records = append(p.Records, d.record(p.Routed))
		}
		st.Pending = append(st.Pending, p)
	}
	if d.err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrState, d.err)
	}
	if len(d.b) != 0 {
		return State{}, fmt.Errorf("%w: %d trailing bytes", ErrState, len(d.b))
	}
	return st, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count, bounded by the bytes left (every element
// takes at least one byte), so corrupt input cannot allocate much.
func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = fmt.Errorf("cut short")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		if d.err == nil {
			d.err = fmt.Errorf("count %d exceeds the %d bytes left", v, len(d.b))
		}
		return 0
	}
	return int(v)
}

func (d *decoder) bytes(nullable bool) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if nullable {
		if n == 0 {
			return nil
		}
		n--
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("length %d exceeds the %d bytes left", n, len(d.b))
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}
