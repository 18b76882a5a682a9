package bench

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirstream/weir/integration/verify"
)

func eventForTest() verify.Event {
	return verify.Event{Key: "u17", TS: 1764028800123, Amount: 17, Seq: 42}
}

func testReport() *Report {
	cfg := QuickConfig()
	wls := []workload{
		{name: "ceiling (client consume)", mode: "ceiling"},
		{name: "Q1 keys=1000 exactly-once", mode: "window"},
		{name: "Q1 keys=1000 at-least-once", mode: "window"},
		{name: "Q0 passthrough exactly-once", mode: "passthrough"},
	}
	r := &Report{Date: "2026-01-02T03:04:05Z", Quick: true, Config: reportConfig(cfg)}
	add := func(wl, sys string, tps ...float64) {
		for i, tp := range tps {
			r.Measurements = append(r.Measurements, Measurement{Workload: wl, System: sys, Run: i + 1, Throughput: tp, PeakRSSMiB: tp / 1000})
		}
	}
	add(wls[0].name, SystemCeiling, 1_000_000)
	add(wls[1].name, SystemWeir, 300_000, 500_000, 400_000)
	add(wls[1].name, SystemFlink, 100_000, 100_000, 200_000)
	add(wls[2].name, SystemWeir, 500_000)
	add(wls[2].name, SystemFlink, 125_000)
	add(wls[3].name, SystemWeir, 500_000)
	add(wls[3].name, SystemFlink, 250_000)
	r.Live = []LiveMeasurement{
		{Workload: wls[1].name, System: SystemWeir, Rate: 20_000, Samples: 3000, LatencyP50Ms: 600, LatencyP99Ms: 1100, RecoverySeconds: 2.5, PeakRSSMiB: 55},
		{Workload: wls[1].name, System: SystemFlink, Rate: 20_000, Samples: 3000, LatencyP50Ms: 700, LatencyP99Ms: 1400, RecoverySeconds: 9.25},
	}
	r.summarize(wls, cfg)
	return r
}

func TestSummarize(t *testing.T) {
	r := testReport()
	got := map[[2]string]Summary{}
	for _, s := range r.Summaries {
		got[[2]string{s.Workload, s.System}] = s
	}
	w := got[[2]string{"Q1 keys=1000 exactly-once", SystemWeir}]
	if w.Throughput != 400_000 || w.Runs != 3 || w.VsFlink != 4 || w.VsCeiling != 0.4 {
		t.Errorf("weir EO summary %+v, want median 400000 over 3 runs, 4x Flink, 0.4 of the ceiling", w)
	}
	if w.PeakRSSMiB != 400 || w.RSSVsFlink != 4 {
		t.Errorf("weir EO rss %v (vs flink %v), want the median run's 400 MiB and 4x", w.PeakRSSMiB, w.RSSVsFlink)
	}
	if q0 := got[[2]string{"Q0 passthrough exactly-once", SystemWeir}]; q0.VsFlink != 2 {
		t.Errorf("weir Q0 summary %+v, want 2x Flink", q0)
	}
	if f := got[[2]string{"Q1 keys=1000 exactly-once", SystemFlink}]; f.LatencyP50Ms != 700 || f.LatencyP99Ms != 1400 || f.RecoverySeconds != 9.25 {
		t.Errorf("flink EO summary %+v, want the live run's latency 700/1400 ms and recovery 9.25 s", f)
	}
	if !strings.Contains(strings.Join(r.Skipped, "\n"), "quick mode") {
		t.Errorf("skipped %q does not mention the single run", r.Skipped)
	}
}

func TestMarkdown(t *testing.T) {
	md := testReport().Markdown("chart.png")
	for _, want := range []string{
		"| Q1 keys=1000 exactly-once | weir | 400,000 | 0 | 4.00× | 0.40× |",
		"| Q0 passthrough exactly-once | weir | 500,000 | 0 | 2.00× |",
		"| 600 / 1100 | 55 | 2.50 | 3 |",
		"Q1 keys=1000 on weir -20.0%",
		"![throughput, events/s](chart.png)",
		"quick run",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	r := testReport()
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "2026-01-02T030405Z-quick")
	if r.MarkdownPath != base+".md" {
		t.Errorf("markdown path %q, want %q", r.MarkdownPath, base+".md")
	}
	js, err := os.ReadFile(base + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadReport(base + ".json")
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Markdown("chart.png") != r.Markdown("chart.png") {
		t.Error("a loaded report renders differently from the one written")
	}
	if len(back.Summaries) != len(r.Summaries) || len(back.Measurements) != len(r.Measurements) {
		t.Errorf("json round trip: %d summaries, %d measurements; want %d, %d",
			len(back.Summaries), len(back.Measurements), len(r.Summaries), len(r.Measurements))
	}
	pngData, err := os.ReadFile(base + ".png")
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(pngData))
	if err != nil {
		t.Fatal(err)
	}
	// Throughput: seven bars (ceiling, 2+2 Q1, 2 Q0) in four groups;
	// below it the latency panel (one group), as tall again.
	if w := img.Bounds().Dx(); w != 2*40+7*(44+6)+4*30 {
		t.Errorf("chart width %d", w)
	}
	if h := img.Bounds().Dy(); h != 2*(320+2*40+20) {
		t.Errorf("chart height %d, want two panels", h)
	}
	// The first bar (the ceiling) is grey at its foot.
	if c := img.At(40+15+5, 40+320-5); c != colCeiling {
		t.Errorf("pixel at the ceiling bar's foot is %v, want %v", c, colCeiling)
	}
}

func TestChartLabel(t *testing.T) {
	for in, want := range map[string]string{
		"ceiling (client consume)":                           "CEIL",
		"Q1 keys=1000 exactly-once":                          "Q1 1K EO",
		"Q1 keys=1000000 at-least-once":                      "Q1 1M ALO",
		"Q1 keys=1500 at-least-once":                         "Q1 1500 ALO",
		"Q0 passthrough exactly-once":                        "Q0 EO",
		"sliding 10s/5s keys=1000 exactly-once":              "SLIDE 1K EO",
		"session gap=1s keys=1000 exactly-once":              "SESS 1K EO",
		"interval join -100ms..300ms keys=1000 exactly-once": "JOIN 1K EO",
		"dataflow keys=1000 exactly-once":                    "FLOW 1K EO",
	} {
		if got := chartLabel(in); got != want {
			t.Errorf("chartLabel(%q) = %q, want %q", in, got, want)
		}
		for _, r := range want {
			if _, ok := glyphs[r]; !ok && r != ' ' {
				t.Errorf("label %q: no glyph for %q", want, r)
			}
		}
	}
}

func TestThousandsAndShortRate(t *testing.T) {
	for x, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567"} {
		if got := thousands(x); got != want {
			t.Errorf("thousands(%v) = %q, want %q", x, got, want)
		}
	}
	for x, want := range map[float64]string{950: "950", 12345: "12.3k", 1250000: "1.25M"} {
		if got := shortRate(x); got != want {
			t.Errorf("shortRate(%v) = %q, want %q", x, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := QuickConfig()
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "Self") {
		t.Errorf("config without Self: %v", err)
	}
	c.Self, c.RepoRoot = "/bin/true", "/"
	if err := c.validate(); err != nil {
		t.Errorf("quick config: %v", err)
	}
	c.Keys = []int{0}
	if err := c.validate(); err == nil {
		t.Error("key count 0 accepted")
	}
}

func TestMarkdownComparedWorkloads(t *testing.T) {
	cfg := QuickConfig()
	cfg.Only = []string{"sliding", "interval"}
	cfg.IntervalJoin = false
	wls := workloads(cfg)
	r := &Report{Date: "2026-01-02T03:04:05Z", Quick: true, Config: reportConfig(cfg)}
	r.Check = []CheckResult{
		{Workload: wls[0].name, System: SystemWeir, OK: true, Verdict: "OK: 12 records equal"},
		{Workload: wls[0].name, System: SystemFlink, OK: true, Verdict: "OK: 12 records equal"},
		{Workload: wls[0].name, System: SystemsCompared, OK: true, Verdict: "OK: 12 records equal"},
		{Workload: wls[1].name, System: SystemsCompared, OK: false, Verdict: "FAILED: record 3 (sorted by l, r) differs: weir {...}, flink {...}"},
	}
	r.Measurements = []Measurement{
		{Workload: wls[0].name, System: SystemWeir, Run: 1, Throughput: 300_000},
		{Workload: wls[0].name, System: SystemFlink, Run: 1, Throughput: 100_000},
	}
	r.summarize(wls, cfg)
	md := r.Markdown("chart.png")
	for _, want := range []string{
		"- sliding 10s/5s keys=1000 exactly-once, weir vs flink: `OK: 12 records equal`",
		"- interval join -100ms..300ms keys=1000 exactly-once, weir vs flink: `FAILED: record 3 (sorted by l, r)",
		"| sliding 10s/5s keys=1000 exactly-once | weir | 300,000 | 0 | 3.00× |",
		"10s event-time windows starting every 5s",
		"a.ts-100ms <= b.ts <= a.ts+300ms",
		"interval join -100ms..300ms keys=1000 exactly-once: in the equal-work check only, not timed",
		"workloads not in -only sliding,interval: not run",
		"input is 100000 events over 40s of event time):",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestMarkdownDataflow(t *testing.T) {
	cfg := QuickConfig()
	cfg.Only = []string{"dataflow"}
	wls := workloads(cfg)
	r := &Report{Date: "2026-01-02T03:04:05Z", Quick: true, Config: reportConfig(cfg)}
	r.Check = []CheckResult{
		{Workload: wls[0].name, System: SystemWeir, OK: true, Verdict: "OK: 50000 records equal"},
		{Workload: wls[0].name, System: SystemsCompared, OK: true, Verdict: "OK: 50000 records equal"},
	}
	r.Measurements = []Measurement{
		{Workload: wls[0].name, System: SystemWeir, Run: 1, Throughput: 200_000},
		{Workload: wls[0].name, System: SystemFlink, Run: 1, Throughput: 400_000},
	}
	r.summarize(wls, cfg)
	md := r.Markdown("chart.png")
	for _, want := range []string{
		"- dataflow keys=1000 exactly-once, weir vs flink: `OK: 50000 records equal`",
		"| dataflow keys=1000 exactly-once | weir | 200,000 | 0 | 0.50× |",
		"filter (amount > 50, about half the events) → map",
		"a KeyedProcessFunction with a ValueState",
		"latency and recovery of dataflow keys=1000 exactly-once: not measured",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
