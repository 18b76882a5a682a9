package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// brokerState lists the topics and consumer groups on brokers.
func brokerState(t *testing.T, brokers string) (topics, groups []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	md, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range md.Topics {
		topics = append(topics, *tp.Topic)
	}
	lg, err := kmsg.NewPtrListGroupsRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range lg.Groups {
		groups = append(groups, g.Group)
	}
	slices.Sort(topics)
	slices.Sort(groups)
	return topics, groups
}

// TestValidateGood: a good job file passes with a summary on stdout, and
// nothing is written: checkpoint.dir stays absent, no topic (progress
// topic included) or consumer group appears on the broker.
func TestValidateGood(t *testing.T) {
	brokers := startKfake(t)
	topicsBefore, groupsBefore := brokerState(t, brokers)
	for _, tc := range []struct {
		name  string
		extra string
		want  []string
	}{
		{"at-least-once", "checkpoint:\n  interval: 1s\n  dir: DIR\n", []string{
			"ok: job t (kind window, parallelism 1, delivery at-least-once) on " + brokers + " (1 broker)",
			"source: in, 2 partitions [0 1], start earliest",
			"sink: out, 2 partitions",
			"checkpoints: every 1s (exactly-once) in DIR: does not exist yet; run creates it"}},
		{"exactly-once bounded", "delivery: exactly-once\ncheckpoint:\n  interval: 500ms\n  dir: DIR\n", []string{
			"delivery exactly-once",
			"sink: out, 2 partitions; progress topic out.weir-progress is created (compacted) at start",
			"checkpoints: every 500ms"}},
		{"no checkpoints", "", []string{"checkpoints: off"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "nested", "ckpt")
			job := writeJobFile(t, brokers, strings.ReplaceAll(tc.extra, "DIR", dir))
			r := runEngine(t, "validate", "--config", job)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q; stdout:\n%s", r.code, r.stderr, r.stdout)
			}
			for _, w := range tc.want {
				if w = strings.ReplaceAll(w, "DIR", dir); !strings.Contains(r.stdout, w) {
					t.Errorf("stdout does not contain %q:\n%s", w, r.stdout)
				}
			}
			if _, err := os.Stat(filepath.Dir(dir)); !os.IsNotExist(err) {
				t.Errorf("validate created %s (stat: %v)", filepath.Dir(dir), err)
			}
		})
	}
	topicsAfter, groupsAfter := brokerState(t, brokers)
	if !slices.Equal(topicsBefore, topicsAfter) || !slices.Equal(groupsBefore, groupsAfter) {
		t.Errorf("validate wrote to the broker: topics %v -> %v, groups %v -> %v", topicsBefore, topicsAfter, groupsBefore, groupsAfter)
	}
}

// TestValidateBad: every kind of bad input is one line on stderr and exit
// 2, and writes nothing.
func TestValidateBad(t *testing.T) {
	brokers := startKfake(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	valid := mustRead(t, writeJobFile(t, brokers, ""))
	notADir := write("file", "x")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"syntax error", []string{"--config", write("syntax.yaml", "name: t\nsource: [in\n")}, []string{"engine validate: job file", "not valid YAML"}},
		{"unknown key", []string{"--config", write("unknown.yaml", strings.Replace(valid, "source:", "sourc:", 1))}, []string{"sourc: unknown key", "did you mean source?"}},
		{"bad value", []string{"--config", write("value.yaml", strings.Replace(valid, "size: 1s", "size: 10x", 1))}, []string{"window.size", `"10x" is not a duration`}},
		{"missing topic", []string{"--config", write("topic.yaml", strings.Replace(valid, "topic: in", "topic: nosuch", 1))}, []string{"engine validate: source.topic:", `"nosuch" does not exist`}},
		{"unreachable broker", []string{"--check-timeout", "1s", "--config", write("closed.yaml", strings.Replace(valid, brokers, closedPort(t), 1))}, []string{"engine validate: brokers: cannot reach", "within 1s"}},
		{"checkpoint.dir not a directory", []string{"--config", write("dir.yaml", valid+"checkpoint:\n  interval: 1s\n  dir: "+notADir+"/sub\n")}, []string{"engine validate: checkpoint.dir", "is not a directory"}},
		{"no config", nil, []string{"engine validate: --config is required"}},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, []string{"no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantBadInput(t, runEngine(t, append([]string{"validate"}, tc.args...)...), tc.want...)
		})
	}
	topics, groups := brokerState(t, brokers)
	if !slices.Equal(topics, []string{"in", "out"}) || len(groups) != 0 {
		t.Errorf("validate wrote to the broker: topics %v, groups %v", topics, groups)
	}
}
