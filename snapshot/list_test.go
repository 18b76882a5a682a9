package snapshot

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// openLog records the paths opened for reading.
type openLog struct {
	vfs.FS
	mu     sync.Mutex
	opened []string
}

func (o *openLog) Unwrap() vfs.FS { return o.FS }

func (o *openLog) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	o.mu.Lock()
	o.opened = append(o.opened, name)
	o.mu.Unlock()
	return o.FS.Open(name, opts...)
}

// under returns the paths opened under dir, and resets the log.
func (o *openLog) under(dir string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, p := range o.opened {
		if strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	o.opened = nil
	return out
}

// TestListVerifiesOnlyTheNewest: List checksums the newest complete
// checkpoint only; an older one with a flipped bit in a state file (same
// size) is listed complete, and none of its files but _metadata is opened.
// When the newest fails, the next one is verified in full instead.
func TestListVerifiesOnlyTheNewest(t *testing.T) {
	fs := &openLog{FS: vfs.NewMem()}
	e := newEnv(t, fs, "window-1", "window-2")
	defer e.close()
	for id := uint64(1); id <= 3; id++ {
		e.fill(100+int(id)*20, "S")
		e.checkpoint(id, false)
	}
	opState := filePath(fs, TaskDir(fs, e.root, 1, "window-1"), opStateName)
	rewriteFile(t, fs, opState, flipBit(func(n int) int { return n / 2 }))
	fs.under(e.root)

	infos, err := List(fs, e.root)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 3 {
		t.Fatalf("listed %d checkpoints, want 3: %+v", len(infos), infos)
	}
	for _, in := range infos {
		if !in.Complete || in.Err != nil {
			t.Errorf("checkpoint %d: complete %v, err %v; want complete (older ones are not re-read)", in.ID, in.Complete, in.Err)
		}
	}
	opened := fs.under(e.root)
	newestRead := false
	for _, p := range opened {
		newestRead = newestRead || strings.HasPrefix(p, TaskDir(fs, e.root, 3, "window-1")+"/")
	}
	if !newestRead {
		t.Errorf("List did not read the files of the newest checkpoint (opened %v)", opened)
	}
	for _, id := range []uint64{1, 2} {
		dir := CheckpointDir(fs, e.root, id)
		for _, p := range opened {
			if strings.HasPrefix(p, dir+"/") && p != fs.PathJoin(dir, metadataName) {
				t.Errorf("List opened %s of the older checkpoint %d", p, id)
			}
		}
	}

	// The newest is corrupt: the one before is the one verified, the
	// oldest still is not.
	newest := filePath(fs, TaskDir(fs, e.root, 3, "window-2"), opStateName)
	rewriteFile(t, fs, newest, flipBit(func(n int) int { return n - 1 }))
	infos, err = List(fs, e.root)
	if err != nil {
		t.Fatal(err)
	}
	if in := infos[2]; in.Complete || in.Err == nil || !strings.Contains(in.Err.Error(), "crc32c") {
		t.Errorf("newest checkpoint 3: complete %v, err %v; want the checksum error", in.Complete, in.Err)
	}
	if in := infos[1]; !in.Complete || in.Err != nil {
		t.Errorf("checkpoint 2: complete %v, err %v; want complete", in.Complete, in.Err)
	}
	if in := infos[0]; !in.Complete || in.Err != nil {
		t.Errorf("checkpoint 1: complete %v, err %v; want complete (not re-read)", in.Complete, in.Err)
	}
	for _, p := range fs.under(CheckpointDir(fs, e.root, 1)) {
		if p != fs.PathJoin(CheckpointDir(fs, e.root, 1), metadataName) {
			t.Errorf("List opened %s of the oldest checkpoint", p)
		}
	}
}

// TestListDoesNotFollowSymlinks: a symbolic link inside a checkpoint to a
// large directory elsewhere, and one to the checkpoint itself (a loop),
// are not walked when sizing.
func TestListDoesNotFollowSymlinks(t *testing.T) {
	base := t.TempDir()
	e := newEnvIn(t, vfs.Default, base, "map-1")
	defer e.close()
	e.fill(50, "A")
	e.checkpoint(1, false)
	infos, err := List(vfs.Default, e.root)
	if err != nil || len(infos) != 1 {
		t.Fatalf("List: %+v, %v", infos, err)
	}
	want := infos[0].Size

	big := filepath.Join(base, "elsewhere")
	if err := os.MkdirAll(big, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(big, "big"), make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := CheckpointDir(vfs.Default, e.root, 1)
	if err := os.Symlink(big, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(".", filepath.Join(dir, "map-1", "loop")); err != nil {
		t.Fatal(err)
	}
	infos, err = List(vfs.Default, e.root)
	if err != nil {
		t.Fatalf("List with symbolic links in a checkpoint: %v", err)
	}
	if got := infos[0]; got.Size != want || !got.Complete {
		t.Fatalf("with the links: size %d, complete %v; want size %d (links not followed) and complete", got.Size, got.Complete, want)
	}
}

// TestListUnreadableOlderCheckpoints: an older chk-<N> that is a file, and
// one whose _metadata is garbage, are listed with their error; the listing
// goes on, Latest takes the newest, and Retain removes both.
func TestListUnreadableOlderCheckpoints(t *testing.T) {
	base := t.TempDir()
	e := newEnvIn(t, vfs.Default, base, "map-1")
	defer e.close()
	e.fill(50, "A")
	e.checkpoint(3, false)
	chk1 := CheckpointDir(vfs.Default, e.root, 1)
	if err := os.WriteFile(chk1, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	chk2 := CheckpointDir(vfs.Default, e.root, 2)
	if err := os.MkdirAll(chk2, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(chk2, metadataName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}

	infos, err := List(vfs.Default, e.root)
	if err != nil {
		t.Fatalf("List: %v; want the unreadable checkpoints listed with their errors", err)
	}
	if len(infos) != 3 {
		t.Fatalf("listed %+v, want 3 checkpoints", infos)
	}
	for _, in := range infos[:2] {
		if in.Complete || in.Err == nil {
			t.Errorf("checkpoint %d: complete %v, err %v; want an error", in.ID, in.Complete, in.Err)
		}
	}
	if !strings.Contains(infos[1].Err.Error(), filepath.Join(chk2, metadataName)) {
		t.Errorf("checkpoint 2: %v; want the error to name its _metadata", infos[1].Err)
	}
	if !infos[2].Complete {
		t.Errorf("checkpoint 3 not complete: %v", infos[2].Err)
	}
	e.latest(3)

	if err := Retain(vfs.Default, e.root, 1); err != nil {
		t.Fatalf("Retain: %v", err)
	}
	if got := listIDs(t, vfs.Default, e.root); len(got) != 1 || got[0] != 3 {
		t.Fatalf("after Retain: %v, want only checkpoint 3", got)
	}
}

// within runs f and fails the test when it does not return within a
// minute (a blocking open would hang forever).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s did not return within a minute: a named pipe was opened", what)
	}
}

// TestFIFOMetadataRefused: a named pipe as the newest checkpoint's
// _metadata is refused at once, with an error naming it and saying it is
// not a regular file; List goes on and Latest falls back.
func TestFIFOMetadataRefused(t *testing.T) {
	base := t.TempDir()
	e := newEnvIn(t, vfs.Default, base, "map-1")
	defer e.close()
	e.fill(50, "A")
	e.checkpoint(1, false)
	e.fill(50, "B")
	if _, err := e.snapshotAll(2); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(CheckpointDir(vfs.Default, e.root, 2), metadataName)
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	within(t, "List", func() {
		infos, err := List(vfs.Default, e.root)
		if err != nil || len(infos) != 2 {
			t.Errorf("List: %+v, %v", infos, err)
			return
		}
		if err := infos[1].Err; err == nil || !strings.Contains(err.Error(), fifo) ||
			!strings.Contains(err.Error(), "not a regular file") || strings.Contains(err.Error(), "\n") {
			t.Errorf("checkpoint 2: %v; want one line naming %s, not a regular file", err, fifo)
		}
		if !infos[0].Complete {
			t.Errorf("checkpoint 1: %v", infos[0].Err)
		}
	})
	within(t, "ReadMetadata", func() {
		if _, err := ReadMetadata(vfs.Default, e.root, 2); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("ReadMetadata: %v", err)
		}
	})
	within(t, "Latest", func() {
		_, problems := e.latest(1)
		if len(problems) != 1 || !strings.Contains(problems[0].Err.Error(), "not a regular file") {
			t.Errorf("problems %v; want checkpoint 2, not a regular file", problems)
		}
	})
}
