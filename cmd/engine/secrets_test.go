package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/integration/verify"
)

// secretProps are Kafka client properties holding secrets (by name), with
// distinctive values; debug: conf and log_level 7 make librdkafka print
// its whole configuration. None of the values does anything on a
// PLAINTEXT connection, so the job runs on kfake with them.
func secretProps(tag string) (yaml string, values []string) {
	props := [][2]string{
		{"sasl.password", "S3cr3t-sasl-9f1c" + tag},
		{"ssl.key.password", "S3cr3t-sslkey-2b7d" + tag},
		{"ssl.keystore.password", "S3cr3t-keystore-5e3a" + tag},
		{"sasl.oauthbearer.client.secret", "S3cr3t-oidc-8c4e" + tag},
		{"sasl.oauthbearer.token.endpoint.url", "https://S3cr3t-tokenurl-1d9b" + tag + ".example/token"},
	}
	var b strings.Builder
	b.WriteString("kafka:\n  debug: conf\n  log_level: 7\n")
	for _, p := range props {
		b.WriteString("  " + p[0] + ": \"" + p[1] + "\"\n")
		values = append(values, p[1])
	}
	return b.String(), values
}

// noSecrets fails the test if any value is in what.
func noSecrets(t *testing.T, where, what string, values []string) {
	t.Helper()
	for _, v := range values {
		if strings.Contains(what, v) {
			t.Errorf("secret %q is in %s:\n%s", v, where, what)
		}
	}
}

// noSecretsInDir fails the test if any value is in any file under dir.
func noSecretsInDir(t *testing.T, dir string, values []string) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, v := range values {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("secret %q is in %s", v, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestSecretsNeverShown feeds secret Kafka properties through every path:
// engine validate; engine run (exactly-once, checkpoints, a SIGUSR1
// savepoint, SIGTERM's savepoint) at debug level with json logs and
// librdkafka's configuration dump, and its status API and metrics (--http);
// engine checkpoints; a run with other
// passwords and text logs that restores the checkpoints (passwords are not
// part of a checkpoint, so changing them keeps it usable); and bad input
// (a property the client refuses, a YAML error after a secret). No value
// is in any output or any file under checkpoint.dir.
func TestSecretsNeverShown(t *testing.T) {
	brokers := startKfake(t)
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	events, err := verify.Generate(verify.GenConfig{Seed: 3, Keys: 20, Partitions: 2, Events: 2000,
		Start: 1_700_000_000_000, Step: 10 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, "in", events, 2); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ck")
	props, values := secretProps("")
	job := writeJobFile(t, brokers, "delivery: exactly-once\n"+checkpointLines(dir)+props)

	r := runEngine(t, "validate", "--config", job)
	if r.code != 0 {
		t.Fatalf("validate: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	noSecrets(t, "validate's output", r.stdout+r.stderr, values)

	addr := closedPort(t)
	cmd, out, stderr := startRun(t, ctx, "run", "--config", job, "--status-interval", "100ms", "--log-level", "debug", "--log-format", "json", "--http", addr)
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	var stdout strings.Builder
	// Every record read, then a savepoint on SIGUSR1.
	for {
		l := nextLine(t, ctx, out)
		stdout.WriteString(l + "\n")
		if m := statusRE.FindStringSubmatch(l); m != nil && m[1] == "2000" {
			break
		}
	}
	// The status API and the metrics.
	get := func(path string) string {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s, %v", path, resp.Status, err)
		}
		return string(b)
	}
	var status struct {
		Operators []struct{ ID string } `json:"operators"`
	}
	api := get("/api/job")
	if err := json.Unmarshal([]byte(api), &status); err != nil || len(status.Operators) == 0 {
		t.Fatalf("/api/job: %v, %d operators:\n%s", err, len(status.Operators), api)
	}
	for _, op := range status.Operators {
		api += get("/api/operators/" + url.PathEscape(op.ID))
	}
	api += get("/api/checkpoints") + get("/api/throughput") + get("/metrics") + get("/")
	noSecrets(t, "the status API", api, values)

	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for {
		l := nextLine(t, ctx, out)
		stdout.WriteString(l + "\n")
		if strings.HasPrefix(l, "savepoint: ") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for l := range out {
		stdout.WriteString(l + "\n")
	}
	err = cmd.Wait()
	exited = true
	if err != nil {
		t.Fatalf("run: %v; stderr:\n%s", err, stderr)
	}
	if !strings.Contains(stderr.String(), "engine: stopped with savepoint ") {
		t.Fatalf("run did not stop with a savepoint; stderr:\n%s", stderr)
	}
	// The paths were taken: librdkafka printed its configuration, redacted.
	if !strings.Contains(stderr.String(), `sasl.oauthbearer.token.endpoint.url = [redacted]`) {
		t.Errorf("no redacted configuration dump of the client in the debug log; stderr:\n%s", stderr)
	}
	noSecrets(t, "run's stdout", stdout.String(), values)
	noSecrets(t, "run's stderr", stderr.String(), values)

	r = runEngine(t, "checkpoints", "--config", job)
	if r.code != 0 {
		t.Fatalf("checkpoints: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	noSecrets(t, "checkpoints' output", r.stdout+r.stderr, values)

	// Other passwords, text logs, bounded: the checkpoint is restored.
	props2, values2 := secretProps("-new")
	job2 := boundedJobFile(t, brokers, "delivery: exactly-once\n"+checkpointLines(dir)+props2)
	r = runEngine(t, "run", "--config", job2, "--status-interval", "0", "--log-level", "debug", "--log-format", "text")
	if r.code != 0 || !strings.Contains(r.stderr, `msg="restoring from checkpoint"`) {
		t.Fatalf("run with changed passwords: exit %d, want 0 and a restored checkpoint; stderr:\n%s", r.code, r.stderr)
	}
	all := append(values, values2...)
	noSecrets(t, "the second run's output", r.stdout+r.stderr, all)

	// Bad input that shows configuration.
	refused := writeJobFile(t, brokers, "kafka:\n  my.token: S3cr3t-mytoken-4a6f\n  sasl.password: S3cr3t-sasl-9f1c\n")
	// librdkafka names a refused value: a password pasted as the mechanism.
	echoed := writeJobFile(t, brokers, "kafka:\n  security.protocol: SASL_PLAINTEXT\n  sasl.password: S3cr3t-sasl-9f1c\n  sasl.mechanisms: S3cr3t-sasl-9f1c\n")
	badYAML := writeJobFile(t, brokers, "kafka:\n  sasl.password: S3cr3t-sasl-9f1c\n  my.token: [S3cr3t-mytoken-4a6f\n")
	for _, args := range [][]string{
		{"validate", "--config", refused},
		{"run", "--config", refused, "--log-level", "debug", "--log-format", "json"},
		{"validate", "--config", echoed},
		{"run", "--config", echoed, "--log-level", "debug"},
		{"validate", "--config", badYAML},
		{"run", "--config", badYAML},
	} {
		r := runEngine(t, args...)
		if r.code != 2 {
			t.Errorf("engine %q: exit %d, want 2; stderr:\n%s", args, r.code, r.stderr)
		}
		noSecrets(t, "the output of engine "+strings.Join(args, " "), r.stdout+r.stderr, append(all, "S3cr3t-mytoken-4a6f"))
	}

	if n := noSecretsInDir(t, dir, all); n == 0 {
		t.Errorf("no file under %s", dir)
	}
}
