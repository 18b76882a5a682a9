package privfs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestWrapMakesPrivate: under umask 022, every way a wrapped filesystem
// creates a file or directory gives 0600 or 0700.
func TestWrapMakesPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	fs := Wrap(vfs.Default)
	if Wrap(fs) != fs {
		t.Fatal("wrapping twice wraps again")
	}
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if m := mode(t, d); m != DirMode {
			t.Errorf("directory %s is %v, want %v", d, m, DirMode)
		}
	}
	create := func(name string) vfs.File {
		f, err := fs.Create(filepath.Join(dir, name), vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	f := create("created")
	f.Close()
	f, err := fs.OpenReadWrite(filepath.Join(dir, "rw"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, "old"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err = fs.ReuseForWrite(filepath.Join(dir, "old"), filepath.Join(dir, "reused"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	l, err := fs.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, name := range []string{"created", "rw", "reused", "LOCK"} {
		if m := mode(t, filepath.Join(dir, name)); m != FileMode {
			t.Errorf("%s is %v, want %v", name, m, FileMode)
		}
	}

	// An in-memory filesystem has no descriptors: nothing to narrow.
	mem := Wrap(vfs.NewMem())
	if err := mem.MkdirAll("/x", 0o755); err != nil {
		t.Fatal(err)
	}
	if f, err := mem.Create("/x/f", vfs.WriteCategoryUnspecified); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	if l, err := mem.Lock("/x/LOCK"); err != nil {
		t.Fatal(err)
	} else {
		l.Close()
	}
}
