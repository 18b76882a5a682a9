package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/integration/verify"
	"github.com/weirstream/weir/internal/pgtest"
)

// TestPostgresDSNNeverShown: a window job into PostgreSQL whose DSN holds
// a password (the throwaway server trusts any): engine validate and engine
// run (debug logs, JSON) never show it, the run writes its results, and a
// missing table fails the run with one line naming it, without the
// password either.
func TestPostgresDSNNeverShown(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	if _, err := c.Exec(ctx, "CREATE TABLE results (key text, window_start timestamptz, window_end timestamptz, count bigint, sum double precision)"); err != nil {
		t.Fatal(err)
	}
	brokers := startKfake(t)
	events, err := verify.Generate(verify.GenConfig{Seed: 3, Keys: 20, Partitions: 2, Events: 2000,
		Start: 1_700_000_000_000, Step: 10 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, "in", events, 2); err != nil {
		t.Fatal(err)
	}
	const secret = "Pg-S3cret-4711"
	dsn := strings.Replace(srv.DSN(), "postgres@", "postgres:"+secret+"@", 1)
	jobFor := func(table string) string {
		path := writeJobFile(t, brokers, "delivery: exactly-once\n"+checkpointLines(filepath.Join(t.TempDir(), "ck")))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Replace(string(b), "sink:\n  topic: out\n", "sink:\n  kind: postgres\n  dsn: "+dsn+"\n  table: "+table+"\n", 1)
		text = strings.Replace(text, "    mode: earliest\n", "    mode: earliest\n  bounded: latest\n", 1)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	job := jobFor("results")
	r := runEngine(t, "validate", "--config", job)
	if r.code != 0 {
		t.Fatalf("validate: exit %d; stderr:\n%s", r.code, r.stderr)
	}
	noSecrets(t, "validate's output", r.stdout+r.stderr, []string{secret})

	r = runEngine(t, "run", "--config", job, "--log-level", "debug", "--log-format", "json")
	if r.code != 0 {
		t.Fatalf("run: exit %d; stderr:\n%s", r.code, lastLines(r.stderr, 20))
	}
	noSecrets(t, "run's output", r.stdout+r.stderr, []string{secret})
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM results").Scan(&n); err != nil || n == 0 {
		t.Fatalf("results holds %d rows (%v) after the run", n, err)
	}

	r = runEngine(t, "run", "--config", jobFor("absent"))
	if r.code == 0 || !strings.Contains(r.stderr, "table absent does not exist") {
		t.Fatalf("run into a missing table: exit %d; stderr:\n%s", r.code, lastLines(r.stderr, 20))
	}
	noSecrets(t, "run's output", r.stdout+r.stderr, []string{secret})
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}
