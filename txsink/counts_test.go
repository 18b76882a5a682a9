package txsink

import (
	"context"
	"testing"
)

// TestCounts: a sink counts the transactions it committed, aborted and
// replayed. Epoch 1 is committed; epoch 2 is pre-committed and its sink
// closed (aborted); a new sink recovering the state of epoch 2 replays
// and commits it.
func TestCounts(t *testing.T) {
	ctx := context.Background()
	sys := NewMemSystem()
	ids := []string{"p-j-s-0-0", "p-j-s-0-1"}
	s, err := New(sys.Backend(ids...), Config{Owner: "j/s/0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	rec := []Record{{Key: []byte("k"), Value: []byte("v")}}
	if err := s.Write(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PreCommit(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, rec); err != nil {
		t.Fatal(err)
	}
	st, err := s.PreCommit(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Counts(), (Counts{Committed: 1}); got != want {
		t.Fatalf("after one commit: %+v, want %+v", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Counts(), (Counts{Committed: 1, Aborted: 1}); got != want {
		t.Fatalf("after close: %+v, want %+v", got, want)
	}

	r, err := New(sys.Backend(ids...), Config{Owner: "j/s/0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Recover(ctx, st); err != nil {
		t.Fatal(err)
	}
	if got, want := r.Counts(), (Counts{Committed: 1, Replayed: 1}); got != want {
		t.Fatalf("after recovering epoch 2: %+v, want %+v", got, want)
	}
	if n := len(sys.Output()); n != 2 {
		t.Fatalf("%d records committed, want 2 (epochs 1 and 2 once each)", n)
	}
}
