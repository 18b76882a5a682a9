package txsink

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestStateRoundTripRouted: a state with routed epochs (WTX3: records with
// a topic and headers, inline and in a routed spill file) round trips next
// to plain epochs, and every truncation and bit flip is detected; a state
// without routed epochs keeps its old magic.
func TestStateRoundTripRouted(t *testing.T) {
	st := State{
		IDs: []string{"p-j-s-0-0"},
		Pending: []PendingEpoch{
			{Epoch: 6, Owner: "j/s/0", Spill: &SpillRef{Name: "a.spill", Records: 3, Bytes: 40, CRC: 0xdeadbeef}},
			{Epoch: 7, Owner: "j/s/0", Spill: &SpillRef{Name: "b.spill", Records: 2, Bytes: 50, CRC: 0xfeed, Routed: true}},
			{Epoch: 8, Owner: "j/s/1", Routed: true, Records: []Record{
				{Key: []byte("k"), Value: []byte("v")},
				{Key: nil, Value: []byte("bad"), Topic: "dlq", Headers: []Header{{Key: "weir.error", Value: []byte("x")}, {Key: "n", Value: nil}}},
			}},
			{Epoch: 9, Owner: "j/s/1", Records: []Record{{Key: []byte("k2"), Value: []byte("v2")}}},
		},
	}
	checkStateRoundTrip(t, st, stateMagicRouted)
	plain := State{IDs: st.IDs, Pending: []PendingEpoch{st.Pending[0], st.Pending[3]}}
	if b := EncodeState(plain); string(b[:4]) != stateMagicSpill {
		t.Fatalf("a state without routed epochs has header %q, want %q", b[:4], stateMagicSpill)
	}
}

// TestRoutedRecordsReplay: a Routed sink's epoch holds records for another
// topic with headers; after a crash between pre-commit and commit, Recover
// replays them from the state (with and without a spill file) with their
// topic and headers, exactly once. A sink that is not Routed refuses such
// a record.
func TestRoutedRecordsReplay(t *testing.T) {
	ctx := context.Background()
	recs := []Record{
		{Key: []byte("k1"), Value: []byte("good")},
		{Key: []byte("k2"), Value: []byte("{bad"), Topic: "dlq", Headers: []Header{{Key: "weir.source.offset", Value: []byte("7")}, {Key: "weir.error", Value: []byte("boom")}}},
	}
	for _, spill := range []bool{false, true} {
		sys := NewMemSystem()
		cfg := Config{Owner: "j/s/0", Routed: true}
		if spill {
			cfg.SpillDir, cfg.SpillFS = "spill", vfs.NewMem()
		}
		s, err := New(sys.Backend("p-j-s-0-0"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Write(ctx, recs); err != nil {
			t.Fatal(err)
		}
		st, err := s.PreCommit(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		// The process dies: the open transaction is lost.
		sys.ExpireOpen()
		s2, err := New(sys.Backend("p-j-s-0-0"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s2.Recover(ctx, st); err != nil {
			t.Fatalf("spill=%v: recover: %v", spill, err)
		}
		out := sys.Output()
		if len(out) != len(recs) {
			t.Fatalf("spill=%v: %d records committed, want %d: %+v", spill, len(out), len(recs), out)
		}
		for i, r := range out {
			if !reflect.DeepEqual(r.Record, recs[i]) {
				t.Fatalf("spill=%v: record %d committed as %+v, want %+v", spill, i, r.Record, recs[i])
			}
		}
	}
	s, err := New(NewMemSystem().Backend("p-j-s-0-0"), Config{Owner: "j/s/0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, recs); !errors.Is(err, ErrConfig) {
		t.Fatalf("a record with a topic on a sink that is not Routed: %v, want ErrConfig", err)
	}
}
