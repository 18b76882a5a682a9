package snapshot

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

var benchKeys = flag.String("keys", "10000,1000000",
	"comma-separated numbers of keys of window state for BenchmarkCheckpoint (e.g. -keys=10000000)")

// BenchmarkCheckpoint measures one incremental checkpoint of a task's store on
// the real filesystem: N keys of window state are loaded and checkpointed
// once, then each iteration changes 1% of the keys and takes a checkpoint
// (Snapshot, Wait, WriteMetadata). It reports
//
//	pause-ms     the synchronous part (Store.Snapshot), what processing sees
//	capture-ms   from Snapshot until writes go to the database again
//	total-ms     from Snapshot until the metadata is durable
//	new-bytes    bytes of files new in the checkpoint (Handle.NewBytes)
//	ckpt-bytes   total size of the checkpoint's files (mostly hard links)
func BenchmarkCheckpoint(b *testing.B) {
	for _, f := range strings.Split(*benchKeys, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 100 {
			b.Fatalf("bad -keys entry %q: need integers ≥ 100", f)
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) { benchCheckpoint(b, n) })
	}
}

// windowKey is a key group (2 bytes), then a window end and a key id.
func windowKey(i int) []byte {
	k := make([]byte, 18)
	binary.BigEndian.PutUint16(k, uint16(i%128))
	binary.BigEndian.PutUint64(k[2:], 1_700_000_000_000)
	binary.BigEndian.PutUint64(k[10:], uint64(i))
	return k
}

// windowValue is an aggregate: count, sum, min, max.
func windowValue(i, gen int) []byte {
	v := make([]byte, 32)
	for j := range 4 {
		binary.BigEndian.PutUint64(v[8*j:], uint64(i*7+gen*13+j))
	}
	return v
}

func benchCheckpoint(b *testing.B, n int) {
	dir := b.TempDir()
	fs := vfs.Default
	opts := StoreOptions{Tune: func(o *pebble.Options) { o.Logger = testLogger{b} }}
	s, err := OpenStore(fs, filepath.Join(dir, "live"), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}()
	root := filepath.Join(dir, "ckpt")
	write := func(keys func(yield func(int) bool), gen int) {
		batch := s.NewBatch()
		defer batch.Close()
		count := 0
		for i := range keys {
			if err := batch.Set(windowKey(i), windowValue(i, gen)); err != nil {
				b.Fatal(err)
			}
			if count++; count%10000 == 0 {
				if err := batch.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := batch.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var id uint64
	checkpoint := func() (pause, capture, total time.Duration, h Handle) {
		id++
		start := time.Now()
		p, err := s.Snapshot(TaskDir(fs, root, id, "window-1"), []byte("offsets"))
		pause = time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		captured := make(chan time.Duration, 1)
		go func() {
			<-p.Captured()
			captured <- time.Since(start)
		}()
		h, err = p.Wait(ctx)
		if err != nil {
			b.Fatal(err)
		}
		m := Metadata{JobName: "bench", ID: id, Time: start, Tasks: map[string]Handle{"window-1": h}}
		if err := WriteMetadata(fs, root, m); err != nil {
			b.Fatal(err)
		}
		total = time.Since(start)
		return pause, <-captured, total, h
	}

	write(func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	}, 0)
	_, _, first, h0 := checkpoint()
	b.Logf("keys=%d: initial checkpoint %.1f ms, %d bytes", n, ms(first), h0.Size())

	rng := newRand(1)
	var pause, capture, total time.Duration
	var newBytes, size int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		write(func(yield func(int) bool) {
			for range n / 100 {
				if !yield(rng.IntN(n)) {
					return
				}
			}
		}, i+1)
		b.StartTimer()
		p, c, t, h := checkpoint()
		pause += p
		capture += c
		total += t
		newBytes += h.NewBytes
		size += h.Size()
		b.StopTimer()
		if err := Retain(fs, root, 2); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	per := float64(b.N)
	b.ReportMetric(ms(pause)/per, "pause-ms")
	b.ReportMetric(ms(capture)/per, "capture-ms")
	b.ReportMetric(ms(total)/per, "total-ms")
	b.ReportMetric(float64(newBytes)/per, "new-bytes")
	b.ReportMetric(float64(size)/per, "ckpt-bytes")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
