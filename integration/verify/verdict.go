package verify

import (
	"fmt"
	"math"
	"strings"
)

// ExamplesMax is the most examples a Verdict carries.
const ExamplesMax = 5

// Verdict is the outcome of comparing a job's output with the expected
// results.
type Verdict struct {
	// Input is the number of input events, as passed by the caller.
	Input int
	// Results is the number of output records compared.
	Results int
	// Duplicates counts output records beyond the first for each window
	// (key and window start): a window written three times adds two.
	Duplicates int
	// Missing counts expected windows absent from the output.
	Missing int
	// Wrong counts expected windows present with a different count, sum
	// or window end.
	Wrong int
	// Unexpected counts windows in the output that are not expected
	// (unknown key or window start), each once however often written.
	Unexpected int
	// OK says the output passed the comparison.
	OK bool
	// Examples holds up to ExamplesMax human-readable differences, taken
	// in turn from each kind of failure found.
	Examples []string
}

// String returns the one-line verdict, exactly
//
//	verdict: exactly-once OK input=N results=M duplicates=0 missing=0 wrong=0
//
// when OK without duplicates,
//
//	verdict: latest OK input=N results=M duplicates=D missing=0 wrong=0
//
// when OK with duplicates (only CompareLatest allows them), and otherwise
//
//	verdict: FAILED input=N results=M duplicates=D missing=X wrong=W
//
// followed by " unexpected=U" when U is not zero.
func (v Verdict) String() string {
	head := "FAILED"
	if v.OK {
		head = "exactly-once OK"
		if v.Duplicates > 0 {
			head = "latest OK"
		}
	}
	s := fmt.Sprintf("verdict: %s input=%d results=%d duplicates=%d missing=%d wrong=%d",
		head, v.Input, v.Results, v.Duplicates, v.Missing, v.Wrong)
	if v.Unexpected != 0 {
		s += fmt.Sprintf(" unexpected=%d", v.Unexpected)
	}
	return s
}

// Report returns String followed by the examples, one per indented line.
func (v Verdict) Report() string {
	var b strings.Builder
	b.WriteString(v.String())
	for _, e := range v.Examples {
		b.WriteString("\n  ")
		b.WriteString(e)
	}
	return b.String()
}

// Compare checks got against expected for exactly-once output: every
// expected window (key and window start) must appear exactly once with the
// expected window end, count and sum. A window written twice is a duplicate
// even when both copies are equal; a window not in expected is unexpected;
// a window whose copies do not all equal the expected values is wrong. Any
// of these fails the verdict. input is reported as is.
func Compare(input int, expected, got []Result) Verdict {
	return compare(input, expected, got, false)
}

// CompareLatest checks got against expected for at-least-once output, as
// left by crashes and restarts: only the last occurrence of each window, in
// the order of got, is compared. Duplicates are counted but do not fail the
// verdict; missing, wrong and unexpected windows do. For output read from
// Kafka, order matters only within a partition, and all results of one key
// are on one partition.
func CompareLatest(input int, expected, got []Result) Verdict {
	return compare(input, expected, got, true)
}

func compare(input int, expected, got []Result, latest bool) Verdict {
	v := Verdict{Input: input, Results: len(got)}

	want := make(map[windowID]Result, len(expected))
	for _, r := range expected {
		want[r.id()] = r
	}

	type seen struct {
		n     int
		last  Result
		wrong *Result // first copy that differs (Compare only)
	}
	var order []windowID // distinct windows of got, by first occurrence
	seenBy := make(map[windowID]*seen, len(got))
	for i := range got {
		r := got[i]
		s := seenBy[r.id()]
		if s == nil {
			s = &seen{}
			seenBy[r.id()] = s
			order = append(order, r.id())
		}
		s.n++
		s.last = r
		if w, ok := want[r.id()]; ok && !latest && s.wrong == nil && !sameResult(w, r) {
			s.wrong = &got[i]
		}
	}

	var dups, wrongs, unexps, missings []string
	for _, id := range order {
		s := seenBy[id]
		if s.n > 1 {
			v.Duplicates += s.n - 1
			if len(dups) < ExamplesMax {
				dups = append(dups, fmt.Sprintf("duplicate: key=%q window_start=%d written %d times", id.key, id.start, s.n))
			}
		}
		w, ok := want[id]
		if !ok {
			v.Unexpected++
			if len(unexps) < ExamplesMax {
				unexps = append(unexps, "unexpected: "+s.last.String())
			}
			continue
		}
		bad := s.wrong
		if latest && !sameResult(w, s.last) {
			bad = &s.last
		}
		if bad != nil {
			v.Wrong++
			if len(wrongs) < ExamplesMax {
				wrongs = append(wrongs, fmt.Sprintf("wrong: got %s, want %s", bad, w))
			}
		}
	}
	for _, r := range expected {
		if _, ok := seenBy[r.id()]; ok {
			continue
		}
		v.Missing++
		if len(missings) < ExamplesMax {
			missings = append(missings, "missing: "+r.String())
		}
	}

	v.OK = v.Missing == 0 && v.Wrong == 0 && v.Unexpected == 0 && (latest || v.Duplicates == 0)
	v.Examples = interleave(ExamplesMax, missings, wrongs, dups, unexps)
	return v
}

// sameResult reports whether got matches want: equal window end and count,
// and a sum equal up to a relative 1e-9 (sums of integers are exact in a
// float64 below 2^53, but a job may sum in another order or type).
func sameResult(want, got Result) bool {
	if want.WindowEnd != got.WindowEnd || want.Count != got.Count {
		return false
	}
	if want.Sum == got.Sum {
		return true
	}
	scale := math.Max(1, math.Max(math.Abs(want.Sum), math.Abs(got.Sum)))
	return math.Abs(want.Sum-got.Sum) <= 1e-9*scale
}

// interleave takes up to n strings from the lists in turn.
func interleave(n int, lists ...[]string) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		took := false
		for _, l := range lists {
			if i < len(l) && len(out) < n {
				out = append(out, l[i])
				took = true
			}
		}
		if !took {
			break
		}
	}
	return out
}
