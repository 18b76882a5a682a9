package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/internal/privfs"
)

// Names in a job's checkpoint root.
const (
	chkPrefix       = "chk-"
	metadataName    = "_metadata"
	metadataTmpName = "_metadata.tmp"
	// metadataVersion is the Metadata.Version this build writes and reads.
	metadataVersion = 1
	// maxMetadataBytes bounds a _metadata file.
	maxMetadataBytes = 64 << 20
)

// Metadata is the content of chk-<ID>/_metadata: what checkpoint ID consists
// of. Its durable presence is the moment the checkpoint exists.
type Metadata struct {
	// Version is the format version; WriteMetadata sets it.
	Version int `json:"version"`
	// JobName and GraphFingerprint identify the job and the shape of its
	// operator graph; Latest refuses checkpoints of another job or graph.
	JobName          string `json:"jobName"`
	GraphFingerprint string `json:"graphFingerprint"`
	// ID is the checkpoint number N; the directory is chk-<N>.
	ID uint64 `json:"id"`
	// Time is when the coordinator triggered the checkpoint.
	Time time.Time `json:"time"`
	// Savepoint marks a checkpoint that retention never deletes.
	Savepoint bool `json:"savepoint,omitempty"`
	// Tasks holds each task's snapshot handle, by task id.
	Tasks map[string]Handle `json:"tasks"`
	// Properties holds free-form facts the coordinator wants to keep.
	Properties map[string]string `json:"properties,omitempty"`
}

// CheckpointDir returns the directory of checkpoint id under root.
func CheckpointDir(fs vfs.FS, root string, id uint64) string {
	return fs.PathJoin(root, chkPrefix+strconv.FormatUint(id, 10))
}

// TaskDir returns the directory of task's snapshot in checkpoint id under
// root: the dest to pass to Store.Snapshot.
func TaskDir(fs vfs.FS, root string, id uint64, task string) string {
	return fs.PathJoin(CheckpointDir(fs, root, id), task)
}

// parseCheckpointName returns N for a directory named chk-<N> (canonical
// decimal), and false for any other name.
func parseCheckpointName(name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, chkPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, false
	}
	return n, true
}

// ValidateTask reports whether task is usable as a task id: a single path
// element of letters, digits, '.', '_' and '-', not starting with '.' or '_'
// (names starting with '_' are reserved for the checkpoint's own files).
func ValidateTask(task string) error {
	if task == "" || len(task) > 200 {
		return fmt.Errorf("snapshot: task id %q must be 1 to 200 characters", task)
	}
	if task[0] == '.' || task[0] == '_' {
		return fmt.Errorf("snapshot: task id %q must not start with '.' or '_'", task)
	}
	for _, r := range task {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("snapshot: task id %q may only hold letters, digits, '.', '_' and '-'", task)
		}
	}
	return nil
}

// validateFileName checks a FileInfo.Name read from metadata.
func validateFileName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") {
		return fmt.Errorf("bad file name %q", name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("bad file name %q", name)
		}
	}
	return nil
}

// validate checks the parts of m that WriteMetadata and decoding rely on.
func (m *Metadata) validate() error {
	if m.JobName == "" {
		return errors.New("empty job name")
	}
	for task, h := range m.Tasks {
		if err := ValidateTask(task); err != nil {
			return err
		}
		seen := make(map[string]bool, len(h.Files))
		for _, f := range h.Files {
			if err := validateFileName(f.Name); err != nil {
				return fmt.Errorf("task %s: %w", task, err)
			}
			if seen[f.Name] {
				return fmt.Errorf("task %s: file %s listed twice", task, f.Name)
			}
			seen[f.Name] = true
			if f.Size < 0 {
				return fmt.Errorf("task %s: file %s has negative size", task, f.Name)
			}
		}
		if !seen[opStateName] {
			return fmt.Errorf("task %s: handle has no %s file", task, opStateName)
		}
	}
	return nil
}

// filePath returns the path of a handle's file in its task directory.
func filePath(fs vfs.FS, taskDir, name string) string {
	return fs.PathJoin(append([]string{taskDir}, strings.Split(name, "/")...)...)
}

// WriteMetadata makes checkpoint m.ID complete: it checks that every file of
// every task is present with its recorded size, then writes
// chk-<ID>/_metadata through a temporary file, fsync, rename and an fsync of
// the directory. It refuses to overwrite the metadata of a checkpoint. The
// directories it creates are 0700 and the file 0600 (see internal/privfs).
func WriteMetadata(fs vfs.FS, root string, m Metadata) error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("snapshot: write metadata of checkpoint %d: %w", m.ID, err)
	}
	m.Version = metadataVersion
	fs = privfs.Wrap(fs)
	dir := CheckpointDir(fs, root, m.ID)
	final := fs.PathJoin(dir, metadataName)
	if _, err := fs.Stat(final); err == nil {
		return fmt.Errorf("snapshot: write metadata of checkpoint %d: %s already exists", m.ID, final)
	} else if !isNotExist(err) {
		return fmt.Errorf("snapshot: write metadata of checkpoint %d: %w", m.ID, err)
	}
	for _, task := range sortedTasks(m.Tasks) {
		if err := verifyHandle(context.Background(), fs, TaskDir(fs, root, m.ID, task), m.Tasks[task], false); err != nil {
			return fmt.Errorf("snapshot: write metadata of checkpoint %d: task %s: %w", m.ID, task, err)
		}
	}
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("snapshot: write metadata of checkpoint %d: encode: %w", m.ID, err)
	}
	// The directory's entry in root is synced while the metadata file is
	// written and synced (the tasks' snapshots created the directory);
	// both are durable before the rename.
	mkdir := make(chan error, 1)
	if _, err := fs.Stat(dir); err == nil && syncParallel > 1 {
		go func() { mkdir <- mkdirAllSync(fs, dir) }()
	} else if err := mkdirAllSync(fs, dir); err != nil {
		return fmt.Errorf("snapshot: write metadata of checkpoint %d: %w", m.ID, err)
	} else {
		mkdir <- nil
	}
	tmp := fs.PathJoin(dir, metadataTmpName)
	werr := fs.Remove(tmp)
	if werr != nil && !isNotExist(werr) {
		werr = fmt.Errorf("remove stale %s: %w", tmp, werr)
	} else {
		werr = writeFileSync(fs, tmp, encodeFrame(frameMetadata, body))
	}
	if err := errors.Join(<-mkdir, werr); err != nil {
		return fmt.Errorf("snapshot: write metadata of checkpoint %d: %w", m.ID, err)
	}
	if err := fs.Rename(tmp, final); err != nil {
		return fmt.Errorf("snapshot: write metadata of checkpoint %d: rename %s: %w", m.ID, tmp, err)
	}
	if err := syncDir(fs, dir); err != nil {
		// Whether the rename is durable is unknown. Withdraw it, so that this
		// process never sees checkpoint m.ID complete after reporting that it
		// failed. (If a crash keeps the rename anyway, the checkpoint is
		// complete and verified: restoring from it is safe, see doc.go.)
		if rerr := fs.Remove(final); rerr == nil {
			_ = syncDir(fs, dir)
		} else {
			err = errors.Join(err, fmt.Errorf("withdraw %s: %w", final, rerr))
		}
		return fmt.Errorf("snapshot: write metadata of checkpoint %d: %w", m.ID, err)
	}
	return nil
}

// errNoMetadata marks a checkpoint directory without _metadata.
var errNoMetadata = ErrIncomplete

// ErrIncomplete is the Problem of a checkpoint without _metadata: it was
// being written, was aborted, or was torn by a crash. That is normal after
// a stop and is not corruption.
var ErrIncomplete = errors.New("no _metadata: incomplete (being written, aborted, or torn by a crash)")

// ReadMetadata reads and checks the metadata of checkpoint id under root. It
// does not verify the task files (see Verify).
func ReadMetadata(fs vfs.FS, root string, id uint64) (Metadata, error) {
	m, err := readMetadata(fs, root, id)
	if err != nil {
		return Metadata{}, fmt.Errorf("snapshot: checkpoint %d in %s: %w", id, root, err)
	}
	return m, nil
}

func readMetadata(fs vfs.FS, root string, id uint64) (Metadata, error) {
	path := fs.PathJoin(CheckpointDir(fs, root, id), metadataName)
	data, err := readFileLimited(fs, path, maxMetadataBytes)
	var notRegular *NotRegularError
	switch {
	case isNotExist(err):
		return Metadata{}, errNoMetadata
	case errors.As(err, &notRegular):
		return Metadata{}, err
	case err != nil:
		return Metadata{}, fmt.Errorf("read %s: %w", path, err)
	}
	body, err := decodeFrame(frameMetadata, data)
	if err != nil {
		return Metadata{}, fmt.Errorf("%s: %w", path, err)
	}
	var m Metadata
	if err := json.Unmarshal(body, &m); err != nil {
		return Metadata{}, fmt.Errorf("%s: decode: %w", path, err)
	}
	if m.Version != metadataVersion {
		return Metadata{}, fmt.Errorf("%s: metadata version %d is not supported (this build reads %d)",
			path, m.Version, metadataVersion)
	}
	if m.ID != id {
		return Metadata{}, fmt.Errorf("%s: metadata is of checkpoint %d (misplaced)", path, m.ID)
	}
	if err := m.validate(); err != nil {
		return Metadata{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Verify checks every file of checkpoint m under root: presence, size and
// checksum. It reads every byte; it stops early when ctx ends.
func Verify(ctx context.Context, fs vfs.FS, root string, m Metadata) error {
	if err := verify(ctx, fs, root, m, true); err != nil {
		return fmt.Errorf("snapshot: checkpoint %d in %s: %w", m.ID, root, err)
	}
	return nil
}

// Check reads the metadata of checkpoint id under root and checks that
// every file it names is present, a regular file, and of its recorded size,
// without reading the files (no checksums: see Verify). It is what List and
// Retain know of a checkpoint older than the newest complete one. An error
// wrapping ErrIncomplete means the checkpoint has no metadata.
func Check(fs vfs.FS, root string, id uint64) (Metadata, error) {
	m, err := readMetadata(fs, root, id)
	if err == nil {
		err = verify(context.Background(), fs, root, m, false)
	}
	if err != nil {
		return Metadata{}, fmt.Errorf("snapshot: checkpoint %d in %s: %w", id, root, err)
	}
	return m, nil
}

// verify checks the files of every task of m: presence, type and size, and
// the checksums too when full is set.
func verify(ctx context.Context, fs vfs.FS, root string, m Metadata, full bool) error {
	for _, task := range sortedTasks(m.Tasks) {
		if err := verifyHandle(ctx, fs, TaskDir(fs, root, m.ID, task), m.Tasks[task], full); err != nil {
			return fmt.Errorf("task %s: %w", task, err)
		}
	}
	return nil
}

// verifyHandle checks the files of h in taskDir: presence, type and size,
// and the checksums too when full is set.
func verifyHandle(ctx context.Context, fs vfs.FS, taskDir string, h Handle, full bool) error {
	for _, f := range h.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		path := filePath(fs, taskDir, f.Name)
		st, err := fs.Stat(path)
		if isNotExist(err) {
			return fmt.Errorf("file %s is missing", f.Name)
		}
		if err != nil {
			return fmt.Errorf("file %s: %w", f.Name, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("file %s: %w", f.Name, &NotRegularError{Path: path, Mode: st.Mode()})
		}
		if st.Size() != f.Size {
			return fmt.Errorf("file %s is %d bytes, expected %d (truncated or overwritten)", f.Name, st.Size(), f.Size)
		}
		if !full {
			continue
		}
		sum, err := checksumFile(ctx, fs, path, f.Size)
		if err != nil {
			return fmt.Errorf("file %s: %w", f.Name, err)
		}
		if sum != f.CRC32C {
			return fmt.Errorf("file %s: crc32c %08x, expected %08x (corrupt)", f.Name, sum, f.CRC32C)
		}
	}
	return nil
}

func sortedTasks(m map[string]Handle) []string {
	out := make([]string, 0, len(m))
	for t := range m {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
