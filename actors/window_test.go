package actors

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/snapshot"
)

// TestWindowCaptureIsPointInTime: captured entries are encoded late (as the
// snapshot worker does, while processing goes on) and must still hold the
// values as of the capture. Applying every capture in order must give the
// window's state at the last capture — what a restore would load.
func TestWindowCaptureIsPointInTime(t *testing.T) {
	rng := testSeed(t)
	store, err := snapshot.OpenStore(vfs.NewMem(), "/live", snapshot.StoreOptions{Tune: func(o *pebble.Options) { o.Logger = quietLog{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	w := NewWindow(WindowConfig{Task: "window-0", Inputs: 1, SizeMillis: 100, Checkpoint: &Checkpointing{Store: store}})().(*Window)
	applied := map[string][2]float64{}
	type capture struct {
		encode func() ([]StateEntry, error)
		want   map[string][2]float64
	}
	var lagging []capture
	state := func() map[string][2]float64 {
		m := map[string][2]float64{}
		for start, keys := range w.windows {
			for k, a := range keys {
				m[fmt.Sprintf("%d/%s", start, k)] = [2]float64{float64(a.count), a.sum}
			}
		}
		return m
	}
	apply := func(c capture) {
		entries, _ := c.encode()
		for _, e := range entries {
			start := int64(binary.BigEndian.Uint64(e.Key[2:10]))
			k := fmt.Sprintf("%d/%s", start, e.Key[10:])
			if e.Value == nil {
				delete(applied, k)
				continue
			}
			applied[k] = [2]float64{float64(binary.BigEndian.Uint64(e.Value[:8])), math.Float64frombits(binary.BigEndian.Uint64(e.Value[8:]))}
		}
		if len(applied) != len(c.want) {
			t.Fatalf("after applying a capture: %d entries, want %d", len(applied), len(c.want))
		}
		for k, v := range c.want {
			if applied[k] != v {
				t.Fatalf("entry %s: %v, want %v as of its capture", k, applied[k], v)
			}
		}
	}
	for step := 0; step < 3000; step++ {
		switch rng.Intn(10) {
		case 0: // capture; the worker encodes it later
			enc, _ := w.captureState()
			lagging = append(lagging, capture{encode: enc, want: state()})
		case 1: // the worker catches up with the oldest capture
			if len(lagging) > 0 {
				apply(lagging[0])
				lagging = lagging[1:]
			}
		default:
			recs := make([]Record, 1+rng.Intn(20))
			for i := range recs {
				recs[i] = Record{Key: fmt.Sprintf("k%d", rng.Intn(30)), TS: int64(rng.Intn(500)), Val: float64(rng.Intn(10))}
			}
			w.add(recs)
		}
	}
	for _, c := range lagging {
		apply(c)
	}
}
