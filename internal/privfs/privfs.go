// Package privfs wraps a pebble vfs.FS so that what it creates is private
// to the user the engine runs as: directories 0700, files 0600, whatever
// the process's umask. Checkpoints and the exactly-once sinks' state hold
// output records that are not committed yet; nobody else should read them.
//
// Files are narrowed with fchmod right after they are created (Create,
// OpenReadWrite, ReuseForWrite), before anything is written to them; a
// Lock file is narrowed by name on the operating system's filesystem.
// Files without a descriptor (vfs.NewMem) are left as they are. Hard links
// share their source's mode, which this package set when it created it.
package privfs

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Modes of what a wrapped filesystem creates.
const (
	DirMode  os.FileMode = 0o700
	FileMode os.FileMode = 0o600
)

// Wrap returns fs creating directories DirMode and files FileMode. Wrapping
// a wrapped filesystem returns it unchanged; nil means vfs.Default.
func Wrap(fs vfs.FS) vfs.FS {
	if fs == nil {
		fs = vfs.Default
	}
	if _, ok := fs.(*privateFS); ok {
		return fs
	}
	return &privateFS{FS: fs, onDisk: vfs.Root(fs) == vfs.Default}
}

type privateFS struct {
	vfs.FS
	// onDisk: the wrapped filesystem is the operating system's, where a
	// file can be narrowed by name.
	onDisk bool
}

func (p *privateFS) Unwrap() vfs.FS { return p.FS }

func (p *privateFS) MkdirAll(dir string, _ os.FileMode) error {
	return p.FS.MkdirAll(dir, DirMode)
}

func (p *privateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return restrict(name)(p.FS.Create(name, c))
}

func (p *privateFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return restrict(name)(p.FS.OpenReadWrite(name, c, opts...))
}

func (p *privateFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return restrict(newname)(p.FS.ReuseForWrite(oldname, newname, c))
}

func (p *privateFS) Lock(name string) (io.Closer, error) {
	l, err := p.FS.Lock(name)
	if err != nil || !p.onDisk {
		return l, err
	}
	if err := os.Chmod(name, FileMode); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("privfs: make %s private: %w", name, err)
	}
	return l, nil
}

// restrict narrows the mode of a file just opened for writing.
func restrict(name string) func(vfs.File, error) (vfs.File, error) {
	return func(f vfs.File, err error) (vfs.File, error) {
		if err != nil {
			return f, err
		}
		fd := f.Fd()
		if fd == vfs.InvalidFd {
			return f, nil
		}
		if err := syscall.Fchmod(int(fd), uint32(FileMode)); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("privfs: make %s private: %w", name, err)
		}
		return f, nil
	}
}
