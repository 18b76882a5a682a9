package actors

import (
	"flag"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/operator/window"
	"github.com/weirstream/weir/snapshot"
)

var benchKeys = flag.String("bench-keys", "10000,1000000", "comma-separated key counts for BenchmarkWindowCheckpoint (add 10000000 for the 10^7 figure)")

type quietLog struct{}

func (quietLog) Infof(string, ...any)  {}
func (quietLog) Errorf(string, ...any) {}
func (quietLog) Fatalf(f string, a ...any) {
	panic(fmt.Sprintf(f, a...))
}

// BenchmarkWindowCheckpoint measures a window task's checkpoint with N keys
// of window state when 1% of the keys changed since the previous one:
//
//	pause-ms      the time processing stops: Capture encodes the changed
//	              entries (those stamped with the epoch it ends)
//	total-ms      until the snapshot is durable (state written, Pebble
//	              checkpoint, checksums) — off the data path
//	new-bytes     bytes the checkpoint adds on disk (new files)
//	entries       changed entries written
//
//	go test ./actors -run XXX -bench WindowCheckpoint -benchtime 5x -bench-keys 10000,1000000,10000000
func BenchmarkWindowCheckpoint(b *testing.B) {
	for _, f := range strings.Split(*benchKeys, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 100 {
			b.Fatalf("-bench-keys %q: want counts >= 100", f)
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) { benchWindowCheckpoint(b, n) })
	}
}

func benchWindowCheckpoint(b *testing.B, n int) {
	dir := b.TempDir()
	store, err := snapshot.OpenStore(vfs.Default, dir+"/live", snapshot.StoreOptions{Tune: func(o *pebble.Options) { o.Logger = quietLog{} }})
	if err != nil {
		b.Fatal(err)
	}
	cp := &Checkpointing{FS: vfs.Default, Root: dir + "/ckpt", Store: store}
	defer store.Close()
	w := window.NewTumbling(10_000, true)
	// One open window holding n keys.
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
		w.Add(keys[i], 5_000, 1)
	}
	id := uint64(1)
	entries, op := w.Capture()
	if _, err := cp.write("window-0", id, entries, op); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	changed := n / 100
	var pause, total time.Duration
	var newBytes int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := 0; j < changed; j++ {
			w.Add(keys[rng.Intn(n)], 5_000, 2)
		}
		id++
		b.StartTimer()
		t0 := time.Now()
		entries, op := w.Capture()
		t1 := time.Now()
		h, err := cp.write("window-0", id, entries, op)
		t2 := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		pause += t1.Sub(t0)
		total += t2.Sub(t0)
		newBytes += h.NewBytes
	}
	b.ReportMetric(float64(pause.Microseconds())/1000/float64(b.N), "pause-ms")
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "total-ms")
	b.ReportMetric(float64(newBytes)/float64(b.N), "new-bytes")
	b.ReportMetric(float64(changed), "changed-keys")
}
