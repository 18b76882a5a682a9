// Package window holds the window operators' logic as pure structs: no
// goroutines, no clock, no actors. The task actor that runs one feeds it
// records and watermarks and hands its captures to the snapshot worker.
package window

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/weirstream/weir/operator"
)

// Result is the aggregate of one key in one window.
type Result struct {
	Key   string
	Start int64 // window start, milliseconds since the epoch
	Count int64
	Sum   float64
}

// accumulator is the state of one key in one window, held by value in its
// window's map (no allocation per key, nothing for the GC to trace). epoch
// is the checkpoint epoch that last changed it: a capture encodes the ones
// of the epoch it ends, so the snapshot worker never reads the maps that
// Add and Fire change.
type accumulator struct {
	count int64
	sum   float64
	epoch uint64
}

// tumblingWindow is one open window: its keys' accumulators, the newest
// epoch that changed any of them (a capture skips the others), and the
// keys changed in that epoch, each once (a capture encodes those: its
// work is in proportion to the keys changed, not to the window's size).
type tumblingWindow struct {
	keys    map[string]accumulator
	epoch   uint64
	changed []string
}

// Tumbling counts and sums values per key in event-time tumbling windows
// of a fixed size, and fires a window when the watermark passes its last
// millisecond.
//
// Keyed state layout in the store: key group (2 bytes, big endian), window
// start (8 bytes, big endian), key; value: count (8 bytes) and sum (8
// bytes, IEEE 754 bits). The operator state is JSON {watermark, sizeMs}.
// A fired window's entries go by range deletions, one per key group.
type Tumbling struct {
	size  int64
	track bool
	wm    int64
	// windows maps a window start to its keys' accumulators.
	windows map[int64]*tumblingWindow
	// epoch numbers the checkpoint epochs (from 1; restored state is of
	// epoch 0). An accumulator changed in the current epoch carries it,
	// and its window lists its key once (no map of changed entries with
	// their accumulators copied, which at 10^5 keys held every key again
	// and was most of the heap).
	epoch uint64
	// fired holds the starts of the windows fired since the last capture:
	// a capture deletes each one's entries by key-group ranges, not one
	// delete per key.
	fired []int64
	// sizeHint is the arena size of the previous capture.
	sizeHint int
	// last caches the newest window (records mostly fall in it).
	lastStart int64
	last      *tumblingWindow
}

// NewTumbling returns windows of sizeMillis; track turns checkpoints on
// (what changed is remembered for Capture).
func NewTumbling(sizeMillis int64, track bool) *Tumbling {
	return &Tumbling{size: sizeMillis, track: track, wm: math.MinInt64,
		windows: map[int64]*tumblingWindow{}, epoch: 1}
}

// Watermark is the newest watermark fired.
func (w *Tumbling) Watermark() int64 { return w.wm }

// Add adds v to key's window of event time ts. It returns false, adding
// nothing, when that window has already fired (a late record).
func (w *Tumbling) Add(key string, ts int64, v float64) bool {
	return w.AddN(key, ts, 1, v)
}

// AddN adds n values summing to sum to key's window of event time ts: a
// partial aggregate, as a source's combiner folds one poll's records of a
// key and window into one. It returns false, adding nothing, when that
// window has already fired (the n records are late).
func (w *Tumbling) AddN(key string, ts, n int64, sum float64) bool {
	start, end := bounds(ts, w.size)
	if end <= w.wm {
		return false
	}
	win := w.last
	if win == nil || w.lastStart != start {
		win = w.windows[start]
		if win == nil {
			win = &tumblingWindow{keys: map[string]accumulator{}}
			w.windows[start] = win
		}
		w.last, w.lastStart = win, start
	}
	if win.epoch != w.epoch {
		win.epoch, win.changed = w.epoch, win.changed[:0]
	}
	a := win.keys[key]
	a.count += n
	a.sum += sum
	if w.track && a.epoch != w.epoch {
		win.changed = append(win.changed, key)
	}
	a.epoch = w.epoch
	win.keys[key] = a
	return true
}

// Fire emits and forgets every window whose last millisecond is <= wm,
// and remembers wm.
func (w *Tumbling) Fire(wm int64, emit func(Result)) {
	if wm > w.wm {
		w.wm = wm
	}
	for start, win := range w.windows {
		if _, end := bounds(start, w.size); end > wm {
			continue
		}
		for k, a := range win.keys {
			emit(Result{Key: k, Start: start, Count: a.count, Sum: a.sum})
		}
		if w.track {
			w.fired = append(w.fired, start)
		}
		delete(w.windows, start)
		if w.lastStart == start {
			w.last = nil
		}
	}
}

// Bounds returns the first and the last millisecond of the tumbling
// window of sizeMillis that holds ts (see bounds).
func Bounds(ts, sizeMillis int64) (start, end int64) { return bounds(ts, sizeMillis) }

// bounds returns the first and the last millisecond of the window of size
// that holds ts. Windows are aligned to multiples of size; the first and
// the last window of the int64 range are cut at its ends (the first starts
// at math.MinInt64, the last ends at math.MaxInt64), so nothing wraps
// around. The window's start is its key: bounds(start) is the same window.
func bounds(ts, size int64) (start, end int64) {
	m := ts % size
	if m < 0 {
		m += size
	}
	if ts < math.MinInt64+m {
		start = math.MinInt64
	} else {
		start = ts - m
	}
	return start, operator.AddSat(ts, size-1-m)
}

// opState is the operator's state beside its keyed state.
type opState struct {
	Watermark int64 `json:"watermark"`
	SizeMs    int64 `json:"sizeMs"`
}

// Capture ends the current epoch: it encodes the entries changed in it
// (those of its epoch, in the windows it changed) and a range deletion per
// key group of each window fired in it, here, on the caller's goroutine,
// into one arena that refers to nothing of the state. This is work in
// proportion to the keys changed, done once per checkpoint instead of a
// second map write per record. It returns a
// function that hands the entries over (for the snapshot worker) and the
// operator state.
func (w *Tumbling) Capture() (func() ([]operator.Entry, error), []byte) {
	op, _ := json.Marshal(opState{Watermark: w.wm, SizeMs: w.size})
	if !w.track {
		return func() ([]operator.Entry, error) { return nil, nil }, op
	}
	entries := w.encode()
	w.epoch++
	w.fired = w.fired[:0]
	return func() ([]operator.Entry, error) { return entries, nil }, op
}

// encode encodes the current epoch's changed entries into one arena, then,
// for each window fired in it, a range deletion of its entries in every
// key group: [group|start, group|start+1) as 10-byte prefixes. A window
// fires once and takes no record after, so none of its entries is among
// the changed ones.
func (w *Tumbling) encode() []operator.Entry {
	arena := make([]byte, 0, max(w.sizeHint, len(w.fired)*operator.KeyGroups*20))
	n := 0
	for _, win := range w.windows {
		if win.epoch == w.epoch {
			n += len(win.changed)
		}
	}
	entries := make([]operator.Entry, 0, n+len(w.fired)*operator.KeyGroups)
	for start, win := range w.windows {
		if win.epoch != w.epoch {
			continue
		}
		for _, key := range win.changed {
			a := win.keys[key]
			from := len(arena)
			arena = binary.BigEndian.AppendUint16(arena, uint16(operator.KeyGroup(key)))
			arena = binary.BigEndian.AppendUint64(arena, uint64(start))
			arena = append(arena, key...)
			vs := len(arena)
			arena = binary.BigEndian.AppendUint64(arena, uint64(a.count))
			arena = binary.BigEndian.AppendUint64(arena, math.Float64bits(a.sum))
			entries = append(entries, operator.Entry{Key: arena[from:vs:vs], Value: arena[vs:len(arena):len(arena)]})
		}
	}
	for _, start := range w.fired {
		for kg := range operator.KeyGroups {
			from := len(arena)
			arena = binary.BigEndian.AppendUint16(arena, uint16(kg))
			arena = binary.BigEndian.AppendUint64(arena, uint64(start))
			to := len(arena)
			arena = append(arena, arena[from:to]...)
			incPrefix(arena[to:])
			entries = append(entries, operator.Entry{Key: arena[from:to:to], End: arena[to:len(arena):len(arena)]})
		}
	}
	for _, win := range w.windows {
		if win.epoch == w.epoch {
			clear(win.changed) // keep the capacity, not the keys
			win.changed = win.changed[:0]
		}
	}
	w.sizeHint = len(arena)
	return entries
}

// incPrefix turns p into the smallest byte string greater than every
// string with prefix p, of the same length: p plus one as a big-endian
// number. A group|start prefix always has one (a key group's first byte
// is 0).
func incPrefix(p []byte) {
	for i := len(p) - 1; i >= 0; i-- {
		p[i]++
		if p[i] != 0 {
			return
		}
	}
}

// Restore rebuilds the windows from a restored store and operator state.
// It returns the number of entries read.
func (w *Tumbling) Restore(it operator.Iter, op []byte) (int, error) {
	var st opState
	if err := json.Unmarshal(op, &st); err != nil {
		return 0, fmt.Errorf("window state unreadable: %w", err)
	}
	if st.SizeMs != w.size {
		return 0, fmt.Errorf("the checkpoint has %dms windows, the job has %dms; use a fresh checkpoint.dir to change window.size", st.SizeMs, w.size)
	}
	w.wm = st.Watermark
	w.last = nil
	n := 0
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		v, err := it.Value()
		if err != nil {
			return n, fmt.Errorf("read restored state: %w", err)
		}
		if len(k) < 10 || len(v) != 16 {
			return n, fmt.Errorf("a malformed state entry (key %d bytes, value %d bytes)", len(k), len(v))
		}
		start := int64(binary.BigEndian.Uint64(k[2:10]))
		key := string(k[10:])
		win := w.windows[start]
		if win == nil {
			win = &tumblingWindow{keys: map[string]accumulator{}}
			w.windows[start] = win
		}
		win.keys[key] = accumulator{count: int64(binary.BigEndian.Uint64(v[:8])), sum: math.Float64frombits(binary.BigEndian.Uint64(v[8:]))}
		n++
	}
	if err := it.Error(); err != nil {
		return n, fmt.Errorf("read restored state: %w", err)
	}
	return n, nil
}

// State returns every open window's aggregates, for tests.
func (w *Tumbling) State() map[int64]map[string]Result {
	m := map[int64]map[string]Result{}
	for start, win := range w.windows {
		m[start] = map[string]Result{}
		for k, a := range win.keys {
			m[start][k] = Result{Key: k, Start: start, Count: a.count, Sum: a.sum}
		}
	}
	return m
}

// MergeOpStates merges the operator states of old window subtasks (a
// rescale): the smallest watermark (nothing fires early), the common size.
func MergeOpStates(ops [][]byte) ([]byte, error) {
	merged := opState{Watermark: math.MaxInt64}
	for i, op := range ops {
		var st opState
		if err := json.Unmarshal(op, &st); err != nil {
			return nil, fmt.Errorf("window state unreadable: %w", err)
		}
		if i > 0 && st.SizeMs != merged.SizeMs {
			return nil, fmt.Errorf("window states have different sizes (%d, %d ms)", merged.SizeMs, st.SizeMs)
		}
		merged.SizeMs = st.SizeMs
		merged.Watermark = min(merged.Watermark, st.Watermark)
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("no window state")
	}
	return json.Marshal(merged)
}

// AppendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it: quotes, backslashes and control characters, and bytes that
// are not UTF-8 as U+FFFD.
func AppendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// AppendResultJSON appends the JSON result of one key and window of
// sizeMillis, the window job's output record; the key is escaped as JSON.
// window_end is the first millisecond after the window (math.MaxInt64
// for the last window of the int64 range).
func AppendResultJSON(b []byte, r Result, sizeMillis int64) []byte {
	b = append(b, `{"key":`...)
	b = AppendJSONString(b, r.Key)
	b = append(b, `,"window_start":`...)
	b = strconv.AppendInt(b, r.Start, 10)
	b = append(b, `,"window_end":`...)
	_, end := bounds(r.Start, sizeMillis)
	b = strconv.AppendInt(b, operator.AddSat(end, 1), 10)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, r.Count, 10)
	b = append(b, `,"sum":`...)
	b = strconv.AppendFloat(b, r.Sum, 'f', -1, 64)
	return append(b, '}')
}
