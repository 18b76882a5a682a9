package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/integration/broker"
	"github.com/weirstream/weir/integration/verify"
)

const brokenCheckpointsJob = `name: broken-checkpoints
brokers: %s
source:
  topic: %s
  start:
    mode: earliest
  bounded: latest
key_field: user
timestamp_field: ts
window:
  size: 1s
  out_of_orderness: 200ms
aggregate:
  value_field: amount
sink:
  topic: %s
delivery: exactly-once
checkpoint:
  interval: 50ms
  dir: %s
  retain: 3
`

// TestAllCheckpointsBrokenRealBroker: the exactly-once window job (the
// engine binary) reads the first half of its input and keeps its
// checkpoints; every checkpoint is then damaged (a bit flipped in its
// _metadata) and the second half produced. `engine run` must refuse to start
// fresh: exit 2, one line naming checkpoint.dir, each checkpoint and
// --allow-fresh-start; no record written, every checkpoint still there.
// With --allow-fresh-start the job runs from its start position again.
func TestAllCheckpointsBrokenRealBroker(t *testing.T) {
	bin := engineBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	brokers := broker.Shared().Bootstrap()
	in, out := topic(t, 2), topic(t, 2)
	events, err := verify.Generate(genConfig(seed(t), 2, 6000))
	if err != nil {
		t.Fatal(err)
	}
	half := len(events) / 2
	if err := verify.Produce(ctx, brokers, in, events[:half], 2); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cps := filepath.Join(dir, "checkpoints")
	jobFile := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(jobFile, []byte(fmt.Sprintf(brokenCheckpointsJob, brokers, in, out, cps)), 0o600); err != nil {
		t.Fatal(err)
	}
	engine := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append([]string{"run", "--config", jobFile, "--status-interval", "0"}, args...)...)
		outb, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return string(outb), 0
		case errors.As(err, &exit):
			return string(outb), exit.ExitCode()
		}
		t.Fatalf("engine run: %v\n%s", err, outb)
		return "", 0
	}
	if log, code := engine(); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, tail(log, 3000))
	}
	first, err := verify.ReadResults(ctx, brokers, out, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	metas, err := filepath.Glob(filepath.Join(cps, "chk-*", "_metadata"))
	if err != nil || len(metas) == 0 {
		t.Fatalf("no checkpoint in %s after the first run (%v)", cps, err)
	}
	for _, meta := range metas {
		b, err := os.ReadFile(meta)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x10
		if err := os.WriteFile(meta, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := verify.Produce(ctx, brokers, in, events[half:], 2); err != nil {
		t.Fatal(err)
	}

	log, code := engine()
	if code != 2 {
		t.Fatalf("run over %d damaged checkpoints: exit %d, want 2 (refused)\n%s", len(metas), code, tail(log, 3000))
	}
	var refusal string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "--allow-fresh-start") && strings.Contains(line, cps) {
			refusal = line
		}
	}
	if refusal == "" {
		t.Fatalf("no line names %s and --allow-fresh-start:\n%s", cps, tail(log, 3000))
	}
	for _, meta := range metas {
		if name := filepath.Base(filepath.Dir(meta)); !strings.Contains(refusal, name) {
			t.Errorf("the refusal does not name %s: %s", name, refusal)
		}
		if _, err := os.Stat(meta); err != nil {
			t.Errorf("a damaged checkpoint is gone after the refusal: %v", err)
		}
	}
	t.Logf("refused: %s", refusal)
	after, err := verify.ReadResults(ctx, brokers, out, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(first) {
		t.Fatalf("the refused run changed the output: %d results before, %d after", len(first), len(after))
	}

	// The way out the refusal names: start fresh, discarding them.
	if log, code := engine("--allow-fresh-start"); code != 0 {
		t.Fatalf("run with --allow-fresh-start: exit %d\n%s", code, tail(log, 3000))
	}
	rerun, err := verify.ReadResults(ctx, brokers, out, verify.ReadCommitted)
	if err != nil {
		t.Fatal(err)
	}
	// A fresh start reads the whole input again: every window of it once
	// more after the first run's.
	want := len(first) + len(verify.Expected(events, time.Second))
	if len(rerun) != want {
		t.Fatalf("after the fresh start: %d results, want %d (the first run's %d and all %d windows again)",
			len(rerun), want, len(first), len(verify.Expected(events, time.Second)))
	}
}
