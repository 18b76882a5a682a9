package txsink

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestStateRoundTripSpill: a state with spill references (WTX2) round
// trips, mixed with an epoch that holds its records, and every truncation
// and bit flip is detected.
func TestStateRoundTripSpill(t *testing.T) {
	st := State{
		IDs: []string{"p-j-s-0-0"},
		Pending: []PendingEpoch{
			{Epoch: 7, Owner: "j/s/0", Spill: &SpillRef{Name: "j_s_0-00000000-0000000000000001.spill", Records: 3, Bytes: 40, CRC: 0xdeadbeef}},
			{Epoch: 8, Owner: "j/s/1", Records: []Record{{Key: []byte("k"), Value: []byte("v")}}},
		},
	}
	checkStateRoundTrip(t, st, stateMagicSpill)
}

func newSpillSink(t *testing.T, sys *MemSystem, fs vfs.FS, states ...[]byte) *Sink {
	t.Helper()
	s, err := New(sys.Backend("p-j-s-0-0"), Config{Owner: "j/s/0", SpillDir: "spill", SpillFS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(context.Background(), states...); err != nil {
		t.Fatal(err)
	}
	return s
}

func spillFiles(t *testing.T, fs vfs.FS) []string {
	t.Helper()
	names, err := fs.List("spill")
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func fileSize(t *testing.T, fs vfs.FS, name string) int64 {
	t.Helper()
	fi, err := fs.Stat(fs.PathJoin("spill", name))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func spillRecs(from, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{Key: []byte("k"), Value: []byte(fmt.Sprint(from + i))}
	}
	return out
}

// TestSpillKeepsRecordsOffHeapAndState: with a spill directory the sink
// drops records once its transaction has them, the state of a pre-commit
// names a file instead of holding 10^4 records, the file is kept for reuse
// once the epoch is committed and the next epoch writes over it (under
// its own name: the file is then longer than the epoch's records), and a
// crash after the pre-commit replays the epoch from its file exactly once.
func TestSpillKeepsRecordsOffHeapAndState(t *testing.T) {
	ctx := context.Background()
	sys, fs := NewMemSystem(), vfs.NewMem()
	s := newSpillSink(t, sys, fs)
	if err := s.Write(ctx, spillRecs(0, 10000)); err != nil {
		t.Fatal(err)
	}
	if n := len(s.cur.recs); n != 0 {
		t.Fatalf("the sink holds %d records written to its transaction, want 0", n)
	}
	st, err := s.PreCommit(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) > 200 {
		t.Fatalf("the state of 10^4 spilled records is %d bytes, want a reference of < 200", len(st))
	}
	if got := spillFiles(t, fs); len(got) != 1 {
		t.Fatalf("spill files %v, want one", got)
	}
	if err := s.Commit(ctx, 1); err != nil {
		t.Fatal(err)
	}
	first := spillFiles(t, fs)
	if len(first) != 1 || len(s.recycled) != 1 || s.recycled[0] != first[0] {
		t.Fatalf("spill files %v after the commit, kept for reuse %v, want the epoch's kept", first, s.recycled)
	}
	if n := len(sys.Output()); n != 10000 {
		t.Fatalf("%d records committed, want 10000", n)
	}
	size1 := fileSize(t, fs, first[0])

	// Epoch 2 is pre-committed, then the process dies: its transaction is
	// lost with it (as librdkafka's is), the file and the state remain.
	if err := s.Write(ctx, spillRecs(10000, 500)); err != nil {
		t.Fatal(err)
	}
	if got := spillFiles(t, fs); len(got) != 1 || got[0] == first[0] || len(s.recycled) != 0 {
		t.Fatalf("spill files %v (kept for reuse %v) after epoch 2's first write, want epoch 1's renamed", got, s.recycled)
	}
	st, err = s.PreCommit(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := spillFiles(t, fs); fileSize(t, fs, got[0]) != size1 {
		t.Fatalf("epoch 2's file is %d bytes, want epoch 1's %d: written over, not cut", fileSize(t, fs, got[0]), size1)
	}
	if err := s.Write(ctx, spillRecs(10500, 7)); err != nil { // the open epoch 3: in no checkpoint
		t.Fatal(err)
	}
	if got := spillFiles(t, fs); len(got) != 2 {
		t.Fatalf("spill files %v, want epoch 2's and the open one's", got)
	}
	s2 := newSpillSink(t, sys, fs, st)
	out := sys.Output()
	if len(out) != 10500 || string(out[10499].Value) != "10499" {
		t.Fatalf("%d records committed after the replay (last %q), want 10500", len(out), out[len(out)-1].Value)
	}
	if got := spillFiles(t, fs); len(got) != 0 {
		t.Fatalf("spill files %v after recovery, want none (epoch 2 replayed, the open epoch's is garbage)", got)
	}
	// Recovering from the same state again commits nothing twice.
	s2.Close()
	newSpillSink(t, sys, fs, st)
	if n := len(sys.Output()); n != 10500 {
		t.Fatalf("%d records after a second recovery, want 10500", n)
	}
}

// TestSpillBroken: a spill file that is missing, cut short or changed
// fails the recovery with ErrState naming the file, and commits nothing.
func TestSpillBroken(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		harm  func(fs vfs.FS, path string)
		error string
	}{
		{"missing", func(fs vfs.FS, path string) { fs.Remove(path) }, "is missing"},
		{"cut short", func(fs vfs.FS, path string) {
			f, _ := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
			b := make([]byte, 10)
			f.ReadAt(b, 0)
			f.Close()
			fs.Remove(path)
			g, _ := fs.Create(path, vfs.WriteCategoryUnspecified)
			g.Write(b)
			g.Close()
		}, "cut short"},
		{"changed", func(fs vfs.FS, path string) {
			f, _ := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
			f.WriteAt([]byte{0xff}, 3)
			f.Close()
		}, "checksum mismatch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sys, fs := NewMemSystem(), vfs.NewMem()
			s := newSpillSink(t, sys, fs)
			if err := s.Write(ctx, spillRecs(0, 100)); err != nil {
				t.Fatal(err)
			}
			st, err := s.PreCommit(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			names := spillFiles(t, fs)
			c.harm(fs, fs.PathJoin("spill", names[0]))
			s2, err := New(sys.Backend("p-j-s-0-0"), Config{Owner: "j/s/0", SpillDir: "spill", SpillFS: fs})
			if err != nil {
				t.Fatal(err)
			}
			err = s2.Recover(ctx, st)
			if !errors.Is(err, ErrState) || !strings.Contains(err.Error(), c.error) || !strings.Contains(err.Error(), names[0]) {
				t.Fatalf("recover: %v, want ErrState naming %s and %q", err, names[0], c.error)
			}
			if n := len(sys.Output()); n != 0 {
				t.Fatalf("%d records committed from a broken spill file", n)
			}
		})
	}
}

// TestSpillOldStateStillRecovers: a state written without spill files
// (WTX1, by the previous version) recovers with a spill directory set.
func TestSpillOldStateStillRecovers(t *testing.T) {
	ctx := context.Background()
	sys := NewMemSystem()
	s, err := New(sys.Backend("p-j-s-0-0"), Config{Owner: "j/s/0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, spillRecs(0, 10)); err != nil {
		t.Fatal(err)
	}
	st, err := s.PreCommit(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(st[:4]) != stateMagic {
		t.Fatalf("header %q, want %q", st[:4], stateMagic)
	}
	newSpillSink(t, sys, vfs.NewMem(), st)
	if n := len(sys.Output()); n != 10 {
		t.Fatalf("%d records committed, want 10", n)
	}
}

// TestRemoveSpillsExcept deletes the spill files of the owners not named,
// and nothing else.
func TestRemoveSpillsExcept(t *testing.T) {
	fs := vfs.NewMem()
	if err := fs.MkdirAll("spill", 0o700); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, owner := range []string{"j/s/0", "j/s/1", "j/s/10", "j/s/2"} {
		n := spillPrefix(owner) + "0000000000000001" + spillSuffix
		names = append(names, n)
	}
	names = append(names, "notes.txt")
	for _, n := range names {
		f, err := fs.Create(fs.PathJoin("spill", n), vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	RemoveSpillsExcept(fs, "spill", []string{"j/s/0", "j/s/1"})
	got := spillFiles(t, fs)
	want := []string{names[0], names[1], "notes.txt"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
}

// checkStateRoundTrip: st encodes under magic, decodes back equal, and
// every truncation and changed byte of its encoding is ErrState.
func checkStateRoundTrip(t *testing.T, st State, magic string) {
	t.Helper()
	b := EncodeState(st)
	if string(b[:4]) != magic {
		t.Fatalf("header %q, want %q", b[:4], magic)
	}
	got, err := DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("round trip:\n got  %#v\n want %#v", got, st)
	}
	for i := range b {
		if _, err := DecodeState(b[:i]); i > 0 && !errors.Is(err, ErrState) {
			t.Fatalf("truncated to %d bytes: %v, want ErrState", i, err)
		}
		c := append([]byte(nil), b...)
		c[i] ^= 0x10
		if _, err := DecodeState(c); !errors.Is(err, ErrState) {
			t.Fatalf("byte %d changed: %v, want ErrState", i, err)
		}
	}
}
