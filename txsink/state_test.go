package txsink

import (
	"errors"
	"reflect"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	st := State{
		IDs: []string{"p-j-s-0-0", "p-j-s-0-1"},
		Pending: []PendingEpoch{
			{Epoch: 7, Owner: "j/s/0", Records: []Record{{Key: nil, Value: []byte("v")}, {Key: []byte{}, Value: nil}, {Key: []byte("k"), Value: []byte("w")}}},
			{Epoch: 9, Owner: "j/s/0", Records: []Record{}},
		},
	}
	b := EncodeState(st)
	got, err := DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("round trip:\n got  %#v\n want %#v", got, st)
	}
	if got, err := DecodeState(nil); err != nil || len(got.IDs)+len(got.Pending) != 0 {
		t.Fatalf("empty state: %+v, %v", got, err)
	}
	// Every truncation and every single-bit flip is detected.
	for i := range b {
		if _, err := DecodeState(b[:i]); i > 0 && !errors.Is(err, ErrState) {
			t.Fatalf("truncated to %d bytes: %v, want ErrState", i, err)
		}
		for bit := range 8 {
			c := append([]byte(nil), b...)
			c[i] ^= 1 << bit
			if _, err := DecodeState(c); !errors.Is(err, ErrState) {
				t.Fatalf("bit %d of byte %d flipped: %v, want ErrState", bit, i, err)
			}
		}
	}
}

// TestSinkCallOrder: the contract's preconditions are errors, not panics.
func TestSinkCallOrder(t *testing.T) {
	ctx := t.Context()
	sys := NewMemSystem()
	s, err := New(sys.Backend("a", "b"), Config{Owner: "j/s/0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, []Record{{Value: []byte("x")}}); !errors.Is(err, ErrNotRecovered) {
		t.Fatalf("write before recover: %v", err)
	}
	if err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(ctx); !errors.Is(err, ErrNotRecovered) {
		t.Fatalf("second recover: %v", err)
	}
	if _, err := s.PreCommit(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PreCommit(ctx, 3); !errors.Is(err, ErrEpochOrder) {
		t.Fatalf("repeated epoch: %v", err)
	}
	if err := s.Commit(ctx, 3); !errors.Is(err, ErrFailed) {
		t.Fatalf("commit after a failure: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if _, err := New(sys.Backend("a"), Config{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("no owner: %v", err)
	}
	s2, _ := New(sys.Backend("a"), Config{Owner: "o", MaxPendingBytes: 10})
	if err := s2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s2.Write(ctx, []Record{{Value: make([]byte, 11)}}); !errors.Is(err, ErrPendingFull) {
		t.Fatalf("over MaxPendingBytes: %v", err)
	}
	if err := s2.Recover(ctx, []byte("garbage")); err == nil {
		t.Fatal("recover from garbage succeeded")
	}
	s3, _ := New(sys.Backend("a"), Config{Owner: "o"})
	if err := s3.Recover(ctx, []byte("garbage!")); !errors.Is(err, ErrState) {
		t.Fatalf("recover from a corrupt state: %v, want ErrState", err)
	}
}
