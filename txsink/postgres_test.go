package txsink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirstream/weir/internal/pgtest"
)

// pgOut is the target table of these tests: key text, value bigint.
const pgOutDDL = "CREATE TABLE out (key text, value bigint)"

func pgCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func pgExec(t *testing.T, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.Exec(pgCtx(t), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// pgConfig writes records "k=v" as rows (k, v) into out.
func pgConfig(srv *pgtest.Server, owner string) PostgresConfig {
	return PostgresConfig{
		DSN:     srv.DSN(),
		Table:   "out",
		Owner:   owner,
		Columns: []PostgresColumn{{"key", KindText}, {"value", KindInt}},
		Row: func(r Record) ([]any, error) {
			v, err := strconv.ParseInt(string(r.Value), 10, 64)
			return []any{string(r.Key), v}, err
		},
	}
}

func pgRecs(from, to int) []Record {
	var out []Record
	for i := from; i < to; i++ {
		out = append(out, Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(strconv.Itoa(i))})
	}
	return out
}

// newPGSink builds a sink over a fresh backend and recovers it with states.
func newPGSink(t *testing.T, cfg PostgresConfig, sc Config, states ...[]byte) (*Sink, *Postgres) {
	t.Helper()
	b, err := NewPostgres(pgCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc.Owner = cfg.Owner
	s, err := New(b, sc)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(pgCtx(t), states...); err != nil {
		t.Fatalf("recover: %v", err)
	}
	return s, b
}

// pgRows returns out's rows as key -> value, failing on a duplicate key.
func pgRows(t *testing.T, c *pgx.Conn) map[string]int64 {
	t.Helper()
	rows, err := c.Query(pgCtx(t), "SELECT key, value FROM out")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]int64{}
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		if _, dup := got[k]; dup {
			t.Fatalf("row %s twice", k)
		}
		got[k] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// wantRows checks out holds exactly the records [from, to), once each.
func wantRows(t *testing.T, c *pgx.Conn, from, to int) {
	t.Helper()
	got := pgRows(t, c)
	if len(got) != to-from {
		t.Fatalf("out has %d rows, want %d (k%d..k%d)", len(got), to-from, from, to-1)
	}
	for i := from; i < to; i++ {
		if v, ok := got[fmt.Sprintf("k%d", i)]; !ok || v != int64(i) {
			t.Fatalf("row k%d = %d (present %v), want %d", i, v, ok, i)
		}
	}
}

func pgPrepared(t *testing.T, c *pgx.Conn) []string {
	t.Helper()
	rows, err := c.Query(pgCtx(t), "SELECT gid FROM pg_prepared_xacts ORDER BY gid")
	if err != nil {
		t.Fatal(err)
	}
	gids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return gids
}

func TestPostgresCycle(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	pgExec(t, c, pgOutDDL)
	ctx := pgCtx(t)
	s, _ := newPGSink(t, pgConfig(srv, "job/pg/0"), Config{})
	if err := s.Write(ctx, pgRecs(0, 2500)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PreCommit(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := pgRows(t, c); len(got) != 0 {
		t.Fatalf("%d rows visible before the commit", len(got))
	}
	if gids := pgPrepared(t, c); len(gids) != 1 || gids[0] != "weir:job/pg/0:1" {
		t.Fatalf("prepared transactions %v, want [weir:job/pg/0:1]", gids)
	}
	if err := s.Commit(ctx, 1); err != nil {
		t.Fatal(err)
	}
	wantRows(t, c, 0, 2500)
	// A second epoch; the progress table keeps only the newest row.
	if err := s.Write(ctx, pgRecs(2500, 2600)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PreCommit(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, 2); err != nil {
		t.Fatal(err)
	}
	wantRows(t, c, 0, 2600)
	var marks []string
	rows, err := c.Query(ctx, "SELECT owner || ':' || epoch FROM weir_progress")
	if err == nil {
		marks, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || len(marks) != 1 || marks[0] != "job/pg/0:2" {
		t.Fatalf("progress rows %v (%v), want [job/pg/0:2]", marks, err)
	}
	if gids := pgPrepared(t, c); len(gids) != 0 {
		t.Fatalf("prepared transactions left: %v", gids)
	}
	if n := s.Counts(); n.Committed != 2 || n.Replayed != 0 || n.Resumed != 0 {
		t.Fatalf("counts %+v", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresUpsert: the latest row per key wins, also within a batch.
func TestPostgresUpsert(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	pgExec(t, c, "CREATE TABLE out (key text PRIMARY KEY, value bigint)")
	cfg := pgConfig(srv, "job/pg/0")
	cfg.Mode, cfg.ConflictColumns = PostgresUpsert, []string{"key"}
	ctx := pgCtx(t)
	s, _ := newPGSink(t, cfg, Config{})
	for e := uint64(1); e <= 2; e++ {
		recs := append(pgRecs(0, 10), pgRecs(0, 10)...)
		for i := range recs {
			recs[i].Value = []byte(strconv.Itoa(int(e)*100 + i))
		}
		if err := s.Write(ctx, recs); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PreCommit(ctx, e); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	got := pgRows(t, c)
	if len(got) != 10 || got["k3"] != 213 {
		t.Fatalf("rows %v: want 10 rows, k3 = 213", got)
	}
	s.Close()
}

// TestPostgresResumeAfterPrepare: the process dies right after PREPARE
// TRANSACTION of epoch 1 (checkpoint 1 complete, its commit never ran) and
// of epoch 2 (checkpoint 2 never completed). The new sink commits epoch 1's
// prepared transaction (resumed, not replayed) and rolls back epoch 2's.
func TestPostgresResumeAfterPrepare(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	pgExec(t, c, pgOutDDL)
	ctx := pgCtx(t)
	cfg := pgConfig(srv, "job/pg/0")
	old, _ := newPGSink(t, cfg, Config{})
	if err := old.Write(ctx, pgRecs(0, 100)); err != nil {
		t.Fatal(err)
	}
	state1, err := old.PreCommit(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Write(ctx, pgRecs(100, 150)); err != nil {
		t.Fatal(err)
	}
	if _, err := old.PreCommit(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if gids := pgPrepared(t, c); len(gids) != 2 {
		t.Fatalf("prepared before the crash: %v, want 2", gids)
	}
	// Crash: old is dropped without Close (its connections stay open,
	// as a hung process's would, until the new sink fences them).
	s, _ := newPGSink(t, cfg, Config{}, state1)
	if n := s.Counts(); n.Resumed != 1 || n.Replayed != 0 {
		t.Fatalf("counts after recover %+v, want 1 resumed, 0 replayed", n)
	}
	wantRows(t, c, 0, 100)
	if gids := pgPrepared(t, c); len(gids) != 0 {
		t.Fatalf("prepared transactions left after recover: %v", gids)
	}
	// The job goes on with epoch 3 (epoch 2's records again).
	if err := s.Write(ctx, pgRecs(100, 150)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PreCommit(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, 3); err != nil {
		t.Fatal(err)
	}
	wantRows(t, c, 0, 150)
	s.Close()
}

// TestPostgresReplayNeverPrepared: epoch 2 was checkpointed while every
// slot was busy, so it never had a transaction (nothing prepared): the
// new sink resumes epoch 1 and replays epoch 2 from its spill file.
func TestPostgresReplayNeverPrepared(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	pgExec(t, c, pgOutDDL)
	ctx := pgCtx(t)
	cfg := pgConfig(srv, "job/pg/0")
	cfg.Slots = 1
	spill := t.TempDir()
	old, _ := newPGSink(t, cfg, Config{SpillDir: spill})
	if err := old.Write(ctx, pgRecs(0, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := old.PreCommit(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := old.Write(ctx, pgRecs(100, 180)); err != nil { // no free slot: spilled only
		t.Fatal(err)
	}
	state2, err := old.PreCommit(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if gids := pgPrepared(t, c); len(gids) != 1 {
		t.Fatalf("prepared before the crash: %v, want epoch 1 only", gids)
	}
	s, _ := newPGSink(t, cfg, Config{SpillDir: spill}, state2)
	if n := s.Counts(); n.Resumed != 1 || n.Replayed != 1 {
		t.Fatalf("counts after recover %+v, want 1 resumed, 1 replayed", n)
	}
	wantRows(t, c, 0, 180)
	if gids := pgPrepared(t, c); len(gids) != 0 {
		t.Fatalf("prepared transactions left after recover: %v", gids)
	}
	s.Close()
}

// TestPostgresZombieFenced: after a new instance's Recover, the old one's
// Commit and Write fail and it publishes nothing more.
func TestPostgresZombieFenced(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	pgExec(t, c, pgOutDDL)
	ctx := pgCtx(t)
	cfg := pgConfig(srv, "job/pg/0")
	zombie, _ := newPGSink(t, cfg, Config{})
	if err := zombie.Write(ctx, pgRecs(0, 10)); err != nil {
		t.Fatal(err)
	}
	state1, err := zombie.PreCommit(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := zombie.Write(ctx, pgRecs(10, 20)); err != nil { // open epoch 2
		t.Fatal(err)
	}
	s, _ := newPGSink(t, cfg, Config{}, state1)
	if err := zombie.Commit(ctx, 1); err == nil {
		t.Fatal("the zombie's Commit succeeded after the new instance's Recover")
	}
	if err := zombie.Write(ctx, pgRecs(20, 30)); err == nil {
		t.Fatal("the zombie's Write succeeded after the new instance's Recover")
	}
	// A fresh zombie transaction fails too: its slot connection is gone.
	b2, err := NewPostgres(ctx, cfg) // as a second zombie would, without Fence
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Begin(ctx, 0); err == nil {
		t.Fatal("Begin without Fence succeeded")
	}
	b2.Close()
	wantRows(t, c, 0, 10)
	if n := s.Counts(); n.Resumed != 1 {
		t.Fatalf("counts %+v, want epoch 1 resumed", n)
	}
	if gids := pgPrepared(t, c); len(gids) != 0 {
		t.Fatalf("prepared transactions left: %v", gids)
	}
	s.Close()
	zombie.Close()
}

// TestPostgresServerRestartMidEpoch: the server restarts while epoch 3 is
// open (epoch 1 committed, epoch 2 prepared): the open transaction is
// lost and the sink fails; the new sink resumes epoch 2, the job writes
// epoch 3's records again, and every row is there exactly once.
func TestPostgresServerRestartMidEpoch(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	pgExec(t, c, pgOutDDL)
	ctx := pgCtx(t)
	cfg := pgConfig(srv, "job/pg/0")
	spill := t.TempDir()
	s, _ := newPGSink(t, cfg, Config{SpillDir: spill})
	if err := s.Write(ctx, pgRecs(0, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PreCommit(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, pgRecs(100, 200)); err != nil {
		t.Fatal(err)
	}
	state2, err := s.PreCommit(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, pgRecs(200, 250)); err != nil { // epoch 3, open
		t.Fatal(err)
	}
	srv.Restart()
	if err := s.Write(ctx, pgRecs(250, 300)); err == nil {
		t.Fatal("Write on a transaction the server restart lost succeeded")
	}
	if err := s.Commit(ctx, 2); !errors.Is(err, ErrFailed) {
		t.Fatalf("Commit after the failure: %v, want ErrFailed", err)
	}
	c = srv.Conn(t)
	wantRows(t, c, 0, 100) // epoch 3's rows are gone, epoch 2 still prepared
	s2, _ := newPGSink(t, cfg, Config{SpillDir: spill}, state2)
	if n := s2.Counts(); n.Resumed != 1 || n.Replayed != 0 {
		t.Fatalf("counts after recover %+v, want epoch 2 resumed", n)
	}
	if err := s2.Write(ctx, pgRecs(200, 300)); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.PreCommit(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if err := s2.Commit(ctx, 4); err != nil {
		t.Fatal(err)
	}
	wantRows(t, c, 0, 300)
	if gids := pgPrepared(t, c); len(gids) != 0 {
		t.Fatalf("prepared transactions left: %v", gids)
	}
	s2.Close()
}

// TestPostgresPreflight: each misconfiguration is one line naming it and
// the fix, before anything flows.
func TestPostgresPreflight(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	pgExec(t, c, "CREATE TABLE wrongtype (key text, value text)")
	pgExec(t, c, "CREATE TABLE nokey (key text, value bigint)")
	pgExec(t, c, "CREATE TABLE nocol (key text)")
	ctx := pgCtx(t)
	for _, tc := range []struct {
		name  string
		edit  func(*PostgresConfig)
		wants []string
	}{
		{"missing table", func(c *PostgresConfig) { c.Table = "absent" }, []string{"table absent does not exist", "CREATE TABLE"}},
		{"wrong column type", func(c *PostgresConfig) { c.Table = "wrongtype" }, []string{"column value of table wrongtype is text", "bigint", "ALTER TABLE"}},
		{"missing column", func(c *PostgresConfig) { c.Table = "nocol" }, []string{"table nocol has no column value", "ADD COLUMN"}},
		{"no unique constraint", func(c *PostgresConfig) {
			c.Table, c.Mode, c.ConflictColumns = "nokey", PostgresUpsert, []string{"key"}
		}, []string{"no unique constraint on (key)", "ADD UNIQUE (key)"}},
		{"upsert with two slots", func(c *PostgresConfig) {
			c.Table, c.Mode, c.ConflictColumns, c.Slots = "nokey", PostgresUpsert, []string{"key"}, 2
		}, []string{"upsert takes one"}},
		{"bad mode", func(c *PostgresConfig) { c.Mode = "merge" }, []string{`mode "merge"`, "insert or upsert"}},
		{"password in a bad DSN", func(c *PostgresConfig) { c.DSN = "postgres://u:s3cret@host:notaport/db" }, []string{"DSN does not parse"}},
	} {
		cfg := pgConfig(srv, "job/pg/0")
		tc.edit(&cfg)
		_, err := NewPostgres(ctx, cfg)
		if !errors.Is(err, ErrConfig) {
			t.Fatalf("%s: %v, want ErrConfig", tc.name, err)
		}
		msg := err.Error()
		for _, w := range tc.wants {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q does not say %q", tc.name, msg, w)
			}
		}
		if strings.Contains(msg, "\n") || strings.Contains(msg, "s3cret") {
			t.Errorf("%s: %q: want one line without the password", tc.name, msg)
		}
	}

	off := pgtest.Start(t, "max_prepared_transactions=0")
	cfg := pgConfig(off, "job/pg/0")
	_, err := NewPostgres(ctx, cfg)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "max_prepared_transactions = 0") || !strings.Contains(err.Error(), "postgresql.conf") {
		t.Fatalf("max_prepared_transactions = 0: %v", err)
	}
}

// BenchmarkPostgresWrite compares COPY (10,000 rows per COPY, the default,
// and 1,000) with multi-row INSERT for the insert mode, and measures
// upsert: each iteration is one epoch of 10,000 rows written, prepared and
// committed into a table with a primary key.
//
//	go test -p 1 -count=1 -run '^$' -bench BenchmarkPostgresWrite ./txsink/
func BenchmarkPostgresWrite(b *testing.B) {
	srv := pgtest.Start(b)
	c := srv.Conn(b)
	const rows = 10000
	run := 0
	for _, mode := range []string{"copy", "copy-batch1000", "insert", "upsert"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS out; CREATE TABLE out (key text PRIMARY KEY, value bigint)"); err != nil {
				b.Fatal(err)
			}
			run++ // the benchmark function runs more than once: fresh epochs
			cfg := pgConfig(srv, fmt.Sprintf("bench/%s/%d", mode, run))
			switch mode {
			case "copy-batch1000":
				cfg.Batch = 1000
			case "insert":
				cfg.UseInsert = true
			case "upsert":
				cfg.Mode, cfg.ConflictColumns = PostgresUpsert, []string{"key"}
			}
			pb, err := NewPostgres(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			s, err := New(pb, Config{Owner: cfg.Owner})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Recover(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				recs := pgRecs(i*rows, (i+1)*rows)
				if mode == "upsert" {
					recs = pgRecs(0, rows)
				}
				if err := s.Write(ctx, recs); err != nil {
					b.Fatal(err)
				}
				if _, err := s.PreCommit(ctx, uint64(i+1)); err != nil {
					b.Fatal(err)
				}
				if err := s.Commit(ctx, uint64(i+1)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
			s.Close()
		})
	}
}

// TestPostgresFenceIDsDiscard: after a parallelism change, the sink given
// FenceIDs of a subtask that no longer exists terminates that subtask's
// sessions and rolls back its prepared transactions (epochs after the
// checkpoint, in no state).
func TestPostgresFenceIDsDiscard(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	pgExec(t, c, pgOutDDL)
	ctx := pgCtx(t)
	gone, _ := newPGSink(t, pgConfig(srv, "job/pg/1"), Config{})
	if err := gone.Write(ctx, pgRecs(0, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := gone.PreCommit(ctx, 5); err != nil {
		t.Fatal(err)
	}
	s, _ := newPGSink(t, pgConfig(srv, "job/pg/0"), Config{FenceIDs: PostgresIDs("job/pg/1", 2)})
	if gids := pgPrepared(t, c); len(gids) != 0 {
		t.Fatalf("prepared transactions left: %v", gids)
	}
	if err := gone.Commit(ctx, 5); err == nil {
		t.Fatal("the fenced subtask committed")
	}
	wantRows(t, c, 0, 0)
	s.Close()
}
