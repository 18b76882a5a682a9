package snapshot

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// withUmask sets the process's umask for the test (the usual 022 lets
// everybody read what is created 0666/0777).
func withUmask(t *testing.T, mask int) {
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

// checkPrivate fails the test for every directory under root that is not
// 0700 and every file that is not 0600 (symbolic links are not followed).
func checkPrivate(t *testing.T, root string) (dirs, files int) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch mode := info.Mode(); {
		case mode.IsDir():
			dirs++
			if mode.Perm() != 0o700 {
				t.Errorf("directory %s is %v, want drwx------", path, mode)
			}
		case mode.IsRegular():
			files++
			if mode.Perm() != 0o600 {
				t.Errorf("file %s is %v, want -rw-------", path, mode)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs, files
}

// TestStateFilesArePrivate: the live stores, the checkpoints (Pebble's
// files, the operator state, the metadata) and a restored store are 0600
// files in 0700 directories under the usual umask 022.
func TestStateFilesArePrivate(t *testing.T) {
	withUmask(t, 0o022)
	base := t.TempDir()
	e := newEnvIn(t, vfs.Default, base, "window-1", "window-2")
	defer e.close()
	e.fill(200, "A")
	e.checkpoint(1, false)
	e.fill(200, "B")
	m := e.checkpoint(2, false)
	e.checkRestore(m)
	dirs, files := checkPrivate(t, e.root)
	d, f := checkPrivate(t, filepath.Join(base, "live"))
	d2, f2 := checkPrivate(t, filepath.Join(base, "restored"))
	t.Logf("checked %d directories and %d files", dirs+d+d2, files+f+f2)
	if files == 0 || f == 0 || f2 == 0 {
		t.Fatalf("no files checked: %d, %d, %d", files, f, f2)
	}
}
