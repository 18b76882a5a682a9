package coordinator

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	seedFlag = flag.Uint64("seed", 0, "TestRandomized: replay the one run with this seed (0: pick seeds)")
	runsFlag = flag.Int("runs", 300, "TestRandomized: number of random runs when -seed is not given")
)

// TestRandomized drives random event sequences into a Core and checks every
// action against an independent observer of the protocol's invariants. A
// failure prints the run's seed; -seed replays exactly that run.
func TestRandomized(t *testing.T) {
	seeds := []uint64{*seedFlag}
	if *seedFlag == 0 {
		master := uint64(time.Now().UnixNano())
		t.Logf("master seed %d", master)
		r := rand.New(rand.NewPCG(master, 0))
		seeds = make([]uint64, *runsFlag)
		for i := range seeds {
			seeds[i] = r.Uint64() | 1
		}
	}
	seen := map[string]int{}
	for _, seed := range seeds {
		h := newHarness(t, seed)
		h.run(400)
		for k, n := range h.seen {
			seen[k] += n
		}
	}
	t.Logf("actions seen: %v", seen)
	if *seedFlag != 0 {
		return
	}
	// The generator must reach every corner, or the invariants are checked
	// on too little.
	for _, k := range []string{
		"trigger", "trigger savepoint", "write-metadata", "notify-complete", "fail-job", "queued",
		"ignored", "abort timeout", "abort declined", "abort metadata-failed", "abort subsumed",
		"abort suspended", "complete savepoint",
	} {
		if seen[k] == 0 {
			t.Errorf("no run produced %q: the generator is too narrow", k)
		}
	}
}

// obsCkpt is what the observer knows about one triggered checkpoint.
type obsCkpt struct {
	savepoint   bool
	triggeredAt time.Time
	acks        map[TaskID]string // first ack per task while collecting acks
	wrote       bool              // WriteMetadata emitted
	ended       bool
}

type event struct {
	kind      string // tick, ack, decline, written, write-failed, trigger-now, suspend, resume, stop
	task      TaskID
	id        CheckpointID
	savepoint bool
	handle    string
}

type harness struct {
	t     *testing.T
	seed  uint64
	rng   *rand.Rand
	cfg   Config
	c     *Core
	now   time.Time
	trace []string
	seen  map[string]int

	// Observer state, built only from inputs and actions.
	lastTrig     CheckpointID
	lastComplete CheckpointID
	ckpts        map[CheckpointID]*obsCkpt
	failures     int
	active       bool
	stopped      bool
	queued       bool
	queuedSP     bool
	periodBase   time.Time
	lastFinish   time.Time
	finished     bool
}

func newHarness(t *testing.T, seed uint64) *harness {
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	ntasks := 1 + rng.IntN(4)
	cfg := Config{
		Interval:          time.Duration(1+rng.IntN(5)) * time.Second,
		Timeout:           time.Duration(1+rng.IntN(20)) * time.Second,
		MaxConcurrent:     1 + rng.IntN(3),
		TolerableFailures: rng.IntN(4),
	}
	if rng.IntN(2) == 0 {
		cfg.MinPause = time.Duration(rng.IntN(3000)) * time.Millisecond
	}
	for i := range ntasks {
		cfg.Tasks = append(cfg.Tasks, TaskID(fmt.Sprintf("t/%d", i)))
	}
	last := CheckpointID(0)
	if rng.IntN(2) == 0 {
		last = CheckpointID(rng.IntN(100))
	}
	now := epoch.Add(time.Duration(rng.IntN(1000)) * time.Second)
	c, err := New(cfg, last, now)
	if err != nil {
		t.Fatalf("seed %d: New(%+v): %v", seed, cfg, err)
	}
	return &harness{
		t: t, seed: seed, rng: rng, cfg: cfg, c: c, now: now, seen: map[string]int{},
		lastTrig: last, lastComplete: last, ckpts: map[CheckpointID]*obsCkpt{},
		active: true, periodBase: now,
	}
}

func (h *harness) fatalf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("seed %d (replay: go test ./supervisor/coordinator/ -run TestRandomized -seed %d)\nconfig %+v\nlast steps:\n%s\nfailure: %s",
		h.seed, h.seed, h.cfg, strings.Join(h.trace, "\n"), fmt.Sprintf(format, args...))
}

func (h *harness) logf(format string, args ...any) {
	const keep = 60
	if len(h.trace) == keep {
		h.trace = h.trace[1:]
	}
	h.trace = append(h.trace, fmt.Sprintf(format, args...))
}

func (h *harness) pendingIDs(filter func(*obsCkpt) bool) []CheckpointID {
	var ids []CheckpointID
	for id, o := range h.ckpts {
		if !o.ended && (filter == nil || filter(o)) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// pickID mostly returns a pending id matching filter, sometimes any id
// around the triggered range (stale, future, zero).
func (h *harness) pickID(filter func(*obsCkpt) bool) CheckpointID {
	if ids := h.pendingIDs(filter); len(ids) > 0 && h.rng.IntN(8) != 0 {
		return ids[h.rng.IntN(len(ids))]
	}
	lo := int64(h.lastTrig) - 4
	if lo < 0 {
		lo = 0
	}
	return CheckpointID(lo + h.rng.Int64N(int64(h.lastTrig)-lo+3))
}

func (h *harness) pickTask(id CheckpointID) TaskID {
	if h.rng.IntN(30) == 0 {
		return "ghost"
	}
	if o := h.ckpts[id]; o != nil && h.rng.IntN(6) != 0 {
		for _, t := range h.cfg.Tasks {
			if _, ok := o.acks[t]; !ok {
				return t
			}
		}
	}
	return h.cfg.Tasks[h.rng.IntN(len(h.cfg.Tasks))]
}

func (h *harness) run(steps int) {
	for range steps {
		h.step()
	}
}

func (h *harness) step() {
	// Time advances (or not) before every input.
	switch h.rng.IntN(4) {
	case 0:
		h.now = h.now.Add(time.Duration(h.rng.Int64N(int64(h.cfg.Interval + h.cfg.Timeout))))
	case 1:
		h.now = h.now.Add(time.Duration(h.rng.Int64N(int64(h.cfg.Interval / 4))))
	}
	acking := func(o *obsCkpt) bool { return !o.wrote }
	writing := func(o *obsCkpt) bool { return o.wrote }
	var ev event
	switch r := h.rng.IntN(100); {
	case !h.active && !h.stopped && r < 20:
		// Restart soon after a suspension or FailJob, as a supervisor would.
		ev = event{kind: "resume"}
	case r < 25:
		ev = event{kind: "tick"}
	case r < 60:
		ev.kind = "ack"
		ev.id = h.pickID(acking)
		ev.task = h.pickTask(ev.id)
		ev.handle = fmt.Sprintf("h%d-%s-%d", ev.id, ev.task, h.rng.IntN(1000))
	case r < 66:
		ev.kind = "decline"
		ev.id = h.pickID(acking)
		ev.task = h.pickTask(ev.id)
	case r < 80:
		ev = event{kind: "written", id: h.pickID(writing)}
	case r < 85:
		ev = event{kind: "write-failed", id: h.pickID(writing)}
	case r < 92:
		ev = event{kind: "trigger-now", savepoint: h.rng.IntN(2) == 0}
	case r < 96:
		ev = event{kind: "suspend"}
	case r < 99:
		ev = event{kind: "resume"}
	default:
		if h.rng.IntN(10) == 0 {
			ev = event{kind: "stop"}
		} else {
			ev = event{kind: "tick"}
		}
	}
	h.apply(ev)
}

func (h *harness) apply(ev event) {
	at := h.now.Sub(epoch)
	h.logf("%s t=%v task=%s ckpt=%d savepoint=%t", ev.kind, at, ev.task, ev.id, ev.savepoint)
	var acts []Action
	switch ev.kind {
	case "tick":
		acts = h.c.Tick(h.now)
	case "ack":
		acts = h.c.Ack(h.now, ev.task, ev.id, ev.handle)
	case "decline":
		acts = h.c.Decline(h.now, ev.task, ev.id, "random")
	case "written":
		acts = h.c.MetadataWritten(h.now, ev.id)
	case "write-failed":
		acts = h.c.MetadataFailed(h.now, ev.id, "random")
	case "trigger-now":
		acts = h.c.TriggerNow(h.now, ev.savepoint)
	case "suspend":
		acts = h.c.Suspend(h.now, "random")
	case "resume":
		acts = h.c.Resume(h.now)
	case "stop":
		acts = h.c.Stop(h.now)
	}
	for _, a := range acts {
		h.logf("  -> %s", a)
	}
	h.check(ev, acts)
}

// expectIgnored predicts, from the observer alone, whether an input must be
// ignored (exactly one Ignored action and nothing else).
func (h *harness) expectIgnored(ev event) bool {
	known := slices.Contains(h.cfg.Tasks, ev.task)
	o := h.ckpts[ev.id]
	live := o != nil && !o.ended
	switch ev.kind {
	case "ack":
		if !known || !live || o.wrote {
			return true
		}
		_, dup := o.acks[ev.task]
		return dup
	case "decline":
		return !known || !live || o.wrote
	case "written", "write-failed":
		return !live || !o.wrote
	case "trigger-now":
		return !h.active
	case "resume":
		return h.stopped
	}
	return false
}

func (h *harness) check(ev event, acts []Action) {
	h.t.Helper()
	if h.expectIgnored(ev) {
		if len(acts) != 1 || acts[0].Kind != KindIgnored || acts[0].Reason == "" {
			h.fatalf("%s must be ignored with a reason, got %v", ev.kind, acts)
		}
		h.seen["ignored"]++
		h.checkState(ev)
		return
	}
	// Inputs that change the observer before any action.
	switch ev.kind {
	case "ack":
		h.ckpts[ev.id].acks[ev.task] = ev.handle
	case "suspend":
		h.active = false
	case "stop":
		h.active, h.stopped = false, true
	case "resume":
		if !h.active {
			h.active = true
			h.periodBase = h.now
		}
	}
	mustFail := false
	wasQueued, wasQueuedSP := h.queued, h.queuedSP
	triggersSeen := 0
	for i, a := range acts {
		if mustFail && a.Kind != KindFailJob {
			h.fatalf("action %d: failure count %d passed tolerance %d but %v is not FailJob",
				i, h.failures, h.cfg.TolerableFailures, a)
		}
		switch a.Kind {
		case KindTrigger:
			h.onTrigger(ev, a, wasQueued, wasQueuedSP, triggersSeen)
			if triggersSeen == 0 && wasQueued {
				h.queued, h.queuedSP = false, false
			}
			triggersSeen++
		case KindQueued:
			if ev.kind != "trigger-now" || len(h.pendingIDs(nil)) != h.cfg.MaxConcurrent || !h.active {
				h.fatalf("Queued for %s with %d of %d pending, active=%t", ev.kind,
					len(h.pendingIDs(nil)), h.cfg.MaxConcurrent, h.active)
			}
			h.queued = true
			h.queuedSP = h.queuedSP || ev.savepoint
			if a.Savepoint != h.queuedSP {
				h.fatalf("Queued savepoint=%t, want %t", a.Savepoint, h.queuedSP)
			}
			h.seen["queued"]++
		case KindWriteMetadata:
			h.onWrite(ev, a)
		case KindNotifyComplete:
			h.onComplete(ev, a)
		case KindNotifyAbort:
			mustFail = h.onAbort(ev, a)
		case KindFailJob:
			if !mustFail {
				h.fatalf("FailJob with failure count %d, tolerance %d", h.failures, h.cfg.TolerableFailures)
			}
			mustFail = false
			h.failures = 0
			h.active = false
			h.seen["fail-job"]++
		case KindIgnored:
			// Only a queued request dropped by a suspension may be reported
			// among other actions.
			if !h.queued || h.active {
				h.fatalf("unexpected Ignored %v", a)
			}
			h.queued, h.queuedSP = false, false
			h.seen["ignored"]++
		default:
			h.fatalf("unknown action %v", a)
		}
	}
	if mustFail {
		h.fatalf("failure count %d passed tolerance %d without FailJob", h.failures, h.cfg.TolerableFailures)
	}
	if (ev.kind == "suspend" || ev.kind == "stop") && h.queued {
		h.fatalf("%s left a queued request", ev.kind)
	}
	h.checkState(ev)
}

func (h *harness) onTrigger(ev event, a Action, wasQueued, wasQueuedSP bool, before int) {
	if !h.active {
		h.fatalf("Trigger %d while suspended", a.ID)
	}
	if a.ID != h.lastTrig+1 {
		h.fatalf("Trigger %d, want %d (ids strictly increase)", a.ID, h.lastTrig+1)
	}
	fromQueue := wasQueued && before == 0
	switch ev.kind {
	case "tick":
		if !fromQueue {
			if h.now.Before(h.periodBase.Add(h.cfg.Interval)) {
				h.fatalf("periodic Trigger %d before the interval: base %v", a.ID, h.periodBase.Sub(epoch))
			}
			if h.finished && h.now.Before(h.lastFinish.Add(h.cfg.MinPause)) {
				h.fatalf("periodic Trigger %d inside the min pause: last finish %v", a.ID, h.lastFinish.Sub(epoch))
			}
			if a.Savepoint {
				h.fatalf("periodic Trigger %d is a savepoint", a.ID)
			}
		}
	case "trigger-now":
		if before > 0 || a.Savepoint != ev.savepoint {
			h.fatalf("TriggerNow(savepoint=%t) gave %v", ev.savepoint, a)
		}
	case "decline", "written", "write-failed", "resume":
		if !fromQueue {
			h.fatalf("Trigger %d on %s without a queued request", a.ID, ev.kind)
		}
	default:
		h.fatalf("Trigger %d on %s", a.ID, ev.kind)
	}
	if fromQueue && a.Savepoint != wasQueuedSP {
		h.fatalf("queued request savepoint=%t triggered as %v", wasQueuedSP, a)
	}
	if n := len(h.pendingIDs(nil)); n >= h.cfg.MaxConcurrent {
		h.fatalf("Trigger %d with %d pending, max %d", a.ID, n, h.cfg.MaxConcurrent)
	}
	h.lastTrig = a.ID
	h.ckpts[a.ID] = &obsCkpt{savepoint: a.Savepoint, triggeredAt: h.now, acks: map[TaskID]string{}}
	h.periodBase = h.now
	if a.Savepoint {
		h.seen["trigger savepoint"]++
	} else {
		h.seen["trigger"]++
	}
}

func (h *harness) onWrite(ev event, a Action) {
	o := h.ckpts[a.ID]
	if ev.kind != "ack" || ev.id != a.ID || o == nil || o.ended || o.wrote {
		h.fatalf("WriteMetadata %d on %s %d (known=%t)", a.ID, ev.kind, ev.id, o != nil)
	}
	if len(o.acks) != len(h.cfg.Tasks) || len(a.Handles) != len(h.cfg.Tasks) {
		h.fatalf("WriteMetadata %d with %d of %d tasks acked, %d handles", a.ID, len(o.acks), len(h.cfg.Tasks), len(a.Handles))
	}
	for t, hd := range o.acks {
		if a.Handles[t] != hd {
			h.fatalf("WriteMetadata %d: task %s handle %q, acked %q", a.ID, t, a.Handles[t], hd)
		}
	}
	if a.Savepoint != o.savepoint {
		h.fatalf("WriteMetadata %d savepoint=%t, triggered as %t", a.ID, a.Savepoint, o.savepoint)
	}
	o.wrote = true
	h.seen["write-metadata"]++
}

func (h *harness) onComplete(ev event, a Action) {
	o := h.ckpts[a.ID]
	if ev.kind != "written" || ev.id != a.ID || o == nil || o.ended || !o.wrote {
		h.fatalf("NotifyComplete %d on %s %d without its metadata written", a.ID, ev.kind, ev.id)
	}
	if a.ID <= h.lastComplete {
		h.fatalf("NotifyComplete %d after %d: completions must strictly increase", a.ID, h.lastComplete)
	}
	if a.Savepoint != o.savepoint {
		h.fatalf("NotifyComplete %d savepoint=%t, triggered as %t", a.ID, a.Savepoint, o.savepoint)
	}
	o.ended = true
	h.lastComplete = a.ID
	h.failures = 0
	h.lastFinish, h.finished = h.now, true
	h.seen["notify-complete"]++
	if o.savepoint {
		h.seen["complete savepoint"]++
	}
}

// onAbort checks an abort and reports whether FailJob must follow.
func (h *harness) onAbort(ev event, a Action) bool {
	o := h.ckpts[a.ID]
	if o == nil || o.ended {
		h.fatalf("NotifyAbort %d for a checkpoint that is not pending", a.ID)
	}
	if a.Savepoint != o.savepoint {
		h.fatalf("NotifyAbort %d savepoint=%t, triggered as %t", a.ID, a.Savepoint, o.savepoint)
	}
	ok := false
	switch a.Cause {
	case CauseTimeout:
		ok = ev.kind == "tick" && !o.wrote && !h.now.Before(o.triggeredAt.Add(h.cfg.Timeout))
	case CauseDeclined:
		ok = ev.kind == "decline" && ev.id == a.ID && !o.wrote
	case CauseMetadataFailed:
		ok = ev.kind == "write-failed" && ev.id == a.ID && o.wrote
	case CauseSubsumed:
		ok = ev.kind == "written" && a.ID < h.lastComplete && h.lastComplete == ev.id
	case CauseSuspended:
		// Suspend, Stop, or FailJob earlier in this very action list.
		ok = !o.wrote && (ev.kind == "suspend" || ev.kind == "stop" || !h.active)
	}
	if !ok {
		h.fatalf("NotifyAbort %d cause %s on %s %d (wrote=%t active=%t)", a.ID, a.Cause, ev.kind, ev.id, o.wrote, h.active)
	}
	o.ended = true
	h.lastFinish, h.finished = h.now, true
	h.seen["abort "+a.Cause.String()]++
	if !a.Cause.counted() || o.savepoint || !h.active {
		return false
	}
	h.failures++
	return h.failures > h.cfg.TolerableFailures
}

func (h *harness) checkState(ev event) {
	want := h.pendingIDs(nil)
	got := h.c.Pending()
	if !slices.Equal(want, got) && !(len(want) == 0 && len(got) == 0) {
		h.fatalf("Pending() = %v, observer %v", got, want)
	}
	if len(got) > h.cfg.MaxConcurrent {
		h.fatalf("%d pending, max %d", len(got), h.cfg.MaxConcurrent)
	}
	if h.c.LastCompleted() != h.lastComplete {
		h.fatalf("LastCompleted() = %d, observer %d", h.c.LastCompleted(), h.lastComplete)
	}
	if h.c.Failures() != h.failures {
		h.fatalf("Failures() = %d, observer %d", h.c.Failures(), h.failures)
	}
	if h.c.Suspended() == h.active {
		h.fatalf("Suspended() = %t, observer active=%t", h.c.Suspended(), h.active)
	}
	if h.queued && (!h.active || len(want) < h.cfg.MaxConcurrent) {
		h.fatalf("a request stays queued with %d of %d pending, active=%t", len(want), h.cfg.MaxConcurrent, h.active)
	}
	next, tick := h.c.NextTriggerAt(), h.c.NextTickAt()
	canTrigger := h.active && len(want) < h.cfg.MaxConcurrent
	if next.IsZero() == canTrigger {
		h.fatalf("NextTriggerAt() = %v with %d of %d pending, active=%t", next, len(want), h.cfg.MaxConcurrent, h.active)
	}
	if !next.IsZero() && next.Before(h.periodBase.Add(h.cfg.Interval)) {
		h.fatalf("NextTriggerAt() = %v before the interval ends at %v", next.Sub(epoch), h.periodBase.Add(h.cfg.Interval).Sub(epoch))
	}
	collecting := len(h.pendingIDs(func(o *obsCkpt) bool { return !o.wrote })) > 0
	if tick.IsZero() != (next.IsZero() && !(h.active && collecting)) {
		h.fatalf("NextTickAt() = %v, NextTriggerAt() = %v, collecting=%t active=%t", tick, next, collecting, h.active)
	}
	if ev.kind != "tick" || !h.active {
		return
	}
	// Liveness after a tick: nothing due is left undone.
	if !next.IsZero() && !next.After(h.now) {
		h.fatalf("after a tick at %v a trigger is still due at %v", h.now.Sub(epoch), next.Sub(epoch))
	}
	if !tick.IsZero() && !tick.After(h.now) {
		h.fatalf("after a tick at %v the next tick is due at %v", h.now.Sub(epoch), tick.Sub(epoch))
	}
	for _, id := range h.pendingIDs(func(o *obsCkpt) bool { return !o.wrote }) {
		if o := h.ckpts[id]; !h.now.Before(o.triggeredAt.Add(h.cfg.Timeout)) {
			h.fatalf("checkpoint %d outlived its timeout", id)
		}
	}
}
