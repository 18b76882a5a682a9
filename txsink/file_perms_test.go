package txsink

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFileIsPrivate: on the operating system's filesystem (FS nil) and
// under the usual umask 022, the backend's directory and every file it
// creates (a pending transaction, the generations, the locks, the
// published parts) are 0700 and 0600; a named pipe in place of a
// generation file is refused, not opened.
func TestFileIsPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "out", "sink")
	b, err := NewFile(FileConfig{Dir: dir, IDs: fileIDs})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Fence(ctx, nil); err != nil {
		t.Fatal(err)
	}
	committed, err := b.Begin(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := committed.Write(ctx, fileRecs(0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := committed.Prepare(ctx, "job/sink/0", 1); err != nil {
		t.Fatal(err)
	}
	if err := committed.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	pending, err := b.Begin(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := pending.Write(ctx, fileRecs(10, 20)); err != nil {
		t.Fatal(err)
	}
	if err := pending.Prepare(ctx, "job/sink/0", 2); err != nil {
		t.Fatal(err)
	}
	var names []string
	err = filepath.WalkDir(filepath.Dir(dir), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		names = append(names, d.Name())
		want := os.FileMode(0o600)
		if info.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s is %v, want %v", path, info.Mode(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(names, " ")
	for _, want := range []string{".txn-", ".gen-", "part-"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %s file among %s", want, all)
		}
	}
	if err := pending.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	gen := filepath.Join(dir, ".gen-"+fileIDs[0])
	if err := os.Remove(gen); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(gen, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err = NewFile(FileConfig{Dir: dir, IDs: fileIDs})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	done := make(chan error, 1)
	go func() { done <- b.Fence(ctx, nil) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), gen+" is not a regular file") {
			t.Fatalf("Fence over a named pipe: %v; want it named, not a regular file", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Fence opened the named pipe")
	}
}
