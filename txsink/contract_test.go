package txsink

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var (
	seedFlag  = flag.Uint64("seed", 0, "replay the randomized contract test with this seed (0: new seeds)")
	runsFlag  = flag.Int("runs", 200, "randomized contract runs")
	stepsFlag = flag.Int("steps", 400, "steps per randomized contract run")
)

// model drives a Sink the way the sink actor and the checkpoint coordinator
// do: a source numbers records, barriers pre-commit, checkpoints complete
// (or not) and notify (or not), the process crashes, zombies appear, and
// the system injects faults. It checks that the committed output is every
// record exactly once, in order.
type model struct {
	t    *testing.T
	rng  *rand.Rand
	sys  *MemSystem
	pool int
	ids  []string
	// spill, when set, keeps the epochs' records in spill files on it
	// (it survives crashes, like a disk).
	spill vfs.FS

	sink   *Sink
	pos    int    // next record the source emits
	epoch  uint64 // last checkpoint id used; never reused
	cands  []checkpoint
	latest checkpoint // latest complete
	log    []string
}

type checkpoint struct {
	id    uint64
	pos   int
	state []byte
}

func (m *model) logf(format string, args ...any) {
	m.log = append(m.log, fmt.Sprintf(format, args...))
}

func (m *model) restart(ctx context.Context) {
	// Like a process that died: the old sink is dropped, not closed.
	for attempt := 0; ; attempt++ {
		if attempt > 20 {
			m.t.Fatalf("no recovery after 20 attempts:\n%s", m.dump())
		}
		m.pos = m.latest.pos
		m.cands = nil
		s, err := New(m.sys.Backend(m.ids...), Config{Owner: "job/sink/0", SpillDir: m.spillDir(), SpillFS: m.spill})
		if err != nil {
			m.t.Fatal(err)
		}
		var states [][]byte
		if m.latest.state != nil {
			states = append(states, m.latest.state)
		}
		if err := s.Recover(ctx, states...); err != nil {
			m.logf("recover from %d failed: %v", m.latest.id, err)
			continue
		}
		m.sink = s
		m.logf("recovered from checkpoint %d at pos %d", m.latest.id, m.pos)
		return
	}
}

func (m *model) spillDir() string {
	if m.spill == nil {
		return ""
	}
	return "spill"
}

func (m *model) dump() string {
	out := ""
	for _, l := range m.log {
		out += l + "\n"
	}
	return out
}

func (m *model) step(ctx context.Context) {
	var err error
	switch r := m.rng.IntN(100); {
	case r < 40: // records
		n := m.rng.IntN(4)
		recs := make([]Record, n)
		for i := range recs {
			recs[i] = Record{Key: []byte("k"), Value: []byte(strconv.Itoa(m.pos + i))}
		}
		if err = m.sink.Write(ctx, recs); err == nil {
			m.pos += n
		}
		m.logf("write %d -> pos %d: %v", n, m.pos, err)
	case r < 60: // barrier
		m.epoch++
		var st []byte
		st, err = m.sink.PreCommit(ctx, m.epoch)
		if err == nil {
			m.cands = append(m.cands, checkpoint{m.epoch, m.pos, st})
		}
		m.logf("precommit %d at pos %d: %v", m.epoch, m.pos, err)
	case r < 75: // a checkpoint completes (the coordinator completes them in order)
		if len(m.cands) == 0 {
			return
		}
		i := 0
		if m.rng.IntN(3) == 0 { // earlier ones were declined or timed out
			i = m.rng.IntN(len(m.cands))
		}
		m.latest = m.cands[i]
		m.cands = m.cands[i+1:]
		if m.rng.IntN(4) == 0 {
			m.logf("complete %d, notification lost", m.latest.id)
			return
		}
		err = m.sink.Commit(ctx, m.latest.id)
		m.logf("complete %d, commit: %v", m.latest.id, err)
	case r < 80:
		m.logf("crash")
		m.restart(ctx)
		return
	case r < 88: // a fault in the system
		op := []MemOp{MemWrite, MemPrepare, MemCommit, MemCommit, MemFence, MemCommitted}[m.rng.IntN(6)]
		applied := m.rng.IntN(2) == 0
		m.sys.FailNext(op, applied)
		m.logf("arm fault %d applied=%v", op, applied)
	case r < 92:
		m.logf("broker expired %d open transactions", m.sys.ExpireOpen())
	case r < 95: // a zombie: a second instance takes over; the first keeps trying
		old := m.sink
		before := len(m.sys.Output())
		m.logf("zombie")
		m.restart(ctx)
		zerr := old.Write(ctx, []Record{{Value: []byte("zombie")}})
		if zerr == nil {
			m.epoch++
			_, zerr = old.PreCommit(ctx, m.epoch)
		}
		if zerr == nil {
			zerr = old.Commit(ctx, m.epoch)
		}
		if zerr == nil && len(old.Pending()) == 0 && len(old.State().Pending) == 0 && before == len(m.sys.Output()) {
			// The zombie had nothing to commit and wrote only to a
			// buffer; it must not have reached the system.
			zerr = errors.New("nothing reached the system")
		}
		for _, r := range m.sys.Output() {
			if string(r.Value) == "zombie" {
				m.t.Fatalf("a zombie's record was committed:\n%s", m.dump())
			}
		}
		m.logf("zombie stopped: %v", zerr)
		return
	default:
		m.logf("expect abort of open transactions")
		m.sys.ClearFaults()
		err = m.sink.Abort(ctx)
		m.logf("abort: %v", err)
		m.restart(ctx)
		return
	}
	if err != nil {
		m.restart(ctx)
	}
}

// finish quiesces: no faults, one last checkpoint completes and commits.
func (m *model) finish(ctx context.Context) {
	m.sys.ClearFaults()
	for attempt := 0; ; attempt++ {
		if attempt > 5 {
			m.t.Fatalf("could not finish:\n%s", m.dump())
		}
		m.epoch++
		st, err := m.sink.PreCommit(ctx, m.epoch)
		if err == nil {
			m.latest = checkpoint{m.epoch, m.pos, st}
			err = m.sink.Commit(ctx, m.epoch)
		}
		if err == nil {
			return
		}
		m.logf("finish: %v", err)
		m.restart(ctx)
	}
}

func (m *model) check() {
	out := m.sys.Output()
	if len(out) != m.pos {
		vals := []string{}
		for _, r := range out {
			vals = append(vals, fmt.Sprintf("%s@%d", r.Value, r.Epoch))
		}
		m.t.Fatalf("committed %d records, want %d: %v\n%s", len(out), m.pos, vals, m.dump())
	}
	for i, r := range out {
		if string(r.Value) != strconv.Itoa(i) {
			m.t.Fatalf("committed record %d is %q, want %d (duplicate, loss or reorder)\n%s", i, r.Value, i, m.dump())
		}
	}
	if n := m.sys.Open(); n != 0 {
		for tx := range m.sys.open {
			m.logf("open: %+v", *tx)
		}
		m.t.Fatalf("%d transactions still open after the last commit\n%s", n, m.dump())
	}
}

// TestContractRandomized runs seeded random sequences of writes,
// pre-commits, completes (some lost, some out of order), crashes, zombies,
// broker timeouts and injected faults against MemSystem, and checks that
// the output is every record exactly once, in order. A failure prints the
// seed; -seed replays it.
func TestContractRandomized(t *testing.T) {
	seeds := []uint64{*seedFlag}
	if *seedFlag == 0 {
		base := uint64(time.Now().UnixNano())
		seeds = seeds[:0]
		for i := range *runsFlag {
			seeds = append(seeds, base+uint64(i))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, seed := range seeds {
		rng := rand.New(rand.NewPCG(seed, seed))
		m := &model{t: t, rng: rng, sys: NewMemSystem(), pool: 1 + rng.IntN(3)}
		for i := range m.pool {
			m.ids = append(m.ids, fmt.Sprintf("p-job-sink-0-%d", i))
		}
		if rng.IntN(2) == 0 {
			m.spill = vfs.NewMem()
		}
		m.logf("seed %d pool %d spill %v", seed, m.pool, m.spill != nil)
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			m.t = t
			m.restart(ctx)
			for range *stepsFlag {
				m.step(ctx)
			}
			m.finish(ctx)
			m.check()
			m.checkSpill()
		})
		if !ok {
			t.Fatalf("failed with seed %d; replay with: go test ./txsink -run TestContractRandomized -seed %d", seed, seed)
		}
	}
	t.Logf("%d seeds passed (first %d); replay one with -seed", len(seeds), seeds[0])
}

// checkSpill: after the final commit, one more recovery leaves no spill
// file (a zombie dropped mid-epoch leaves its open epoch's file behind,
// like a killed process; the next Recover of the owner deletes it).
func (m *model) checkSpill() {
	if m.spill == nil {
		return
	}
	m.restart(context.Background())
	names, err := m.spill.List("spill")
	if err != nil {
		m.t.Fatal(err)
	}
	if len(names) > 0 {
		m.t.Fatalf("spill files left after the last commit: %v\n%s", names, m.dump())
	}
}
