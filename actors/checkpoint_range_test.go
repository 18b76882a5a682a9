package actors

import (
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/operator/window"
	"github.com/weirstream/weir/snapshot"
)

// TestWindowCheckpointDropsFiredWindow: a window's state written by one
// checkpoint is gone from the store after the window fires and the next
// checkpoint writes its range deletions; the open window's state stays.
func TestWindowCheckpointDropsFiredWindow(t *testing.T) {
	dir := t.TempDir()
	store, err := snapshot.OpenStore(vfs.Default, dir+"/live", snapshot.StoreOptions{Tune: func(o *pebble.Options) { o.Logger = quietLog{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cp := &Checkpointing{FS: vfs.Default, Root: dir + "/ckpt", Store: store}
	w := window.NewTumbling(10_000, true)
	for i := range 500 {
		w.Add("user-"+strconv.Itoa(i), 5_000, 1)  // window [0, 10000)
		w.Add("user-"+strconv.Itoa(i), 15_000, 1) // window [10000, 20000)
	}
	windows := func() map[int64]int {
		t.Helper()
		it, err := store.NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		n := map[int64]int{}
		for ok := it.First(); ok; ok = it.Next() {
			n[int64(binary.BigEndian.Uint64(it.Key()[2:10]))]++
		}
		if err := it.Error(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	entries, op := w.Capture()
	if _, err := cp.write("window-0", 1, entries, op); err != nil {
		t.Fatal(err)
	}
	if got := windows(); got[0] != 500 || got[10_000] != 500 || len(got) != 2 {
		t.Fatalf("after checkpoint 1 the store holds %v entries per window start, want 500 of each of 0 and 10000", got)
	}
	fired := 0
	w.Fire(9_999, func(window.Result) { fired++ })
	if fired != 500 {
		t.Fatalf("%d results fired, want 500", fired)
	}
	entries, op = w.Capture()
	if _, err := cp.write("window-0", 2, entries, op); err != nil {
		t.Fatal(err)
	}
	if got := windows(); got[10_000] != 500 || len(got) != 1 {
		t.Fatalf("after the window fired and checkpoint 2 the store holds %v entries per window start, want only 500 of 10000", got)
	}
}
