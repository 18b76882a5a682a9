package snapshot

import (
	"errors"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// scratchFS is the file system Pebble gets: it skips every sync. The live
// directory is scratch (a job always restores it from a checkpoint, or
// starts it empty), so its files never need to be durable; and the files
// Pebble writes or links into a snapshot are synced by the snapshot itself,
// all together once they are in place (syncSnapshot). That replaces a dozen
// fsyncs one after the other per snapshot (flush, OPTIONS, MANIFEST, markers,
// directories) with one round of concurrent ones, which a journaling file
// system commits together.
type scratchFS struct{ vfs.FS }

func (f scratchFS) Unwrap() vfs.FS { return f.FS }

func (f scratchFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return noSync(f.FS.Create(name, c))
}

func (f scratchFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return noSync(f.FS.Open(name, opts...))
}

func (f scratchFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return noSync(f.FS.OpenReadWrite(name, c, opts...))
}

func (f scratchFS) OpenDir(name string) (vfs.File, error) { return noSync(f.FS.OpenDir(name)) }

func (f scratchFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return noSync(f.FS.ReuseForWrite(oldname, newname, c))
}

func noSync(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

// noSyncFile is a file whose syncs do nothing.
type noSyncFile struct{ vfs.File }

func (noSyncFile) Sync() error                { return nil }
func (noSyncFile) SyncData() error            { return nil }
func (noSyncFile) SyncTo(int64) (bool, error) { return false, nil }

// syncParallel is how many fsyncs syncSnapshot runs at once (the crash
// tests set 1, for a deterministic order of steps).
var syncParallel = 8

// syncSnapshot fsyncs files and dirs, up to syncParallel at a time, and
// returns every error joined.
func syncSnapshot(fs vfs.FS, files, dirs []string) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, syncParallel)
	run := func(path string, sync func(vfs.FS, string) error) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := sync(fs, path); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	for _, p := range files {
		run(p, syncFile)
	}
	for _, d := range dirs {
		run(d, syncDir)
	}
	wg.Wait()
	return errors.Join(errs...)
}
