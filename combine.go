package weir

import (
	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/operator"
	"github.com/weirstream/weir/operator/window"
)

// The window job's tumbling count and sum aggregates in two phases, as
// Flink SQL's local-global aggregation does: the source's decoder folds
// the records of one poll that share a key and a window into one partial
// (a count and a sum), and the window operator adds the partials. With
// few keys a poll of 4096 records becomes about one partial per key, so
// the key exchange and the window's maps see a fraction of the records.
//
// Nothing about the results changes: a poll's records are decoded, their
// event times checked and the watermark advanced as before, a poll is
// handed over whole between two barriers (a checkpoint never splits a
// partial), and a partial's window is judged late or not as each of its
// records would be (they share the window, and the window operator's
// watermark does not move within a poll). Counts stay counts of records:
// the exchange counts a partial as the records it folds, and a late
// partial adds its records to the late-dropped metric. A sum of many
// values may differ in its last bits from the one-by-one sum (floating
// point addition is not associative), as it already does with the order
// in which partitions interleave.

// partial is the count and sum of some records of one key in one window.
type partial struct {
	n   int64
	sum float64
}

// partialRecords is the records a partial stands for (the exchange's
// weight of its values; see exchange.weight).
var partialRecords = func(p partial) int { return int(p.n) }

// Combiner tuning: a poll whose partials are more than combineMaxShare of
// its records (many distinct keys: Q1 at 10^5 keys and up) gains nothing
// from folding, so the next combineSkip polls make one partial per record
// without the hash table, and the one after tries folding again.
const (
	combineMaxShare = 0.75
	combineSkip     = 16
	combineMinSlots = 1 << 10
)

// combineDecoder is the fast window job's decoder: its Extractor reads a
// record's key, event time and value, and Keep folds the record into the
// poll's partial of its key and window.
type combineDecoder struct {
	extract actors.Extractor
	size    int64    // window size, milliseconds
	keys    keyCache // its hash of a key is the partials' hash too

	// The record of the last Decode (key aliases the poll's buffer, which
	// is not reused while the poll lasts).
	key []byte
	ts  int64
	v   float64

	// The window of the last record kept: records mostly fall in it, so
	// its bounds spare a division per record.
	haveWin bool
	wStart  int64
	wEnd    int64
	out     []operator.Rec[partial]
	meta    []partialMeta // per out entry
	slots   []int32       // open addressing: index into out + 1; 0 is empty
	records int           // kept since the last Take
	lastOut int           // partials of the previous poll: the next one's capacity
	skip    int           // polls left to make without folding
}

// partialMeta is what a slot lookup compares besides the key: the hash of
// the key and window, and the window's start.
type partialMeta struct {
	hash  uint64
	start int64
}

func newCombineDecoder(extract actors.Extractor, sizeMillis int64) *combineDecoder {
	return &combineDecoder{extract: extract, size: sizeMillis}
}

func (d *combineDecoder) Decode(_, value []byte, _ int64, _ int32, _ int64) (int64, error) {
	key, ts, v, err := d.extract(value)
	if err != nil {
		return 0, err
	}
	d.key, d.ts, d.v = key, ts, v
	return ts, nil
}

// CopiesInput: the key goes through the key cache (a copy), the rest
// into numbers (actors.InputCopier).
func (d *combineDecoder) CopiesInput() bool { return true }

func (d *combineDecoder) Keep() {
	d.records++
	if d.out == nil {
		d.out = make([]operator.Rec[partial], 0, max(256, d.lastOut))
	}
	if d.skip > 0 {
		d.out = append(d.out, operator.Rec[partial]{TS: d.ts, Key: d.keys.get(d.key), V: partial{1, d.v}})
		return
	}
	if !d.haveWin || d.ts < d.wStart || d.ts > d.wEnd {
		d.wStart, d.wEnd = window.Bounds(d.ts, d.size)
		d.haveWin = true
	}
	start := d.wStart
	if d.slots == nil {
		d.slots = make([]int32, combineMinSlots)
	}
	hk := d.keys.hash(d.key)
	h := hk ^ uint64(start)*0x9e3779b97f4a7c15
	mask := uint64(len(d.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := d.slots[i]
		if s == 0 {
			d.out = append(d.out, operator.Rec[partial]{TS: d.ts, Key: d.keys.getHashed(d.key, hk), V: partial{1, d.v}})
			d.meta = append(d.meta, partialMeta{hash: h, start: start})
			d.slots[i] = int32(len(d.out))
			if 2*len(d.out) > len(d.slots) {
				d.grow()
			}
			return
		}
		m := &d.meta[s-1]
		if m.hash != h || m.start != start {
			continue
		}
		r := &d.out[s-1]
		if r.Key != string(d.key) { // no allocation for the compare
			continue
		}
		r.V.n++
		r.V.sum += d.v
		if d.ts > r.TS {
			r.TS = d.ts
		}
		return
	}
}

// grow doubles the slot table and places the partials again.
func (d *combineDecoder) grow() {
	d.slots = make([]int32, 2*len(d.slots))
	mask := uint64(len(d.slots) - 1)
	for j, m := range d.meta {
		i := m.hash & mask
		for d.slots[i] != 0 {
			i = (i + 1) & mask
		}
		d.slots[i] = int32(j + 1)
	}
}

// Take hands over the poll's partials, and the number of records they
// fold.
func (d *combineDecoder) Take() (any, int) {
	b, n := d.out, d.records
	folded := d.skip == 0
	d.out, d.records, d.lastOut = nil, 0, len(b)
	if 16*len(d.meta) < len(d.slots) {
		// A small poll: empty its slots, not the whole table.
		mask := uint64(len(d.slots) - 1)
		for j, m := range d.meta {
			i := m.hash & mask
			for d.slots[i] != int32(j+1) {
				i = (i + 1) & mask
			}
			d.slots[i] = 0
		}
	} else {
		clear(d.slots)
	}
	d.meta = d.meta[:0]
	switch {
	case d.skip > 0:
		d.skip--
	case folded && n >= 256 && float64(len(b)) > combineMaxShare*float64(n):
		d.skip = combineSkip
	}
	return b, n
}
