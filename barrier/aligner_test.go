package barrier

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestDataDriven runs the scripts in testdata/. Commands:
//
//	new inputs=3 mode=exactly-once max-held=100 [max-items=N] [max-pending-aborts=N]
//	data in=1 item=a size=10
//	barrier in=0 ckpt=7
//	end in=2
//	abort ckpt=7
//	state
//
// Each event prints the actions it returned, one per line, or "(none)".
// Regenerate with: go test ./barrier/ -run TestDataDriven -rewrite
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var a *Aligner[string]
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			if td.Cmd != "new" && a == nil {
				td.Fatalf(t, "%s before new", td.Cmd)
			}
			switch td.Cmd {
			case "new":
				var cfg Config
				var mode string
				td.ScanArgs(t, "inputs", &cfg.Inputs)
				td.ScanArgs(t, "mode", &mode)
				td.MaybeScanArgs(t, "max-held", &cfg.MaxHeldBytes)
				td.MaybeScanArgs(t, "max-items", &cfg.MaxHeldItems)
				td.MaybeScanArgs(t, "max-pending-aborts", &cfg.MaxPendingAborts)
				m, err := ParseMode(mode)
				if err != nil {
					return "error: " + err.Error()
				}
				cfg.Mode = m
				na, err := New[string](cfg)
				if err != nil {
					if !errors.Is(err, ErrInvalidConfig) {
						td.Fatalf(t, "error does not wrap ErrInvalidConfig: %v", err)
					}
					return "error: " + err.Error()
				}
				a = na
				return "ok"
			case "data":
				var in int
				var item string
				var size int64
				td.ScanArgs(t, "in", &in)
				td.ScanArgs(t, "item", &item)
				td.ScanArgs(t, "size", &size)
				return printActions(a.Data(in, item, size))
			case "barrier":
				var in int
				var id uint64
				td.ScanArgs(t, "in", &in)
				td.ScanArgs(t, "ckpt", &id)
				return printActions(a.Barrier(in, CheckpointID(id)))
			case "end":
				var in int
				td.ScanArgs(t, "in", &in)
				return printActions(a.EndOfInput(in))
			case "abort":
				var id uint64
				td.ScanArgs(t, "ckpt", &id)
				return printActions(a.Abort(CheckpointID(id)))
			case "state":
				return printState(a)
			default:
				td.Fatalf(t, "unknown command %q", td.Cmd)
				return ""
			}
		})
	})
}

func printActions(acts []Action[string]) string {
	if len(acts) == 0 {
		return "(none)"
	}
	var b strings.Builder
	for _, act := range acts {
		b.WriteString(act.String())
		if act.Kind == Error && act.Err == nil {
			b.WriteString(" (missing Err)")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func printState(a *Aligner[string]) string {
	var b strings.Builder
	if id, ok := a.Aligning(); ok {
		fmt.Fprintf(&b, "aligning ckpt=%d\n", id)
	} else {
		b.WriteString("idle\n")
	}
	var blocked, ended []string
	for i := 0; i < a.Config().Inputs; i++ {
		if a.Blocked(i) {
			blocked = append(blocked, fmt.Sprint(i))
		}
		if a.Ended(i) {
			ended = append(ended, fmt.Sprint(i))
		}
	}
	fmt.Fprintf(&b, "blocked=[%s] ended=[%s]\n", strings.Join(blocked, " "), strings.Join(ended, " "))
	fmt.Fprintf(&b, "held items=%d bytes=%d\n", a.HeldItems(), a.HeldBytes())
	s := a.Stats()
	fmt.Fprintf(&b, "stats completed=%d subsumed=%d buffer-full=%d aborted=%d ignored=%d held=%d\n",
		s.Completed, s.Subsumed, s.BufferFull, s.Aborted, s.IgnoredBarrier, s.Held)
	return b.String()
}

func TestNewConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Inputs: 0, Mode: ExactlyOnce, MaxHeldBytes: 1},
		{Inputs: MaxInputs + 1, Mode: ExactlyOnce, MaxHeldBytes: 1},
		{Inputs: 1, Mode: 0, MaxHeldBytes: 1},
		{Inputs: 1, Mode: ExactlyOnce, MaxHeldBytes: 0},
		{Inputs: 1, Mode: AtLeastOnce, MaxHeldBytes: -1},
		{Inputs: 1, Mode: ExactlyOnce, MaxHeldBytes: 1, MaxHeldItems: -1},
		{Inputs: 1, Mode: ExactlyOnce, MaxHeldBytes: 1, MaxPendingAborts: -1},
	} {
		if _, err := New[int](cfg); !errors.Is(err, ErrInvalidConfig) || !strings.HasPrefix(err.Error(), "barrier: ") {
			t.Errorf("New(%+v) = %v, want an error wrapping ErrInvalidConfig", cfg, err)
		}
	}
	a, err := New[int](Config{Inputs: 2, Mode: AtLeastOnce})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if got := a.Config(); got.MaxHeldItems != DefaultMaxHeldItems || got.MaxPendingAborts != DefaultMaxPendingAborts {
		t.Errorf("defaults not filled in: %+v", got)
	}
}

// TestErrorSentinels checks that Error actions wrap the documented
// sentinels and leave the state unchanged.
func TestErrorSentinels(t *testing.T) {
	a, err := New[int](Config{Inputs: 2, Mode: ExactlyOnce, MaxHeldBytes: 10})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	a.Barrier(0, 3)
	a.Data(0, 1, 4)
	a.EndOfInput(1) // alignment of 3 completes
	// The aligner reuses its output slice: keep copies.
	c := slices.Clone[[]Action[int]]
	for _, tc := range []struct {
		name string
		acts []Action[int]
		want error
	}{
		{"range", c(a.Data(2, 9, 1)), ErrInputRange},
		{"negative input", c(a.Barrier(-1, 5)), ErrInputRange},
		{"ended data", c(a.Data(1, 9, 1)), ErrInputEnded},
		{"ended twice", c(a.EndOfInput(1)), ErrInputEnded},
		{"duplicate", c(a.Barrier(0, 3)), ErrBarrierOrder},
		{"older", c(a.Barrier(0, 2)), ErrBarrierOrder},
		{"zero", c(a.Barrier(0, 0)), ErrBarrierOrder},
		{"size", c(a.Data(0, 9, -1)), ErrNegativeSize},
	} {
		if len(tc.acts) != 1 || tc.acts[0].Kind != Error || !errors.Is(tc.acts[0].Err, tc.want) {
			t.Errorf("%s: got %v, want one Error wrapping %v", tc.name, tc.acts, tc.want)
			continue
		}
		if !strings.HasPrefix(tc.acts[0].Reason, "barrier: ") {
			t.Errorf("%s: reason %q lacks the package prefix", tc.name, tc.acts[0].Reason)
		}
	}
	if _, ok := a.Aligning(); ok || a.HeldBytes() != 0 || a.Stats().Completed != 1 {
		t.Errorf("errors changed the state: aligning=%v held=%d stats=%+v", ok, a.HeldBytes(), a.Stats())
	}
	if acts := a.Barrier(0, 4); len(acts) != 2 || acts[0].Kind != Snapshot || acts[0].ID != 4 {
		t.Errorf("barrier 4 with input 1 ended: got %v, want snapshot and forward of 4", acts)
	}
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Process.String(), "process"},
		{ForwardBarrier.String(), "forward-barrier"},
		{AbortCheckpoint.String(), "abort-checkpoint"},
		{AllEnded.String(), "all-ended"},
		{Snapshot.String(), "snapshot"},
		{Error.String(), "error"},
		{ActionKind(99).String(), "ActionKind(99)"},
		{ExactlyOnce.String(), "exactly-once"},
		{AtLeastOnce.String(), "at-least-once"},
		{Mode(7).String(), "Mode(7)"},
		{Action[string]{Kind: Snapshot, ID: 3, Input: -1}.String(), "snapshot ckpt=3"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, m := range []Mode{ExactlyOnce, AtLeastOnce} {
		if got, err := ParseMode(m.String()); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m, got, err)
		}
	}
}

// BenchmarkDataUnblocked measures the hot path: a record batch on an input
// that is not blocked.
func BenchmarkDataUnblocked(b *testing.B) {
	a, err := New[int](Config{Inputs: 2, Mode: ExactlyOnce, MaxHeldBytes: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if acts := a.Data(i&1, i, 100); len(acts) != 1 {
			b.Fatalf("got %v", acts)
		}
	}
}

// BenchmarkAlignmentCycle measures one full alignment of 2 inputs with 8
// records held.
func BenchmarkAlignmentCycle(b *testing.B) {
	a, err := New[int](Config{Inputs: 2, Mode: ExactlyOnce, MaxHeldBytes: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	id := CheckpointID(0)
	for b.Loop() {
		id++
		a.Barrier(0, id)
		for j := 0; j < 8; j++ {
			a.Data(0, j, 100)
		}
		if acts := a.Barrier(1, id); len(acts) != 10 {
			b.Fatalf("got %d actions", len(acts))
		}
	}
}
