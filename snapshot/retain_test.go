package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func listIDs(t *testing.T, fs vfs.FS, root string) []uint64 {
	t.Helper()
	infos, err := List(fs, root)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, in := range infos {
		ids = append(ids, in.ID)
	}
	return ids
}

func TestRetain(t *testing.T) {
	e := newEnv(t, vfs.NewMem(), "window-1", "window-2")
	defer e.close()
	ms := map[uint64]Metadata{}
	for id := uint64(1); id <= 6; id++ {
		e.fill(100+int(id)*20, fmt.Sprintf("S%d", id))
		ms[id] = e.checkpoint(id, id == 2) // 2 is a savepoint
	}
	// 4 lost its metadata (torn); 7 is still being written.
	if err := e.fs.Remove(e.fs.PathJoin(CheckpointDir(e.fs, e.root, 4), metadataName)); err != nil {
		t.Fatal(err)
	}
	e.fill(50, "S7")
	if _, err := e.snapshotAll(7); err != nil {
		t.Fatal(err)
	}

	if err := Retain(e.fs, e.root, 0); err == nil || !strings.Contains(err.Error(), "keep must be at least 1") {
		t.Fatalf("Retain(0): %v", err)
	}
	if err := Retain(e.fs, e.root, 2); err != nil {
		t.Fatal(err)
	}
	if got, want := listIDs(t, e.fs, e.root), []uint64{2, 5, 6, 7}; !slices.Equal(got, want) {
		t.Fatalf("after Retain(2): %v, want %v", got, want)
	}
	// Deleting 1, 3 and 4, which share sstables with the others through hard
	// links, broke none of the remaining ones.
	for _, id := range []uint64{2, 5, 6} {
		if err := Verify(context.Background(), e.fs, e.root, ms[id]); err != nil {
			t.Fatal(err)
		}
		e.checkRestore(ms[id])
	}
	_, problems := e.latest(6)
	if len(problems) != 1 || problems[0].ID != 7 {
		t.Fatalf("problems %v, want checkpoint 7 (in progress)", problems)
	}

	// Idempotent; then keep 1: 5 goes, the savepoint stays.
	if err := Retain(e.fs, e.root, 2); err != nil {
		t.Fatal(err)
	}
	if err := Retain(e.fs, e.root, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := listIDs(t, e.fs, e.root), []uint64{2, 6, 7}; !slices.Equal(got, want) {
		t.Fatalf("after Retain(1): %v, want %v", got, want)
	}
	e.checkRestore(ms[6])
	e.checkRestore(ms[2])
}

// TestRetainNeedsNewerComplete: nothing is deleted while no complete
// checkpoint is newer.
func TestRetainNeedsNewerComplete(t *testing.T) {
	e := newEnv(t, vfs.NewMem(), "map-1")
	defer e.close()
	e.fill(10, "A")
	m1 := e.checkpoint(1, false)
	e.fill(10, "B")
	if _, err := e.snapshotAll(2); err != nil { // incomplete, newer
		t.Fatal(err)
	}
	if err := Retain(e.fs, e.root, 1); err != nil {
		t.Fatal(err)
	}
	if got := listIDs(t, e.fs, e.root); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("after Retain: %v", got)
	}
	e.checkRestore(m1)
}

func TestLatestRefusesOtherJobOrGraph(t *testing.T) {
	e := newEnv(t, vfs.NewMem(), "map-1")
	defer e.close()
	e.job = "x"
	e.fill(10, "A")
	e.checkpoint(12, false)
	_, _, err := Latest(context.Background(), e.fs, e.root, "y", e.fp)
	if want := `snapshot: checkpoint 12 in /ckpt belongs to job "x", not "y"`; err == nil || err.Error() != want {
		t.Fatalf("Latest for another job: %v, want %q", err, want)
	}
	_, _, err = Latest(context.Background(), e.fs, e.root, "x", "other")
	if want := `snapshot: checkpoint 12 in /ckpt was taken with graph fingerprint "fp", not "other"`; err == nil ||
		!strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Latest for another graph: %v, want %q", err, want)
	}
	if errors.Is(err, ErrNoCheckpoint) {
		t.Fatal("a refusal must not look like a fresh start")
	}
	e.latest(12)
}

func TestWriteMetadataChecks(t *testing.T) {
	e := newEnv(t, vfs.NewMem(), "map-1")
	defer e.close()
	e.fill(10, "A")
	m, err := e.snapshotAll(1)
	if err != nil {
		t.Fatal(err)
	}
	bad := m
	bad.JobName = ""
	if err := WriteMetadata(e.fs, e.root, bad); err == nil || !strings.Contains(err.Error(), "empty job name") {
		t.Fatalf("empty job: %v", err)
	}
	bad = m
	bad.Tasks = map[string]Handle{"../x": m.Tasks["map-1"]}
	if err := WriteMetadata(e.fs, e.root, bad); err == nil || !strings.Contains(err.Error(), "task id") {
		t.Fatalf("bad task: %v", err)
	}
	// A handle whose file is missing is never published.
	h := m.Tasks["map-1"]
	h.Files = append(slices.Clone(h.Files), FileInfo{Name: "db/999999.sst", Size: 10})
	bad = m
	bad.Tasks = map[string]Handle{"map-1": h}
	if err := WriteMetadata(e.fs, e.root, bad); err == nil || !strings.Contains(err.Error(), "db/999999.sst is missing") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := e.fs.Stat(e.fs.PathJoin(CheckpointDir(e.fs, e.root, 1), metadataName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("metadata written for a bad handle: %v", err)
	}
	if err := WriteMetadata(e.fs, e.root, m); err != nil {
		t.Fatal(err)
	}
	if err := WriteMetadata(e.fs, e.root, m); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("overwrite: %v", err)
	}
	got, err := ReadMetadata(e.fs, e.root, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got.JobName != m.JobName || !got.Time.Equal(m.Time) || len(got.Tasks["map-1"].Files) != len(m.Tasks["map-1"].Files) {
		t.Fatalf("read back %+v, wrote %+v", got, m)
	}
	e.checkRestore(got)
	if _, _, err := Restore(context.Background(), e.fs, e.root, got, "reduce-1", "/r", testStoreOptions(t)); err == nil ||
		!strings.Contains(err.Error(), "has no state for task reduce-1") {
		t.Fatalf("restore of an unknown task: %v", err)
	}
}
