package txsink

import (
	"context"
	"errors"
	"testing"
)

// TestPendingLimitBoundsState: MaxPendingBytes bounds the encoded state,
// not only the key and value bytes. The writes here are mostly empty
// records (a null key and an empty value: no key or value bytes, but two
// length prefixes each in the state) in epochs that are pre-committed and
// never committed, so the state only grows. Every state PreCommit returns
// stays within the limit plus a small fixed overhead (the header and the
// transactional ids), and the write that would pass the limit fails the
// sink with ErrPendingFull, before the state could outgrow the limit of
// the state backend.
func TestPendingLimitBoundsState(t *testing.T) {
	const limit = 4 << 10
	const overhead = 1 << 10 // StateOverhead of two short ids is far less
	ctx := context.Background()
	sys := NewMemSystem()
	s, err := New(sys.Backend("p-j-s-0-0", "p-j-s-0-1"), Config{Owner: "j/s/0", MaxPendingBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	batch := make([]Record, 50)
	batch[0] = Record{Key: []byte("k"), Value: []byte("value")}
	for i := range batch[1:] {
		batch[i+1] = Record{Value: []byte{}}
	}
	var full error
	for epoch := uint64(1); epoch <= 100 && full == nil; epoch++ {
		for range 3 {
			if full = s.Write(ctx, batch); full != nil {
				break
			}
		}
		if full != nil {
			break
		}
		st, err := s.PreCommit(ctx, epoch)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) > limit+overhead {
			t.Fatalf("epoch %d: the state is %d bytes, over MaxPendingBytes %d plus %d", epoch, len(st), limit, overhead)
		}
	}
	if !errors.Is(full, ErrPendingFull) {
		t.Fatalf("writes never reached the limit (last error %v); the state kept growing", full)
	}
	var pf *PendingFullError
	if !errors.As(full, &pf) || pf.Limit != limit || pf.Held+pf.Adding <= limit || pf.Held > limit {
		t.Fatalf("error %v (%+v): want a *PendingFullError over limit %d", full, pf, limit)
	}
	if len(EncodeState(s.State())) > int(limit+StateOverhead(s.ids)) {
		t.Fatalf("the state is %d bytes, over MaxPendingBytes + StateOverhead = %d", len(EncodeState(s.State())), limit+StateOverhead(s.ids))
	}
}

// TestMaxStateBytes: New refuses a MaxPendingBytes whose state could
// exceed MaxStateBytes.
func TestMaxStateBytes(t *testing.T) {
	sys := NewMemSystem()
	ids := []string{"a", "b"}
	max := int64(1 << 20)
	ok := max - StateOverhead(ids)
	if _, err := New(sys.Backend(ids...), Config{Owner: "o", MaxPendingBytes: ok, MaxStateBytes: max}); err != nil {
		t.Fatalf("MaxPendingBytes %d under MaxStateBytes %d: %v", ok, max, err)
	}
	if _, err := New(sys.Backend(ids...), Config{Owner: "o", MaxPendingBytes: ok + 1, MaxStateBytes: max}); !errors.Is(err, ErrConfig) {
		t.Fatalf("MaxPendingBytes %d over MaxStateBytes %d less the overhead: %v, want ErrConfig", ok+1, max, err)
	}
}
