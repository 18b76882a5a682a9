package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// cancelOnOpen cancels a context when a file under dir is opened for
// reading.
type cancelOnOpen struct {
	vfs.FS
	dir    string
	cancel context.CancelFunc
	once   sync.Once
}

func (c *cancelOnOpen) Unwrap() vfs.FS { return c.FS }

func (c *cancelOnOpen) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	if strings.HasPrefix(name, c.dir+"/") {
		c.once.Do(c.cancel)
	}
	return c.FS.Open(name, opts...)
}

// TestRestoreStopsWhenCancelled: Latest, Verify, ListVerified and Restore
// stop with ctx's error when it ends, also while they read the files.
func TestRestoreStopsWhenCancelled(t *testing.T) {
	e := newEnv(t, vfs.NewMem(), "window-1")
	defer e.close()
	e.fill(300, "A")
	m := e.checkpoint(1, false)

	done, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Latest(done, e.fs, e.root, e.job, e.fp); !errors.Is(err, context.Canceled) || errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("Latest with an ended context: %v; want context.Canceled, not ErrNoCheckpoint", err)
	}
	if err := Verify(done, e.fs, e.root, m); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify with an ended context: %v", err)
	}
	if _, err := ListVerified(done, e.fs, e.root); !errors.Is(err, context.Canceled) {
		t.Errorf("ListVerified with an ended context: %v", err)
	}
	if s, _, err := Restore(done, e.fs, e.root, m, "window-1", "/restored", testStoreOptions(t)); !errors.Is(err, context.Canceled) {
		if s != nil {
			s.Close()
		}
		t.Errorf("Restore with an ended context: %v", err)
	}

	// Ended while a file is read: the first open of a checkpoint file
	// cancels.
	for name, run := range map[string]func(ctx context.Context, fs vfs.FS) error{
		"Latest": func(ctx context.Context, fs vfs.FS) error {
			_, _, err := Latest(ctx, fs, e.root, e.job, e.fp)
			return err
		},
		"Restore": func(ctx context.Context, fs vfs.FS) error {
			s, _, err := Restore(ctx, fs, e.root, m, "window-1", "/restored", testStoreOptions(t))
			if s != nil {
				s.Close()
			}
			return err
		},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		fs := &cancelOnOpen{FS: e.fs, dir: TaskDir(e.fs, e.root, 1, "window-1"), cancel: cancel}
		if err := run(ctx, fs); !errors.Is(err, context.Canceled) {
			t.Errorf("%s cancelled while reading: %v; want context.Canceled", name, err)
		}
		cancel()
	}
	// Nothing was damaged.
	e.latest(1)
	e.checkRestore(m)
}

// TestRestoreRefusesFIFO: a named pipe in place of a checkpoint's files
// (an empty Pebble marker, which passes the size check, or the operator
// state) is refused at once with an error naming it.
func TestRestoreRefusesFIFO(t *testing.T) {
	base := t.TempDir()
	e := newEnvIn(t, vfs.Default, base, "map-1")
	defer e.close()
	e.fill(50, "A")
	m := e.checkpoint(1, false)
	taskDir := TaskDir(vfs.Default, e.root, 1, "map-1")
	var marker string
	for _, f := range m.Tasks["map-1"].Files {
		if f.Size == 0 && strings.Contains(f.Name, "marker") {
			marker = filePath(vfs.Default, taskDir, f.Name)
		}
	}
	if marker == "" {
		t.Fatalf("no empty marker file in %+v", m.Tasks["map-1"].Files)
	}
	for _, path := range []string{marker, filepath.Join(taskDir, opStateName)} {
		saved, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		within(t, "Restore", func() {
			s, _, err := Restore(context.Background(), vfs.Default, e.root, m, "map-1", filepath.Join(base, "restored"), testStoreOptions(t))
			if s != nil {
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), path+" is not a regular file") {
				t.Errorf("Restore with a named pipe as %s: %v", path, err)
			}
		})
		within(t, "Verify", func() {
			if err := Verify(context.Background(), vfs.Default, e.root, m); err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("Verify with a named pipe as %s: %v", path, err)
			}
		})
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, saved, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.checkRestore(m)
}
