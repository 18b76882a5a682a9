package txsink

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestRecoverRefusesReplayOfCommitted is row 9's limit at the contract:
// epochs 1 to 3 are committed; a Recover with CheckCommitted from
// checkpoint 2 (older than epoch 3) or from none is refused with a
// *ReplayCommittedError naming both, one line; from checkpoint 3, or
// without CheckCommitted, it recovers.
func TestRecoverRefusesReplayOfCommitted(t *testing.T) {
	ctx := context.Background()
	sys := NewMemSystem()
	s, err := New(sys.Backend("p-j-s-0-0"), Config{Owner: "j/s/0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	var states [][]byte
	for epoch := uint64(1); epoch <= 3; epoch++ {
		if err := s.Write(ctx, []Record{{Key: []byte("k"), Value: []byte{byte(epoch)}}}); err != nil {
			t.Fatal(err)
		}
		st, err := s.PreCommit(ctx, epoch)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, st)
		if err := s.Commit(ctx, epoch); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		restored uint64
		check    bool
		want     string // "" recovers
	}{
		{2, true, "checkpoint 2 is older than epoch 3 already committed to the sink (owner j/s/0): restoring it would emit committed results again; restore checkpoint 3 or newer, or pass --allow-replay-committed"},
		{0, true, "no checkpoint is restored (a fresh start) but epoch 3 is already committed"},
		{3, true, ""},
		{2, false, ""},
	} {
		var st [][]byte
		if tc.restored > 0 {
			st = append(st, states[tc.restored-1])
		}
		s, err := New(sys.Backend("p-j-s-0-0"), Config{Owner: "j/s/0", CheckCommitted: tc.check, Restored: tc.restored})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Recover(ctx, st...)
		var rc *ReplayCommittedError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("restored %d, check %v: %v; want it to recover", tc.restored, tc.check, err)
		case tc.want != "" && (!errors.As(err, &rc) || !errors.Is(err, ErrReplayCommitted) || rc.Committed != 3 || rc.Checkpoint != tc.restored ||
			!strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\r\n")):
			t.Errorf("restored %d: %v; want one line with %q", tc.restored, err, tc.want)
		}
	}
	if n := len(sys.Output()); n != 3 {
		t.Fatalf("%d records committed, want 3 (a refused Recover replays nothing)", n)
	}
}
