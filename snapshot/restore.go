package snapshot

import (
	"context"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/internal/privfs"
)

// Restore rebuilds task's live store in liveDir from checkpoint m under root
// and returns the store and the task's operator state.
//
// liveDir is scratch: whatever it holds is removed first. The checkpoint is
// never modified: immutable files (sstables, blob files) are hard-linked (or
// copied where links are impossible), and the files Pebble may append to or
// reuse (MANIFEST, WAL, OPTIONS, markers) are copied. Restore checks the
// presence and size of every file and the checksums of the files it copies;
// the checksums of the linked files are Latest's job (restore only metadata
// that Latest returned). Every file must be a regular file (a named pipe is
// refused, never opened).
//
// Restore stops, with an error wrapping ctx's, when ctx ends: it checks ctx
// between files and while it reads them.
func Restore(ctx context.Context, fs vfs.FS, root string, m Metadata, task, liveDir string, opts StoreOptions) (*Store, []byte, error) {
	if err := ValidateTask(task); err != nil {
		return nil, nil, fmt.Errorf("snapshot: restore: %w", err)
	}
	h, ok := m.Tasks[task]
	if !ok {
		return nil, nil, fmt.Errorf("snapshot: restore: checkpoint %d of job %q has no state for task %s",
			m.ID, m.JobName, task)
	}
	fail := func(err error) (*Store, []byte, error) {
		return nil, nil, fmt.Errorf("snapshot: restore task %s from checkpoint %d in %s: %w", task, m.ID, root, err)
	}
	fs = privfs.Wrap(fs)
	taskDir := TaskDir(fs, root, m.ID, task)
	if err := verifyHandle(ctx, fs, taskDir, h, false); err != nil {
		return fail(err)
	}

	// The operator state, checked twice: the handle's checksum of the whole
	// file, and the frame's own.
	var opState []byte
	for _, f := range h.Files {
		if f.Name != opStateName {
			continue
		}
		path := filePath(fs, taskDir, f.Name)
		data, err := readFileLimited(fs, path, MaxOpStateBytes+frameHeaderMax)
		if err != nil {
			return fail(fmt.Errorf("read %s: %w", path, err))
		}
		if sum := crc32c(data); sum != f.CRC32C {
			return fail(fmt.Errorf("file %s: crc32c %08x, expected %08x (corrupt)", f.Name, sum, f.CRC32C))
		}
		body, err := decodeFrame(frameOpState, data)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", path, err))
		}
		opState = body
	}

	if err := fs.RemoveAll(liveDir); err != nil {
		return fail(fmt.Errorf("clear live directory %s: %w", liveDir, err))
	}
	if err := fs.MkdirAll(liveDir, privfs.DirMode); err != nil {
		return fail(fmt.Errorf("create live directory %s: %w", liveDir, err))
	}
	for _, f := range h.Files {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		name, ok := strings.CutPrefix(f.Name, dbDirName+"/")
		if !ok {
			continue
		}
		if strings.Contains(name, "/") {
			return fail(fmt.Errorf("file %s: nested pebble files are not supported", f.Name))
		}
		src := filePath(fs, taskDir, f.Name)
		dst := fs.PathJoin(liveDir, name)
		if immutableFile(name) {
			if err := vfs.LinkOrCopy(fs, src, dst); err != nil {
				return fail(fmt.Errorf("link %s: %w", src, err))
			}
			continue
		}
		sum, err := checksumFile(ctx, fs, src, f.Size)
		if err != nil {
			return fail(err)
		}
		if sum != f.CRC32C {
			return fail(fmt.Errorf("file %s: crc32c %08x, expected %08x (corrupt)", f.Name, sum, f.CRC32C))
		}
		if err := vfs.Copy(fs, src, dst); err != nil {
			return fail(fmt.Errorf("copy %s: %w", src, err))
		}
	}

	s, err := OpenStore(fs, liveDir, opts)
	if err != nil {
		return fail(err)
	}
	s.mu.Lock()
	s.mu.sums = immutableSums(h)
	s.mu.Unlock()
	return s, opState, nil
}
