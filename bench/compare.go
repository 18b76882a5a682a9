package bench

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/weirstream/weir/integration/verify"
)

// The equal-work check of the sliding, session, interval join and
// dataflow workloads compares outputs record by record: each system's with
// the records the input implies, and weir's with Flink's. The input's
// disorder is below the watermark bound, so no record is late and the
// window and join outputs are fully determined by the input; the dataflow
// workload's running totals depend only on each user's order of events,
// which is its partition's (see expectedTotals).

// cmpResult orders window results by key, window start, window end, then
// count and sum: equal results compare 0.
func cmpResult(x, y verify.Result) int {
	return cmp.Or(cmp.Compare(x.Key, y.Key), cmp.Compare(x.WindowStart, y.WindowStart),
		cmp.Compare(x.WindowEnd, y.WindowEnd), cmp.Compare(x.Count, y.Count), cmp.Compare(x.Sum, y.Sum))
}

// cmpPair orders join results by left seq, right seq, then user and the
// event times: equal pairs compare 0.
func cmpPair(x, y joinPair) int {
	return cmp.Or(cmp.Compare(x.L, y.L), cmp.Compare(x.R, y.R), cmp.Compare(x.User, y.User),
		cmp.Compare(x.LT, y.LT), cmp.Compare(x.RT, y.RT))
}

func (p joinPair) String() string {
	return fmt.Sprintf("user=%s l=%d r=%d lt=%d rt=%d", strconv.Quote(p.User), p.L, p.R, p.LT, p.RT)
}

// compareResults compares two sets of window results record by record,
// both sorted by (key, window_start, window_end); see compareSorted.
func compareResults(nameA string, a []verify.Result, nameB string, b []verify.Result) (bool, string) {
	return compareSorted(nameA, a, nameB, b, "key, window_start, window_end", cmpResult, verify.Result.String)
}

// comparePairs compares two sets of join results record by record, both
// sorted by (l, r); see compareSorted.
func comparePairs(nameA string, a []joinPair, nameB string, b []joinPair) (bool, string) {
	return compareSorted(nameA, a, nameB, b, "l, r", cmpPair, joinPair.String)
}

// compareSorted sorts copies of a and b with order (0 only for records
// equal in every field) and compares them index by index. Equal: true and
// "OK: N records equal". Otherwise false and the first index where they
// differ with both records (or "none" past the end of the shorter one),
// and both counts.
func compareSorted[T any](nameA string, a []T, nameB string, b []T, by string, order func(x, y T) int, format func(T) string) (bool, string) {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, order)
	slices.SortFunc(b, order)
	rec := func(s []T, i int) string {
		if i < len(s) {
			return format(s[i])
		}
		return "none"
	}
	for i := range max(len(a), len(b)) {
		if i < len(a) && i < len(b) && order(a[i], b[i]) == 0 {
			continue
		}
		return false, fmt.Sprintf("FAILED: record %d (sorted by %s) differs: %s {%s}, %s {%s}; %s has %d records, %s %d",
			i, by, nameA, rec(a, i), nameB, rec(b, i), nameA, len(a), nameB, len(b))
	}
	return true, fmt.Sprintf("OK: %d records equal", len(a))
}

// expectedSliding returns the results of sliding windows of sizeMs
// starting every slideMs (at multiples of slideMs since the epoch) over
// events, one per key and window with at least one event: event e is in
// every window [s, s+sizeMs) with s <= e.TS < s+sizeMs.
func expectedSliding(events []verify.Event, sizeMs, slideMs int64) []verify.Result {
	type id struct {
		key   string
		start int64
	}
	accs := map[id]*verify.Result{}
	for _, e := range events {
		for s := verify.WindowStart(e.TS, slideMs); s > e.TS-sizeMs; s -= slideMs {
			r := accs[id{e.Key, s}]
			if r == nil {
				r = &verify.Result{Key: e.Key, WindowStart: s, WindowEnd: s + sizeMs}
				accs[id{e.Key, s}] = r
			}
			r.Count++
			r.Sum += float64(e.Amount)
		}
	}
	out := make([]verify.Result, 0, len(accs))
	for _, r := range accs {
		out = append(out, *r)
	}
	slices.SortFunc(out, cmpResult)
	return out
}

// expectedSessions returns the session windows of gapMs over events (as
// Flink's EventTimeSessionWindows makes them): per key, the events in
// event-time order, a new session where an event is more than gapMs after
// the one before (windows [ts, ts+gap) that touch merge); a session is
// [first ts, last ts + gapMs).
func expectedSessions(events []verify.Event, gapMs int64) []verify.Result {
	byKey := map[string][]verify.Event{}
	for _, e := range events {
		byKey[e.Key] = append(byKey[e.Key], e)
	}
	var out []verify.Result
	for key, es := range byKey {
		slices.SortStableFunc(es, func(x, y verify.Event) int { return cmp.Compare(x.TS, y.TS) })
		var cur *verify.Result
		last := int64(0)
		for _, e := range es {
			if cur != nil && e.TS-last > gapMs {
				out = append(out, *cur)
				cur = nil
			}
			if cur == nil {
				cur = &verify.Result{Key: key, WindowStart: e.TS}
			}
			cur.Count++
			cur.Sum += float64(e.Amount)
			last = e.TS
			cur.WindowEnd = e.TS + gapMs
		}
		out = append(out, *cur)
	}
	slices.SortFunc(out, cmpResult)
	return out
}

// expectedPairs returns the interval join's pairs over events: left the
// events with even seq, right those with odd seq; every left a and right b
// of the same user with a.TS+lowerMs <= b.TS <= a.TS+upperMs.
func expectedPairs(events []verify.Event, lowerMs, upperMs int64) []joinPair {
	right := map[string][]verify.Event{}
	for _, e := range events {
		if e.Seq%2 != 0 {
			right[e.Key] = append(right[e.Key], e)
		}
	}
	for _, rs := range right {
		slices.SortStableFunc(rs, func(x, y verify.Event) int { return cmp.Compare(x.TS, y.TS) })
	}
	var out []joinPair
	for _, a := range events {
		if a.Seq%2 != 0 {
			continue
		}
		rs := right[a.Key]
		i, _ := slices.BinarySearchFunc(rs, a.TS+lowerMs, func(e verify.Event, t int64) int { return cmp.Compare(e.TS, t) })
		for ; i < len(rs) && rs[i].TS <= a.TS+upperMs; i++ {
			out = append(out, joinPair{User: a.Key, L: a.Seq, R: rs[i].Seq, LT: a.TS, RT: rs[i].TS})
		}
	}
	slices.SortFunc(out, cmpPair)
	return out
}

// parsePairs parses the values of the interval join's output; every field
// must be there.
func parsePairs(values [][]byte) ([]joinPair, error) {
	out := make([]joinPair, 0, len(values))
	for i, v := range values {
		var w struct {
			User         *string
			L, R, LT, RT *int64
		}
		d := json.NewDecoder(bytes.NewReader(v))
		if err := d.Decode(&w); err != nil {
			return nil, fmt.Errorf("bench: join result %d %q: %w", i, v, err)
		}
		if w.User == nil || w.L == nil || w.R == nil || w.LT == nil || w.RT == nil {
			return nil, fmt.Errorf("bench: join result %d %q: want the fields user, l, r, lt and rt", i, v)
		}
		out = append(out, joinPair{User: *w.User, L: *w.L, R: *w.R, LT: *w.LT, RT: *w.RT})
	}
	return out, nil
}

// dataflowMinAmount is the dataflow workload's filter on both systems: an
// event passes when its amount is above it (amounts are 1..100, so about
// half pass).
const dataflowMinAmount = 50

// cmpTotal orders the dataflow workload's results by seq, then user, count
// and sum: equal results compare 0.
func cmpTotal(x, y runningTotal) int {
	return cmp.Or(cmp.Compare(x.Seq, y.Seq), cmp.Compare(x.User, y.User),
		cmp.Compare(x.Count, y.Count), cmp.Compare(x.Sum, y.Sum))
}

func (t runningTotal) String() string {
	return fmt.Sprintf("user=%s seq=%d count=%d sum=%d", strconv.Quote(t.User), t.Seq, t.Count, t.Sum)
}

// compareTotals compares two sets of the dataflow workload's results
// record by record, both sorted by seq; see compareSorted.
func compareTotals(nameA string, a []runningTotal, nameB string, b []runningTotal) (bool, string) {
	return compareSorted(nameA, a, nameB, b, "seq", cmpTotal, runningTotal.String)
}

// expectedTotals returns the dataflow workload's results over events: for
// every event with an amount above dataflowMinAmount, its user's running
// count and sum of doubled amounts over the events kept so far, in input
// order. All events of a user are on one partition (verify.Partition), so
// both systems see each user's events in input order, whatever the order
// across partitions, and the results are fully determined by the input.
func expectedTotals(events []verify.Event) []runningTotal {
	type acc struct{ count, sum int64 }
	accs := map[string]acc{}
	var out []runningTotal
	for _, e := range events {
		if e.Amount <= dataflowMinAmount {
			continue
		}
		a := accs[e.Key]
		a.count++
		a.sum += 2 * e.Amount
		accs[e.Key] = a
		out = append(out, runningTotal{User: e.Key, Seq: e.Seq, Count: a.count, Sum: a.sum})
	}
	slices.SortFunc(out, cmpTotal)
	return out
}

// parseTotals parses the records of the dataflow workload's output; every
// field must be there and the record key must be the user.
func parseTotals(recs []verify.Record) ([]runningTotal, error) {
	out := make([]runningTotal, 0, len(recs))
	for i, r := range recs {
		var w struct {
			User            *string
			Seq, Count, Sum *int64
		}
		d := json.NewDecoder(bytes.NewReader(r.Value))
		if err := d.Decode(&w); err != nil {
			return nil, fmt.Errorf("bench: dataflow result %d %q: %w", i, r.Value, err)
		}
		if w.User == nil || w.Seq == nil || w.Count == nil || w.Sum == nil {
			return nil, fmt.Errorf("bench: dataflow result %d %q: want the fields user, seq, count and sum", i, r.Value)
		}
		if string(r.Key) != *w.User {
			return nil, fmt.Errorf("bench: dataflow result %d %q: record key %q, want the user %q", i, r.Value, r.Key, *w.User)
		}
		out = append(out, runningTotal{User: *w.User, Seq: *w.Seq, Count: *w.Count, Sum: *w.Sum})
	}
	return out, nil
}
