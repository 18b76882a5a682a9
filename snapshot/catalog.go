package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrNoCheckpoint is returned by Latest when root holds no complete,
// intact checkpoint.
var ErrNoCheckpoint = errors.New("snapshot: no complete checkpoint")

// Info describes one checkpoint directory, for `engine checkpoints`.
type Info struct {
	ID  uint64
	Dir string
	// Time, Job and Savepoint come from the metadata (zero if unreadable).
	Time      time.Time
	Job       string
	Savepoint bool
	// Size is the total size of the regular files under Dir that could be
	// read, symbolic links not followed. Files shared with other checkpoints
	// through hard links count in each.
	Size int64
	// Complete is set when the metadata reads and every file it names is
	// present, a regular file, of its recorded size, and, when Verified,
	// of its recorded checksum.
	Complete bool
	// Verified is set when the checksums of the checkpoint's files were
	// checked: by List for the newest complete checkpoint only, by
	// ListVerified for every one.
	Verified bool
	// Err says why a checkpoint is not complete: nil for one whose metadata
	// is simply absent (in progress or aborted), set when it is corrupt or
	// cannot be read.
	Err error
}

// Problem is a checkpoint that Latest skipped, and why.
type Problem struct {
	ID  uint64
	Dir string
	Err error
}

func (p Problem) String() string {
	return fmt.Sprintf("snapshot: checkpoint %d (%s) skipped: %v", p.ID, p.Dir, p.Err)
}

// IDs returns the ids of the chk-<N> entries under root, oldest first,
// without reading them. A missing root holds none.
func IDs(fs vfs.FS, root string) ([]uint64, error) {
	return checkpointIDs(fs, root)
}

// checkpointIDs returns the ids of the chk-<N> directories under root, in
// increasing order. A missing root holds none.
func checkpointIDs(fs vfs.FS, root string) ([]uint64, error) {
	names, err := fs.List(root)
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: list %s: %w", root, err)
	}
	var ids []uint64
	for _, name := range names {
		if id, ok := parseCheckpointName(name); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// List describes every checkpoint under root, oldest first. It reads each
// one's metadata and checks that the files it names are present, regular
// files and of their recorded sizes; only the newest checkpoint that passes
// is verified in full (checksums), as Latest would pick it: if that fails,
// the next newest is, and so on. Older ones are not read (Info.Verified is
// false for them). A checkpoint that cannot be read is listed with Err
// set; only a root that cannot be listed is an error. Nothing is opened
// that is not a regular file, and symbolic links are not followed when
// sizing.
func List(fs vfs.FS, root string) ([]Info, error) {
	return list(context.Background(), fs, root, false)
}

// ListVerified is List verifying every checkpoint in full: it reads every
// byte of every checkpoint and savepoint (engine checkpoints --verify). It
// stops when ctx ends.
func ListVerified(ctx context.Context, fs vfs.FS, root string) ([]Info, error) {
	return list(ctx, fs, root, true)
}

func list(ctx context.Context, fs vfs.FS, root string, all bool) ([]Info, error) {
	ids, err := checkpointIDs(fs, root)
	if err != nil {
		return nil, err
	}
	out := make([]Info, len(ids))
	verified := false // the newest complete checkpoint was verified in full
	for i := len(ids) - 1; i >= 0; i-- {
		id := ids[i]
		in := Info{ID: id, Dir: CheckpointDir(fs, root, id)}
		in.Size = dirSize(fs, in.Dir)
		m, err := readMetadata(fs, root, id)
		switch {
		case errors.Is(err, errNoMetadata):
		case err != nil:
			in.Err = err
		default:
			in.Time, in.Job, in.Savepoint = m.Time, m.JobName, m.Savepoint
			full := all || !verified
			if err := verify(ctx, fs, root, m, full); err != nil {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("snapshot: list %s: %w", root, ctx.Err())
				}
				in.Err = err
			} else {
				in.Complete, in.Verified = true, full
				verified = verified || full
			}
		}
		out[i] = in
	}
	return out, nil
}

// dirSize sums the sizes of the regular files under dir, best effort: what
// cannot be read counts nothing, and symbolic links are not followed (a
// link to / must not walk the file system).
func dirSize(fs vfs.FS, dir string) int64 {
	st, err := lstat(fs, dir)
	if err != nil || !st.IsDir() {
		return 0
	}
	names, err := fs.List(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, name := range names {
		p := fs.PathJoin(dir, name)
		st, err := lstat(fs, p)
		switch {
		case err != nil:
			// Deleted meanwhile, or unreadable.
		case st.IsDir():
			n += dirSize(fs, p)
		case st.Mode().IsRegular():
			n += st.Size()
		}
	}
	return n
}

// lstat is fs.Stat without following a final symbolic link on the
// operating system's filesystem (the only one with links).
func lstat(fs vfs.FS, path string) (os.FileInfo, error) {
	if vfs.Root(fs) == vfs.Default {
		return os.Lstat(path)
	}
	return fs.Stat(path)
}

// Latest returns the metadata of the newest complete checkpoint under root
// whose metadata and files verify (presence, sizes, checksums). Newer
// checkpoints that are incomplete, torn or corrupt are skipped and returned as
// problems: the caller reports them loudly. A checkpoint of another job or
// another graph fingerprint is refused with an error. With no usable
// checkpoint the error wraps ErrNoCheckpoint.
//
// Only the candidates are read: from the newest down to the first that
// verifies; older checkpoints are not looked at. When ctx ends the search
// stops with an error wrapping ctx's.
func Latest(ctx context.Context, fs vfs.FS, root, job, fingerprint string) (Metadata, []Problem, error) {
	return LatestAccepted(ctx, fs, root, job, func(m Metadata) error {
		if m.GraphFingerprint != fingerprint {
			return fmt.Errorf(
				"snapshot: checkpoint %d in %s was taken with graph fingerprint %q, not %q (the job's operator graph changed)",
				m.ID, root, m.GraphFingerprint, fingerprint)
		}
		return nil
	})
}

// LatestAccepted is Latest with the graph check left to accept: a
// checkpoint of the job that accept refuses ends the search with accept's
// error.
func LatestAccepted(ctx context.Context, fs vfs.FS, root, job string, accept func(Metadata) error) (Metadata, []Problem, error) {
	ids, err := checkpointIDs(fs, root)
	if err != nil {
		return Metadata{}, nil, err
	}
	var problems []Problem
	for i := len(ids) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return Metadata{}, problems, fmt.Errorf("snapshot: look for a checkpoint in %s: %w", root, err)
		}
		id := ids[i]
		dir := CheckpointDir(fs, root, id)
		m, err := readMetadata(fs, root, id)
		if err != nil {
			problems = append(problems, Problem{ID: id, Dir: dir, Err: err})
			continue
		}
		if m.JobName != job {
			return Metadata{}, problems, fmt.Errorf("snapshot: checkpoint %d in %s belongs to job %q, not %q",
				id, root, m.JobName, job)
		}
		if err := accept(m); err != nil {
			return Metadata{}, problems, err
		}
		if err := verify(ctx, fs, root, m, true); err != nil {
			if ctx.Err() != nil {
				return Metadata{}, problems, fmt.Errorf("snapshot: verify checkpoint %d in %s: %w", id, root, ctx.Err())
			}
			problems = append(problems, Problem{ID: id, Dir: dir, Err: err})
			continue
		}
		return m, problems, nil
	}
	return Metadata{}, problems, fmt.Errorf("%w in %s (%d skipped)", ErrNoCheckpoint, root, len(problems))
}

// Retain deletes what is no longer needed under root, keeping the newest keep
// (≥ 1) complete checkpoints:
//   - complete checkpoints older than the newest keep complete ones;
//   - incomplete or corrupt checkpoints older than the newest complete one.
//
// Savepoints are never deleted and do not count towards keep. Here "complete"
// means the metadata verifies and every file is present, a regular file,
// with its size (checksums are left to Latest; see Check). Nothing is
// deleted while no complete checkpoint is newer. A checkpoint is deleted by
// removing its _metadata first (so a crash mid-deletion leaves an
// incomplete checkpoint, never a complete one with files missing), then its
// directory. Newer checkpoints hold their own hard links to shared
// sstables, so deleting an older one never breaks them.
//
// Retain reads every checkpoint's metadata; the files of those beyond the
// newest keep complete ones are not looked at (they go unless savepoints).
// It may run on its own goroutine while checkpoints are taken: it never
// deletes a checkpoint newer than the newest complete one it saw.
func Retain(fs vfs.FS, root string, keep int) error {
	if keep < 1 {
		return fmt.Errorf("snapshot: retain in %s: keep must be at least 1, not %d", root, keep)
	}
	ids, err := checkpointIDs(fs, root)
	if err != nil {
		return err
	}
	var errs []error
	kept := 0
	newestComplete := false
	for i := len(ids) - 1; i >= 0; i-- {
		id := ids[i]
		m, err := readMetadata(fs, root, id)
		hasMeta := err == nil
		// Whether it is complete only matters while it may be kept or may
		// be the newest complete one.
		complete := hasMeta && (!newestComplete || kept < keep) &&
			verify(context.Background(), fs, root, m, false) == nil
		switch {
		case hasMeta && m.Savepoint:
			// Never deleted, never counted.
			newestComplete = newestComplete || complete
			continue
		case complete && kept < keep:
			kept++
			newestComplete = true
			continue
		case !newestComplete:
			// Newer than every complete checkpoint: possibly in progress.
			continue
		}
		if err := deleteCheckpoint(fs, root, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteCheckpoint removes checkpoint id: its metadata first, durably, then
// the rest. A chk-<N> entry that is not a directory has no metadata: it is
// removed.
func deleteCheckpoint(fs vfs.FS, root string, id uint64) error {
	dir := CheckpointDir(fs, root, id)
	meta := fs.PathJoin(dir, metadataName)
	if err := fs.Remove(meta); err == nil {
		if err := syncDir(fs, dir); err != nil {
			return fmt.Errorf("snapshot: delete checkpoint %d: %w", id, err)
		}
	} else if !isNotExist(err) && !errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("snapshot: delete checkpoint %d: remove %s: %w", id, meta, err)
	}
	if err := fs.RemoveAll(dir); err != nil {
		return fmt.Errorf("snapshot: delete checkpoint %d: remove %s: %w", id, dir, err)
	}
	if err := syncDir(fs, root); err != nil {
		return fmt.Errorf("snapshot: delete checkpoint %d: %w", id, err)
	}
	return nil
}
