package bench

import (
	"strings"
	"testing"
	"time"
)

func TestParseChildResult(t *testing.T) {
	out := []byte("noise\nFLINKBENCH {\"start_ms\":1,\"first_record_ms\":1000,\"end_ms\":3000,\"records_in\":500,\"results_out\":7,\"cpu_ms_at_first\":10,\"cpu_ms_at_end\":510,\"peak_rss_kib\":2048,\"checkpoint_us\":[1000,3000]}\nmore\n")
	r, err := parseChildResult(out, flinkPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if r.RecordsIn != 500 || r.ResultsOut != 7 || r.FirstRecordMs != 1000 || r.EndMs != 3000 || len(r.CheckpointUs) != 2 || r.PeakRSSKiB != 2048 {
		t.Fatalf("parsed %+v", r)
	}
	m := measurement("w", SystemFlink, 1, r, procUsage{Wall: 4 * time.Second, CPU: 2 * time.Second, MaxRSSKiB: 99999})
	if m.DrainSeconds != 2 || m.Throughput != 250 {
		t.Errorf("drain %v s, throughput %v, want 2 s and 250/s", m.DrainSeconds, m.Throughput)
	}
	if m.CPUSecondsPerMillion != 1000 { // 0.5 s of drain CPU for 500 events
		t.Errorf("cpu per million %v, want 1000", m.CPUSecondsPerMillion)
	}
	if m.PeakRSSMiB != 2 {
		t.Errorf("peak rss %v MiB, want the child's own 2 MiB", m.PeakRSSMiB)
	}
	if m.CheckpointP50Ms != 1 || m.CheckpointP99Ms != 3 {
		t.Errorf("checkpoint p50/p99 %v/%v ms, want 1/3", m.CheckpointP50Ms, m.CheckpointP99Ms)
	}
}

func TestParseChildResultErrors(t *testing.T) {
	for name, c := range map[string]struct{ out, want string }{
		"missing":     {"nothing here\n", "printed no"},
		"bad json":    {"WEIRBENCH {nope\n", "child result"},
		"no first":    {"WEIRBENCH {\"end_ms\":5}\n", "no first record"},
		"end < first": {"WEIRBENCH {\"first_record_ms\":9,\"end_ms\":5}\n", "no first record"},
	} {
		_, err := parseChildResult([]byte(c.out), weirPrefix)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one containing %q", name, err, c.want)
		}
	}
}

func TestVmHWM(t *testing.T) {
	st := []byte("Name:\tweirbench\nVmPeak:\t  900 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n")
	if got := vmHWM(st); got != 12345 {
		t.Errorf("vmHWM = %d, want 12345", got)
	}
	if got := vmHWM([]byte("Name: x\n")); got != 0 {
		t.Errorf("vmHWM without the line = %d, want 0", got)
	}
	if selfPeakRSSKiB() <= 0 {
		t.Errorf("selfPeakRSSKiB() = %d, want > 0 on Linux", selfPeakRSSKiB())
	}
}

func TestAppendEventPads(t *testing.T) {
	e := eventForTest()
	b := appendEvent(nil, e, 100)
	if len(b) != 100 {
		t.Errorf("len %d, want 100: %s", len(b), b)
	}
	if !strings.HasPrefix(string(b), `{"user":"u17","ts":1764028800123,"amount":17,"seq":42,"pad":"`) || !strings.HasSuffix(string(b), `"}`) {
		t.Errorf("event %s", b)
	}
	// A size below the unpadded event gives an empty pad, never a cut.
	if s := string(appendEvent(nil, e, 10)); !strings.HasSuffix(s, `"pad":""}`) {
		t.Errorf("small size: %s", s)
	}
}
