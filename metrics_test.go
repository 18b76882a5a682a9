package weir

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsDocumented: every metric a job describes is named weir_...,
// and docs/metrics.md and the README list it.
func TestMetricsDocumented(t *testing.T) {
	reg := prometheus.NewRegistry()
	job, err := NewJob(JobSpec{Name: "docs", Brokers: "127.0.0.1:9092", Kind: KindPassthrough,
		Source: SourceSpec{Topic: "in"}, Sink: SinkSpec{Topic: "out"}}, WithMetricsRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc, 100)
	(&collector{o: job.obs, descs: newJobDescs(prometheus.Labels{"job": "docs"})}).Describe(ch)
	close(ch)
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	var names []string
	for d := range ch {
		m := name.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		names = append(names, m[1])
	}
	if len(names) < 30 {
		t.Fatalf("%d metrics described: %v", len(names), names)
	}
	for _, path := range []string{"docs/metrics.md", "README.md"} {
		doc, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if !strings.HasPrefix(n, "weir_") {
				t.Errorf("metric %s lacks the weir_ prefix", n)
			}
			if !strings.Contains(string(doc), "`"+n+"`") {
				t.Errorf("%s does not list `%s`", path, n)
			}
		}
	}
}
