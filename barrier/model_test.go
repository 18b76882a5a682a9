package barrier

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The exhaustive test: for small numbers of inputs and checkpoints, build
// every combination of per-input streams from a family of shapes, merge them
// in every possible order, run the Aligner on each merge, and compare what
// it does with a naive specification written per checkpoint over the whole
// merge (spec below), plus invariants checked directly on the output (items
// processed exactly once and in per-input order; in exactly-once mode the
// items processed before Snapshot(N) are exactly those before barrier N on
// every input; no snapshot of an aborted checkpoint). Nothing is random.
// -exhaustive-deep adds larger bounds.

var exhaustiveDeep = flag.Bool("exhaustive-deep", false, "barrier: run the exhaustive interleaving test with larger bounds (slow)")

type evKind int

const (
	evData evKind = iota
	evBarrier
	evEnd
	evAbort // a coordinator abort; input is -1
)

type ev struct {
	kind  evKind
	input int
	id    CheckpointID
	item  int // evData: unique across the scenario
}

func (e ev) String() string {
	switch e.kind {
	case evData:
		return fmt.Sprintf("data(in=%d,item=%d)", e.input, e.item)
	case evBarrier:
		return fmt.Sprintf("barrier(in=%d,ckpt=%d)", e.input, e.id)
	case evEnd:
		return fmt.Sprintf("end(in=%d)", e.input)
	default:
		return fmt.Sprintf("abort(ckpt=%d)", e.id)
	}
}

// shape is one input's stream before input numbers and items are assigned:
// nb barriers 1..nb, data[j] records in gap j (after j barriers), and
// maybe an end.
type shape struct {
	nb    int
	data  []int // len nb+1
	ended bool
}

// shapes lists the stream shapes of one input with up to k barriers and up
// to maxData records. Streams that stop early (fewer than k barriers) end.
func shapes(k, maxData int, earlyEnd bool) []shape {
	var out []shape
	for nb := 0; nb <= k; nb++ {
		if nb < k && !earlyEnd {
			continue
		}
		var gaps func(j, left int, cur []int)
		gaps = func(j, left int, cur []int) {
			if j == nb+1 {
				d := slices.Clone(cur)
				if nb == k {
					out = append(out, shape{nb: nb, data: d})
				}
				out = append(out, shape{nb: nb, data: d, ended: true})
				return
			}
			for c := 0; c <= left; c++ {
				gaps(j+1, left-c, append(cur, c))
			}
		}
		gaps(0, maxData, nil)
	}
	return out
}

func (s shape) stream(input int, nextItem *int) []ev {
	var out []ev
	for j := 0; j <= s.nb; j++ {
		if j > 0 {
			out = append(out, ev{kind: evBarrier, input: input, id: CheckpointID(j)})
		}
		for c := 0; c < s.data[j]; c++ {
			*nextItem++
			out = append(out, ev{kind: evData, input: input, item: *nextItem})
		}
	}
	if s.ended {
		out = append(out, ev{kind: evEnd, input: input})
	}
	return out
}

// merges calls f with every interleaving of streams (the order within each
// stream kept). seq is reused between calls.
func merges(streams [][]ev, f func(seq []ev)) {
	total := 0
	for _, s := range streams {
		total += len(s)
	}
	pos := make([]int, len(streams))
	seq := make([]ev, 0, total)
	var rec func()
	rec = func() {
		if len(seq) == total {
			f(seq)
			return
		}
		for i, s := range streams {
			if pos[i] < len(s) {
				seq = append(seq, s[pos[i]])
				pos[i]++
				rec()
				pos[i]--
				seq = seq[:len(seq)-1]
			}
		}
	}
	rec()
}

// multichoose returns every non-decreasing n-tuple of indices below m:
// inputs are interchangeable, and merges cover every order between them.
func multichoose(n, m int) [][]int {
	var out [][]int
	var rec func(cur []int, from int)
	rec = func(cur []int, from int) {
		if len(cur) == n {
			out = append(out, slices.Clone(cur))
			return
		}
		for i := from; i < m; i++ {
			rec(append(cur, i), i)
		}
	}
	rec(nil, 0)
	return out
}

type runCfg struct {
	mode    Mode
	maxHeld int64 // every record has size 1
}

// exhaustiveCase bounds one family of scenarios: inputs, k checkpoints, at
// most maxData records per input and totalData in all, whether inputs may
// end before their last barrier, and whether the coordinator aborts one
// checkpoint (an Abort of each id 1..k at every position).
type exhaustiveCase struct {
	inputs, k, maxData, totalData int
	earlyEnd, aborts              bool
}

func (c exhaustiveCase) String() string {
	return fmt.Sprintf("inputs=%d/k=%d/data=%d,%d/early-end=%v/aborts=%v",
		c.inputs, c.k, c.maxData, c.totalData, c.earlyEnd, c.aborts)
}

func TestExhaustiveInterleavings(t *testing.T) {
	// About 1.2 million interleavings, each run in three configurations;
	// a few seconds.
	cases := []exhaustiveCase{
		{inputs: 1, k: 3, maxData: 3, totalData: 3, earlyEnd: true, aborts: true},
		{inputs: 2, k: 1, maxData: 2, totalData: 4, earlyEnd: true, aborts: true},
		{inputs: 2, k: 2, maxData: 1, totalData: 2, earlyEnd: true, aborts: true},
		{inputs: 2, k: 2, maxData: 2, totalData: 2, earlyEnd: true, aborts: true},
		{inputs: 2, k: 3, maxData: 1, totalData: 1, earlyEnd: true, aborts: true},
		{inputs: 2, k: 3, maxData: 1, totalData: 2, earlyEnd: true, aborts: false},
		{inputs: 2, k: 3, maxData: 2, totalData: 2, earlyEnd: false, aborts: false},
		{inputs: 3, k: 1, maxData: 1, totalData: 2, earlyEnd: true, aborts: true},
		{inputs: 3, k: 2, maxData: 0, totalData: 0, earlyEnd: true, aborts: true},
		{inputs: 3, k: 2, maxData: 1, totalData: 1, earlyEnd: true, aborts: false},
		{inputs: 3, k: 3, maxData: 0, totalData: 0, earlyEnd: true, aborts: false},
		{inputs: 3, k: 3, maxData: 1, totalData: 1, earlyEnd: false, aborts: false},
	}
	if *exhaustiveDeep {
		// About 2.6 million more interleavings; some 15 seconds.
		cases = append(cases,
			exhaustiveCase{inputs: 2, k: 2, maxData: 2, totalData: 4, earlyEnd: true, aborts: true},
			exhaustiveCase{inputs: 3, k: 2, maxData: 1, totalData: 1, earlyEnd: false, aborts: true},
			exhaustiveCase{inputs: 3, k: 3, maxData: 1, totalData: 1, earlyEnd: true, aborts: false},
		)
	}
	runs := []runCfg{
		{mode: ExactlyOnce, maxHeld: 1000}, // never full
		{mode: ExactlyOnce, maxHeld: 1},    // the second held record overflows
		{mode: AtLeastOnce},
	}
	for _, c := range cases {
		t.Run(c.String(), func(t *testing.T) {
			shs := shapes(c.k, c.maxData, c.earlyEnd)
			coord := [][]ev{nil}
			if c.aborts {
				for id := 1; id <= c.k; id++ {
					coord = append(coord, []ev{{kind: evAbort, input: -1, id: CheckpointID(id)}})
				}
			}
			ck := newChecker(c.inputs, c.k)
			n := 0
			for _, tuple := range multichoose(c.inputs, len(shs)) {
				data := 0
				for _, si := range tuple {
					for _, d := range shs[si].data {
						data += d
					}
				}
				if data > c.totalData {
					continue
				}
				item := 0
				streams := make([][]ev, 0, c.inputs+1)
				for in, si := range tuple {
					streams = append(streams, shs[si].stream(in, &item))
				}
				for _, co := range coord {
					all := append(slices.Clone(streams), co)
					merges(all, func(seq []ev) {
						for _, rc := range runs {
							n++
							if msg := ck.check(rc, seq); msg != "" {
								t.Fatalf("%s\nmode=%v max-held=%d\ninterleaving:\n%s", msg, rc.mode, rc.maxHeld, formatSeq(seq))
							}
						}
					})
				}
			}
			if n == 0 {
				t.Fatal("no interleavings checked")
			}
			t.Logf("%d runs checked", n)
		})
	}
}

func formatSeq(seq []ev) string {
	var b strings.Builder
	for i, e := range seq {
		fmt.Fprintf(&b, "  %2d %v\n", i, e)
	}
	return b.String()
}

// outcome of one checkpoint in the spec.
type outcome int

const (
	never     outcome = iota // no alignment of this id was started
	alive                    // started and still aligning after the last event
	completed                // Snapshot + ForwardBarrier
	subsumed                 // a newer live barrier arrived
	coordAbort
	full
)

type ckptSpec struct {
	start, end int // steps; end is valid unless outcome is never or alive
	outcome    outcome
	by         CheckpointID // subsumed: the newer id
}

// checker holds the scratch space of one scenario family.
type checker struct {
	inputs, k int
	abortAt   []int      // abortAt[id]: step of Abort(id), or a step past the end
	sp        []ckptSpec // indexed by id
	want      [][]Action[int]
	delivered []bool
	ended     []bool
}

func newChecker(inputs, k int) *checker {
	return &checker{
		inputs:    inputs,
		k:         k,
		abortAt:   make([]int, k+1),
		sp:        make([]ckptSpec, k+1),
		delivered: make([]bool, inputs),
		ended:     make([]bool, inputs),
	}
}

// spec computes, declaratively, what happens to each checkpoint id in seq:
//
//   - An alignment of N starts at the first barrier N, unless the
//     coordinator aborted N before it, or a live barrier M > N came earlier
//     (then N is stale). A barrier M is live if M was not aborted before it.
//   - It ends at the first of: every input has delivered N or ended
//     (completed); a live barrier M > N (subsumed); Abort(N) (coordAbort);
//     in exactly-once mode, a record that arrives after barrier N on its
//     input while more than maxHeld such records would be held (full).
func (c *checker) spec(rc runCfg, seq []ev) {
	for id := range c.abortAt {
		c.abortAt[id] = len(seq) + 1
	}
	for s, e := range seq {
		if e.kind == evAbort && c.abortAt[e.id] > s {
			c.abortAt[e.id] = s
		}
	}
	liveBarrier := func(s int) bool {
		return seq[s].kind == evBarrier && c.abortAt[seq[s].id] > s
	}
	for id := 1; id <= c.k; id++ {
		cs := &c.sp[id]
		*cs = ckptSpec{outcome: never}
		first := slices.IndexFunc(seq, func(e ev) bool { return e.kind == evBarrier && e.id == CheckpointID(id) })
		if first < 0 || c.abortAt[id] < first {
			continue
		}
		stale := false
		for s := 0; s < first; s++ {
			if liveBarrier(s) && seq[s].id > CheckpointID(id) {
				stale = true
			}
		}
		if stale {
			continue
		}
		cs.start, cs.outcome = first, alive
		clear(c.delivered)
		clear(c.ended)
		for s := 0; s < first; s++ {
			if seq[s].kind == evEnd {
				c.ended[seq[s].input] = true
			}
		}
		heldCount := int64(0)
	scan:
		for s := first; s < len(seq); s++ {
			e := seq[s]
			switch {
			case e.kind == evBarrier && e.id == CheckpointID(id):
				c.delivered[e.input] = true
			case e.kind == evEnd:
				c.ended[e.input] = true
			case s > first && liveBarrier(s) && e.id > CheckpointID(id):
				cs.end, cs.outcome, cs.by = s, subsumed, e.id
				break scan
			case e.kind == evAbort && e.id == CheckpointID(id):
				cs.end, cs.outcome = s, coordAbort
				break scan
			case e.kind == evData && rc.mode == ExactlyOnce && c.delivered[e.input]:
				heldCount++
				if heldCount > rc.maxHeld {
					cs.end, cs.outcome = s, full
					break scan
				}
			}
			all := true
			for i := range c.delivered {
				all = all && (c.delivered[i] || c.ended[i])
			}
			if all {
				cs.end, cs.outcome = s, completed
				break
			}
		}
	}
}

func procAction(e ev) Action[int] {
	return Action[int]{Kind: Process, Input: e.input, Item: e.item}
}

// heldBy appends to dst the records held by the alignment of id, started
// at cs.start, before step t (exactly-once mode only).
func heldBy(dst []Action[int], seq []ev, id CheckpointID, cs *ckptSpec, t int) []Action[int] {
	for s := cs.start + 1; s < t; s++ {
		if e := seq[s]; e.kind == evData && deliveredBefore(seq, id, e.input, cs.start, s) {
			dst = append(dst, procAction(e))
		}
	}
	return dst
}

// deliveredBefore: input delivered barrier id at a step in [from, to).
func deliveredBefore(seq []ev, id CheckpointID, input, from, to int) bool {
	for s := from; s < to; s++ {
		if e := seq[s]; e.kind == evBarrier && e.id == id && e.input == input {
			return true
		}
	}
	return false
}

// expected fills c.want with the actions the spec requires at each step,
// and returns the checkpoint still aligning after the last step (0 if
// none) with the records it holds.
func (c *checker) expected(rc runCfg, seq []ev) (aliveID CheckpointID, aliveHeld []Action[int]) {
	for len(c.want) < len(seq) {
		c.want = append(c.want, nil)
	}
	eo := rc.mode == ExactlyOnce
	// heldAt: the record at step t is held by a live alignment.
	heldAt := func(t int) bool {
		if !eo {
			return false
		}
		for id := 1; id <= c.k; id++ {
			cs := &c.sp[id]
			if cs.outcome == never || t <= cs.start || (cs.outcome != alive && t >= cs.end) {
				continue
			}
			return deliveredBefore(seq, CheckpointID(id), seq[t].input, cs.start, t)
		}
		return false
	}
	nEnded := 0
	for t, e := range seq {
		w := c.want[t][:0]
		dataDone := false
		// Ids ascending: an older alignment ends before a newer one starts.
		for id := 1; id <= c.k; id++ {
			cs := &c.sp[id]
			if cs.outcome == never || cs.outcome == alive || cs.end != t {
				continue
			}
			cid := CheckpointID(id)
			switch cs.outcome {
			case completed:
				w = append(w, Action[int]{Kind: Snapshot, ID: cid, Input: -1}, Action[int]{Kind: ForwardBarrier, ID: cid, Input: -1})
			case subsumed:
				w = append(w, Action[int]{Kind: AbortCheckpoint, ID: cid, Input: -1, Reason: ReasonSubsumedPrefix + strconv.Itoa(int(cs.by))})
			case full:
				w = append(w, Action[int]{Kind: AbortCheckpoint, ID: cid, Input: -1, Reason: ReasonBufferFull})
			}
			if eo {
				w = heldBy(w, seq, cid, cs, t)
			}
			if cs.outcome == full {
				w = append(w, procAction(e))
				dataDone = true
			}
		}
		if e.kind == evData && !dataDone && !heldAt(t) {
			w = append(w, procAction(e))
		}
		if e.kind == evEnd {
			nEnded++
			if nEnded == c.inputs {
				w = append(w, Action[int]{Kind: AllEnded, Input: -1})
			}
		}
		c.want[t] = w
	}
	for id := 1; id <= c.k; id++ {
		if cs := &c.sp[id]; cs.outcome == alive {
			var held []Action[int]
			if eo {
				held = heldBy(nil, seq, CheckpointID(id), cs, len(seq))
			}
			return CheckpointID(id), held
		}
	}
	return 0, nil
}

func sameActions(got, want []Action[int]) bool {
	return slices.EqualFunc(got, want, func(a, b Action[int]) bool {
		return a.Kind == b.Kind && a.ID == b.ID && a.Input == b.Input && a.Item == b.Item && a.Reason == b.Reason && a.Err == nil
	})
}

func formatActions(acts []Action[int]) string {
	if len(acts) == 0 {
		return "(none)"
	}
	s := make([]string, len(acts))
	for i, a := range acts {
		s[i] = a.String()
	}
	return strings.Join(s, "\n    ")
}

// check runs the Aligner over seq and returns a description of the first
// disagreement with the spec or the invariants, or "".
func (c *checker) check(rc runCfg, seq []ev) string {
	inputs := c.inputs
	a, err := New[int](Config{Inputs: inputs, Mode: rc.mode, MaxHeldBytes: rc.maxHeld})
	if err != nil {
		return err.Error()
	}
	c.spec(rc, seq)
	aliveID, aliveHeld := c.expected(rc, seq)

	type procRec struct {
		input, item int
	}
	var processed []procRec
	snapshots := make([]int, c.k+1) // id -> len(processed) at the snapshot, or -1
	for i := range snapshots {
		snapshots[i] = -1
	}
	var lastSnap CheckpointID
	record := func(step int, acts []Action[int]) string {
		for _, act := range acts {
			switch act.Kind {
			case Process:
				processed = append(processed, procRec{act.Input, act.Item})
			case Snapshot:
				if act.ID <= lastSnap || int(act.ID) > c.k {
					return fmt.Sprintf("step %d: snapshot %d out of order (last %d)", step, act.ID, lastSnap)
				}
				lastSnap = act.ID
				snapshots[act.ID] = len(processed)
				if c.abortAt[act.ID] < step {
					return fmt.Sprintf("step %d: snapshot of checkpoint %d, aborted at step %d", step, act.ID, c.abortAt[act.ID])
				}
			case Error:
				return fmt.Sprintf("step %d: unexpected error action: %v", step, act)
			}
		}
		return ""
	}
	for t, e := range seq {
		var acts []Action[int]
		switch e.kind {
		case evData:
			acts = a.Data(e.input, e.item, 1)
		case evBarrier:
			acts = a.Barrier(e.input, e.id)
		case evEnd:
			acts = a.EndOfInput(e.input)
		case evAbort:
			acts = a.Abort(e.id)
		}
		if !sameActions(acts, c.want[t]) {
			return fmt.Sprintf("step %d (%v): got actions\n    %s\nwant\n    %s", t, e, formatActions(acts), formatActions(c.want[t]))
		}
		if msg := record(t, acts); msg != "" {
			return msg
		}
		if rc.mode == ExactlyOnce && a.HeldBytes() != int64(a.HeldItems()) {
			return fmt.Sprintf("step %d: held bytes %d for %d records of size 1", t, a.HeldBytes(), a.HeldItems())
		}
	}
	id, ok := a.Aligning()
	if ok != (aliveID != 0) || id != aliveID {
		return fmt.Sprintf("after the last step: Aligning() = %d, %v; spec: %d", id, ok, aliveID)
	}
	if ok {
		// Flush what is still held so that every record is accounted for.
		acts := a.Abort(id)
		if !sameActions(acts, aliveHeld) {
			return fmt.Sprintf("final abort of %d: got\n    %s\nwant\n    %s", id, formatActions(acts), formatActions(aliveHeld))
		}
		if msg := record(len(seq), acts); msg != "" {
			return msg
		}
	}

	// Invariants, checked on the output alone.
	// 1. Every record processed exactly once, in per-input order. Items
	// are numbered in stream order, so per input they must ascend.
	nData := 0
	for _, e := range seq {
		if e.kind == evData {
			nData++
		}
	}
	if len(processed) != nData {
		return fmt.Sprintf("processed %d records, %d arrived", len(processed), nData)
	}
	last := make([]int, inputs)
	for _, x := range processed {
		if x.item <= last[x.input] {
			return fmt.Sprintf("input %d: record %d processed after %d", x.input, x.item, last[x.input])
		}
		last[x.input] = x.item
	}
	// 2. The records processed before Snapshot(N) are those before barrier N
	// on every input (all of them on an input without barrier N, which must
	// have ended): exactly so in exactly-once mode, at least so otherwise.
	for id, n := range snapshots {
		if n < 0 {
			continue
		}
		// cut[in]: the last item of input in before barrier id.
		cut := make([]int, inputs)
		for in := 0; in < inputs; in++ {
			for _, e := range seq {
				if e.input != in {
					continue
				}
				if e.kind == evBarrier && e.id == CheckpointID(id) {
					break
				}
				if e.kind == evData {
					cut[in] = e.item
				}
			}
		}
		before := make([]int, inputs) // last item processed per input
		for _, x := range processed[:n] {
			before[x.input] = x.item
		}
		for in := 0; in < inputs; in++ {
			if before[in] < cut[in] {
				return fmt.Sprintf("snapshot %d: record %d of input %d precedes the barrier but was not processed before the snapshot", id, cut[in], in)
			}
			if rc.mode == ExactlyOnce && before[in] > cut[in] {
				return fmt.Sprintf("snapshot %d: record %d of input %d follows the barrier but was processed before the snapshot", id, before[in], in)
			}
		}
	}
	return ""
}
