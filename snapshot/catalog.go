package snapshot

import (
	"errors"
	"fmt"
	"slices"
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
	// Size is the total size of the files under Dir. Files shared with other
	// checkpoints through hard links count in each.
	Size int64
	// Complete is set when the metadata is present and every file verifies.
	Complete bool
	// Err says why a checkpoint is not complete: nil for one whose metadata
	// is simply absent (in progress or aborted), set when it is corrupt.
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

// List describes every checkpoint under root, oldest first, verifying each
// one's files fully (checksums included).
func List(fs vfs.FS, root string) ([]Info, error) {
	ids, err := checkpointIDs(fs, root)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(ids))
	for _, id := range ids {
		in := Info{ID: id, Dir: CheckpointDir(fs, root, id)}
		size, err := dirSize(fs, in.Dir)
		if err != nil {
			return nil, fmt.Errorf("snapshot: list %s: %w", root, err)
		}
		in.Size = size
		m, err := readMetadata(fs, root, id)
		switch {
		case errors.Is(err, errNoMetadata):
		case err != nil:
			in.Err = err
		default:
			in.Time, in.Job, in.Savepoint = m.Time, m.JobName, m.Savepoint
			if err := verify(fs, root, m); err != nil {
				in.Err = err
			} else {
				in.Complete = true
			}
		}
		out = append(out, in)
	}
	return out, nil
}

// dirSize sums the sizes of the files under dir.
func dirSize(fs vfs.FS, dir string) (int64, error) {
	names, err := fs.List(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, name := range names {
		p := fs.PathJoin(dir, name)
		st, err := fs.Stat(p)
		if isNotExist(err) {
			continue // deleted meanwhile
		}
		if err != nil {
			return 0, err
		}
		if st.IsDir() {
			sub, err := dirSize(fs, p)
			if err != nil {
				return 0, err
			}
			n += sub
			continue
		}
		n += st.Size()
	}
	return n, nil
}

// Latest returns the metadata of the newest complete checkpoint under root
// whose metadata and files verify (presence, sizes, checksums). Newer
// checkpoints that are incomplete, torn or corrupt are skipped and returned as
// problems: the caller reports them loudly. A checkpoint of another job or
// another graph fingerprint is refused with an error. With no usable
// checkpoint the error wraps ErrNoCheckpoint.
func Latest(fs vfs.FS, root, job, fingerprint string) (Metadata, []Problem, error) {
	return LatestAccepted(fs, root, job, func(m Metadata) error {
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
func LatestAccepted(fs vfs.FS, root, job string, accept func(Metadata) error) (Metadata, []Problem, error) {
	ids, err := checkpointIDs(fs, root)
	if err != nil {
		return Metadata{}, nil, err
	}
	var problems []Problem
	for i := len(ids) - 1; i >= 0; i-- {
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
		if err := verify(fs, root, m); err != nil {
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
// means the metadata verifies and every file is present with its size
// (checksums are left to Latest). A checkpoint is deleted by removing its
// _metadata first (so a crash mid-deletion leaves an incomplete checkpoint,
// never a complete one with files missing), then its directory. Newer
// checkpoints hold their own hard links to shared sstables, so deleting an
// older one never breaks them.
func Retain(fs vfs.FS, root string, keep int) error {
	if keep < 1 {
		return fmt.Errorf("snapshot: retain in %s: keep must be at least 1, not %d", root, keep)
	}
	ids, err := checkpointIDs(fs, root)
	if err != nil {
		return err
	}
	type state struct {
		id        uint64
		complete  bool
		savepoint bool
	}
	states := make([]state, len(ids))
	for i, id := range ids {
		st := state{id: id}
		m, err := readMetadata(fs, root, id)
		if err == nil {
			st.savepoint = m.Savepoint
			ok := true
			for _, task := range sortedTasks(m.Tasks) {
				if verifyHandle(fs, TaskDir(fs, root, id, task), m.Tasks[task], false) != nil {
					ok = false
					break
				}
			}
			st.complete = ok
		}
		states[i] = st
	}
	var errs []error
	kept := 0
	newestComplete := false
	for i := len(states) - 1; i >= 0; i-- {
		st := states[i]
		switch {
		case st.savepoint:
			// Never deleted, never counted.
			if st.complete {
				newestComplete = true
			}
			continue
		case st.complete && kept < keep:
			kept++
			newestComplete = true
			continue
		case !newestComplete:
			// Newer than every complete checkpoint: possibly in progress.
			continue
		}
		if err := deleteCheckpoint(fs, root, st.id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteCheckpoint removes checkpoint id: its metadata first, durably, then
// the rest.
func deleteCheckpoint(fs vfs.FS, root string, id uint64) error {
	dir := CheckpointDir(fs, root, id)
	meta := fs.PathJoin(dir, metadataName)
	if err := fs.Remove(meta); err == nil {
		if err := syncDir(fs, dir); err != nil {
			return fmt.Errorf("snapshot: delete checkpoint %d: %w", id, err)
		}
	} else if !isNotExist(err) {
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
