package verify

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// ProblemsMax is the most problems a SessionVerdict lists.
const ProblemsMax = 20

// SessionVerdict is the outcome of CheckSessions.
type SessionVerdict struct {
	// Input, Results and Late count the input records, the results and
	// the late-topic records checked.
	Input, Results, Late int
	// Final is the final sessions: for each key the last result of every
	// window that no later result of the key covers (the sessions as they
	// ended), ordered by key, then window start.
	Final []Result
	// Refired counts results for a window already written before (a late
	// record within the allowed lateness updated it).
	Refired int
	// Merged counts results whose window a later, wider result of the same
	// key covers (the session grew or merged with another).
	Merged int
	// Problems lists up to ProblemsMax violations, at most
	// problemsPerKind of each kind; ProblemCount counts them all, Kinds
	// by kind ("duplicate firing", "lost record", ...). OK is
	// ProblemCount == 0.
	Problems     []string
	ProblemCount int
	Kinds        map[string]int
	OK           bool
}

// problemsPerKind is the most problems of one kind Problems lists.
const problemsPerKind = 5

func (v *SessionVerdict) problem(kind, format string, args ...any) {
	v.ProblemCount++
	if v.Kinds == nil {
		v.Kinds = map[string]int{}
	}
	v.Kinds[kind]++
	if len(v.Problems) < ProblemsMax && v.Kinds[kind] <= problemsPerKind {
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
	}
}

// String returns the one-line verdict.
func (v SessionVerdict) String() string {
	head := "exactly-once OK"
	if !v.OK {
		kinds := make([]string, 0, len(v.Kinds))
		for k, n := range v.Kinds {
			kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
		}
		sort.Strings(kinds)
		head = fmt.Sprintf("FAILED problems=%d (%s)", v.ProblemCount, strings.Join(kinds, ", "))
	}
	return fmt.Sprintf("sessions verdict: %s input=%d results=%d late=%d final_sessions=%d refired=%d merged=%d",
		head, v.Input, v.Results, v.Late, len(v.Final), v.Refired, v.Merged)
}

// Report returns String followed by the problems, one per indented line.
func (v SessionVerdict) Report() string {
	var b strings.Builder
	b.WriteString(v.String())
	for _, p := range v.Problems {
		b.WriteString("\n  ")
		b.WriteString(p)
	}
	if v.ProblemCount > len(v.Problems) {
		fmt.Fprintf(&b, "\n  ... and %d more", v.ProblemCount-len(v.Problems))
	}
	return b.String()
}

// sessionWindow identifies a session result: key, start, end.
type sessionWindow struct {
	key        string
	start, end int64
}

func (w sessionWindow) covers(o sessionWindow) bool {
	return w.start <= o.start && o.end <= w.end
}

// CheckSessions checks the exactly-once output of a session-window job
// with allowed lateness and a late topic (count and sum of each session,
// gap gapMs, Flink's event-time session windows) against its input,
// without assuming which records came late: that depends on how the
// watermark progressed. It holds for the output of any single execution:
//
//  1. Late topic: every record is an input record, key and value
//     byte-identical to the input, each input record (by Seq) at most once.
//  2. Results, per key in output order (results holds the records of one
//     key in the order they were committed; ReadResults gives that, since
//     a key's results are on one partition): for each window (key, start,
//     end) the counts strictly increase, so a firing written twice shows
//     as an equal count; and every window is one the key's input records
//     could form: records at its start and at end-gapMs, every step
//     between the key's records in it at most gapMs, and no more records
//     in it than its count.
//  3. The final sessions of a key (SessionVerdict.Final) are disjoint;
//     their counts and sums plus the key's late-topic records add up to
//     the key's input records and amounts.
//  4. Every input record not in the late topic is inside exactly one final
//     session of its key (start <= ts < end), and each final session's
//     count and sum are those of the records inside it.
//
// Input Seqs must be distinct. Amounts are summed as integers; a result's
// sum must be a whole number.
func CheckSessions(gapMs int64, input []Event, results []Result, late []Record) SessionVerdict {
	v := SessionVerdict{Input: len(input), Results: len(results), Late: len(late)}

	bySeq := make(map[int64]Event, len(input))
	byKey := map[string][]Event{}
	for _, e := range input {
		if _, dup := bySeq[e.Seq]; dup {
			v.problem("input", "input: seq %d twice (the checker needs distinct seqs)", e.Seq)
			continue
		}
		bySeq[e.Seq] = e
		byKey[e.Key] = append(byKey[e.Key], e)
	}
	for _, es := range byKey {
		slices.SortFunc(es, func(a, b Event) int { return cmp.Compare(a.TS, b.TS) })
	}

	// 1. The late topic.
	lateAt := map[int64]Record{}
	for _, r := range late {
		e, err := ParseEvent(r.Value)
		if err != nil {
			v.problem("late topic", "late topic partition %d offset %d: not an input record: %v", r.Partition, r.Offset, err)
			continue
		}
		in, ok := bySeq[e.Seq]
		if !ok {
			v.problem("late topic", "late topic partition %d offset %d: seq %d is no input record", r.Partition, r.Offset, e.Seq)
			continue
		}
		if !bytes.Equal(r.Value, in.JSON()) || !bytes.Equal(r.Key, []byte(in.Key)) {
			v.problem("late topic", "late topic partition %d offset %d: key %q value %q, but the input record seq %d was key %q value %q",
				r.Partition, r.Offset, r.Key, r.Value, e.Seq, in.Key, in.JSON())
			continue
		}
		if prev, dup := lateAt[e.Seq]; dup {
			v.problem("late topic twice", "late topic: seq %d written twice (partition %d offsets %d and %d)", e.Seq, r.Partition, prev.Offset, r.Offset)
			continue
		}
		lateAt[e.Seq] = r
	}

	// 2. The results of each key, in output order.
	perKey := map[string][]Result{}
	var keys []string
	lastCount := map[sessionWindow]int64{}
	for _, r := range results {
		w := sessionWindow{r.Key, r.WindowStart, r.WindowEnd}
		if _, ok := perKey[r.Key]; !ok {
			keys = append(keys, r.Key)
		}
		perKey[r.Key] = append(perKey[r.Key], r)
		if prev, seen := lastCount[w]; seen {
			v.Refired++
			switch {
			case r.Count == prev:
				v.problem("duplicate firing", "duplicate firing: %s written again with the same count (a replayed firing)", r)
			case r.Count < prev:
				v.problem("count went down", "count went down: %s written after count %d for the same window", r, prev)
			}
		}
		lastCount[w] = max(lastCount[w], r.Count)
		if why := formable(gapMs, byKey[r.Key], r); why != "" {
			v.problem("impossible window", "impossible window: %s: %s", r, why)
		}
	}

	// 3. The final sessions of each key.
	sort.Strings(keys)
	allKeys := slices.Clone(keys)
	for k := range byKey {
		if _, ok := perKey[k]; !ok {
			allKeys = append(allKeys, k)
		}
	}
	sort.Strings(allKeys)
	for _, k := range allKeys {
		rs := perKey[k]
		var final []Result
		var later []sessionWindow
		for i := len(rs) - 1; i >= 0; i-- {
			w := sessionWindow{k, rs[i].WindowStart, rs[i].WindowEnd}
			superseded, again := false, false
			for _, l := range later {
				if l == w {
					again = true
					break
				}
				if l.covers(w) {
					superseded = true
				}
			}
			if !again {
				later = append(later, w)
				if superseded {
					v.Merged++
				} else {
					final = append(final, rs[i])
				}
			}
		}
		slices.SortFunc(final, func(a, b Result) int { return cmp.Compare(a.WindowStart, b.WindowStart) })
		for i := 1; i < len(final); i++ {
			if final[i].WindowStart < final[i-1].WindowEnd {
				v.problem("final sessions overlap", "final sessions overlap: %s and %s", final[i-1], final[i])
			}
		}
		v.Final = append(v.Final, final...)

		var inCount, inSum, lateCount, lateSum, outCount int64
		var outSum float64
		for _, e := range byKey[k] {
			inCount++
			inSum += e.Amount
			if _, ok := lateAt[e.Seq]; ok {
				lateCount++
				lateSum += e.Amount
			}
		}
		for _, f := range final {
			outCount += f.Count
			outSum += f.Sum
		}
		if outCount+lateCount != inCount || outSum+float64(lateSum) != float64(inSum) {
			v.problem("key accounting", "key %q: final sessions count %d sum %s, late topic %d records sum %d; the input has %d records sum %d",
				k, outCount, formatSum(outSum), lateCount, lateSum, inCount, inSum)
		}

		// 4. Every record not in the late topic in exactly one final
		// session; each final session exactly its records.
		counts := make([]int64, len(final))
		sums := make([]int64, len(final))
		for _, e := range byKey[k] {
			if _, ok := lateAt[e.Seq]; ok {
				continue
			}
			var in []int
			for i, f := range final {
				if f.WindowStart <= e.TS && e.TS < f.WindowEnd {
					in = append(in, i)
				}
			}
			switch len(in) {
			case 0:
				v.problem("lost record", "lost record: seq %d (key %q ts %d amount %d) is in no final session and not in the late topic", e.Seq, e.Key, e.TS, e.Amount)
			case 1:
				counts[in[0]]++
				sums[in[0]] += e.Amount
			default:
				v.problem("record in several sessions", "record seq %d (key %q ts %d) is in %d final sessions", e.Seq, e.Key, e.TS, len(in))
			}
		}
		for i, f := range final {
			if f.Count != counts[i] || f.Sum != float64(sums[i]) {
				v.problem("final session count", "final session %s: the input records in it that are not in the late topic are count %d sum %d",
					f, counts[i], sums[i])
			}
		}
	}
	v.OK = v.ProblemCount == 0
	return v
}

// formable returns why the key's records es (sorted by TS) cannot form the
// session of r with gap gapMs, or "" if they can.
func formable(gapMs int64, es []Event, r Result) string {
	if len(es) == 0 {
		return "the key has no input record"
	}
	last := r.WindowEnd - gapMs
	if r.Count < 1 {
		return "count below 1"
	}
	if last < r.WindowStart {
		return fmt.Sprintf("shorter than the gap %dms", gapMs)
	}
	lo := sort.Search(len(es), func(i int) bool { return es[i].TS >= r.WindowStart })
	hi := sort.Search(len(es), func(i int) bool { return es[i].TS > last })
	if lo == hi || es[lo].TS != r.WindowStart {
		return fmt.Sprintf("no record of the key at ts %d (its start)", r.WindowStart)
	}
	if es[hi-1].TS != last {
		return fmt.Sprintf("no record of the key at ts %d (its end minus the gap)", last)
	}
	for i := lo + 1; i < hi; i++ {
		if es[i].TS-es[i-1].TS > gapMs {
			return fmt.Sprintf("no record of the key between ts %d and %d, more than the gap apart", es[i-1].TS, es[i].TS)
		}
	}
	if n := int64(hi - lo); r.Count > n {
		return fmt.Sprintf("count %d, but the key has only %d records in it", r.Count, n)
	}
	return ""
}
