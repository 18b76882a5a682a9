package verify

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Result is one output record of the verified job: the count and sum of the
// events of one key in one event-time tumbling window
// [WindowStart, WindowEnd). Its wire form is the JSON object
// {"key":"u17","window_start":1764028800000,"window_end":1764028810000,"count":3,"sum":51};
// the Kafka record key is the key.
type Result struct {
	Key         string
	WindowStart int64 // ms since the epoch, inclusive
	WindowEnd   int64 // ms since the epoch, exclusive
	Count       int64
	Sum         float64
}

// windowID identifies a window: a key and a window start.
type windowID struct {
	key   string
	start int64
}

func (r Result) id() windowID { return windowID{r.Key, r.WindowStart} }

// String returns a compact human-readable form, used in verdict examples.
func (r Result) String() string {
	return fmt.Sprintf("key=%s window=[%d,%d) count=%d sum=%s",
		strconv.Quote(r.Key), r.WindowStart, r.WindowEnd, r.Count, formatSum(r.Sum))
}

func formatSum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// JSON returns the result's wire form, with the sum written as an integer
// when it is one ("51", not "51.0").
func (r Result) JSON() []byte {
	b := make([]byte, 0, 96+len(r.Key))
	b = append(b, `{"key":`...)
	b = appendJSONString(b, r.Key)
	b = append(b, `,"window_start":`...)
	b = strconv.AppendInt(b, r.WindowStart, 10)
	b = append(b, `,"window_end":`...)
	b = strconv.AppendInt(b, r.WindowEnd, 10)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, r.Count, 10)
	b = append(b, `,"sum":`...)
	b = strconv.AppendFloat(b, r.Sum, 'f', -1, 64)
	return append(b, '}')
}

type wireResult struct {
	Key         *string  `json:"key"`
	WindowStart *int64   `json:"window_start"`
	WindowEnd   *int64   `json:"window_end"`
	Count       *int64   `json:"count"`
	Sum         *float64 `json:"sum"`
}

// ParseResult parses a result's wire form. Every field must be present,
// non-null and of the right type (window_start, window_end and count
// integers; sum any JSON number); unknown fields are ignored. A missing
// field wraps ErrMissingField; the error names the fields and quotes the
// input.
func ParseResult(b []byte) (Result, error) {
	var w wireResult
	if err := decodeObject(b, &w); err != nil {
		return Result{}, fmt.Errorf("verify: parse result %s: %w", quoteShort(b), err)
	}
	var missing []string
	if w.Key == nil {
		missing = append(missing, "key")
	}
	if w.WindowStart == nil {
		missing = append(missing, "window_start")
	}
	if w.WindowEnd == nil {
		missing = append(missing, "window_end")
	}
	if w.Count == nil {
		missing = append(missing, "count")
	}
	if w.Sum == nil {
		missing = append(missing, "sum")
	}
	if len(missing) > 0 {
		return Result{}, fmt.Errorf("verify: parse result %s: %w %q", quoteShort(b), ErrMissingField, missing)
	}
	return Result{
		Key:         *w.Key,
		WindowStart: *w.WindowStart,
		WindowEnd:   *w.WindowEnd,
		Count:       *w.Count,
		Sum:         *w.Sum,
	}, nil
}

// WindowStart returns the start of the tumbling window of size sizeMs that
// holds ts: ts - ts mod sizeMs, rounded down also for negative ts.
func WindowStart(ts, sizeMs int64) int64 {
	m := ts % sizeMs
	if m < 0 {
		m += sizeMs
	}
	return ts - m
}

// Expected returns the results a correct job writes for events with
// tumbling windows of windowSize, once every window has closed: one per key
// and window that holds at least one event, ordered by window start, then
// key. windowSize counts in whole milliseconds; below one millisecond it is
// taken as one.
//
// Expected assumes every event is on time (see GenConfig.OutOfOrderness). A
// job writes a window only after its watermark passes the window's end, so
// a caller comparing a job's output before the input ends must keep only
// the windows that have closed (ExpectedBefore).
func Expected(events []Event, windowSize time.Duration) []Result {
	size := max(windowSize.Milliseconds(), 1)
	type acc struct {
		count int64
		sum   int64
	}
	accs := make(map[windowID]*acc)
	for _, e := range events {
		id := windowID{e.Key, WindowStart(e.TS, size)}
		a := accs[id]
		if a == nil {
			a = &acc{}
			accs[id] = a
		}
		a.count++
		a.sum += e.Amount
	}
	out := make([]Result, 0, len(accs))
	for id, a := range accs {
		out = append(out, Result{
			Key:         id.key,
			WindowStart: id.start,
			WindowEnd:   id.start + size,
			Count:       a.count,
			Sum:         float64(a.sum),
		})
	}
	slices.SortFunc(out, func(a, b Result) int {
		return cmp.Or(cmp.Compare(a.WindowStart, b.WindowStart), cmp.Compare(a.Key, b.Key))
	})
	return out
}

// ExpectedBefore returns the results of expected whose window ends at or
// before endMs, in the same order: the windows a job must have written once
// its watermark has passed endMs.
func ExpectedBefore(expected []Result, endMs int64) []Result {
	var out []Result
	for _, r := range expected {
		if r.WindowEnd <= endMs {
			out = append(out, r)
		}
	}
	return out
}
