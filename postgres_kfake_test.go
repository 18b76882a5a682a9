package weir

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weirstream/weir/integration/verify"
	"github.com/weirstream/weir/internal/pgtest"
)

const pgResultsDDL = "CREATE TABLE %s (key text, window_start timestamptz, window_end timestamptz, count bigint, sum double precision%s)"

// pgResults reads the window results of table as the verifier's results.
func pgResults(t *testing.T, c *pgx.Conn, table string) []verify.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := c.Query(ctx, "SELECT key, window_start, window_end, count, sum FROM "+table+" ORDER BY key, window_start")
	if err != nil {
		t.Fatal(err)
	}
	var out []verify.Result
	for rows.Next() {
		var r verify.Result
		var ws, we time.Time
		if err := rows.Scan(&r.Key, &ws, &we, &r.Count, &r.Sum); err != nil {
			t.Fatal(err)
		}
		r.WindowStart, r.WindowEnd = ws.UnixMilli(), we.UnixMilli()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func pgNoPrepared(t *testing.T, c *pgx.Conn) {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_prepared_xacts").Scan(&n); err != nil || n != 0 {
		t.Fatalf("pg_prepared_xacts holds %d transactions (%v), want none", n, err)
	}
}

// TestPostgresSinkOnKfake runs the window job into a PostgreSQL table on a
// real server: exactly once (also stopped mid-stream and restored, in
// insert and upsert mode) and at least once; every window is in the table
// exactly once with the right count and sum, and no prepared transaction
// is left.
func TestPostgresSinkOnKfake(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	for i, tc := range []struct {
		name      string
		delivery  Delivery
		mode      PostgresMode
		interrupt bool
	}{
		{"exactly-once", ExactlyOnce, PostgresInsert, false},
		{"exactly-once-interrupted", ExactlyOnce, PostgresInsert, true},
		{"exactly-once-upsert-interrupted", ExactlyOnce, PostgresUpsert, true},
		{"at-least-once", AtLeastOnce, PostgresInsert, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := fmt.Sprintf("results_%d", i)
			pk := ""
			if tc.mode == PostgresUpsert {
				pk = ", PRIMARY KEY (key, window_start)"
			}
			if _, err := c.Exec(context.Background(), fmt.Sprintf(pgResultsDDL, table, pk)); err != nil {
				t.Fatal(err)
			}
			f := newFixture(t, verify.GenConfig{Seed: 13, Keys: 100, Partitions: 2, Events: 40000})
			spec := f.eosSpec("pg" + fmt.Sprint(i))
			spec.Delivery = tc.delivery
			spec.Sink = SinkSpec{Kind: SinkPostgres, DSN: srv.DSN(), Table: table, Mode: tc.mode}
			if tc.interrupt {
				job1 := f.runUntil(spec, func(job *Job, _ uint64) bool { return job.Stats().RecordsIn > 15000 }, WithFlowControl(1, 64))
				t.Logf("run 1: %+v", job1.Stats())
			}
			st := f.drain(spec).Stats()
			t.Logf("last run: %+v", st)
			if st.Restarts != 0 {
				t.Fatalf("the last run restarted %d times (see the log), want none", st.Restarts)
			}
			got := pgResults(t, c, table)
			v := verify.Compare(len(f.events), verify.Expected(f.events, time.Second), got)
			t.Log(v.String())
			if !v.OK {
				t.Fatal(v.Report())
			}
			pgNoPrepared(t, c)
		})
	}
}

// TestToPostgresOnKfake: a dataflow pipeline writes every event, mapped to
// a row, into a PostgreSQL table with ToPostgres, exactly once, at
// parallelism 2: each event is there once with its values.
func TestToPostgresOnKfake(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	if _, err := c.Exec(context.Background(), "CREATE TABLE events (seq bigint PRIMARY KEY, username text, at timestamptz, cents bigint, raw bytea)"); err != nil {
		t.Fatal(err)
	}
	f := dataflowFixture(t, verify.GenConfig{Seed: 7, Keys: 50, Partitions: 4, Events: 5000})
	env := NewEnv("topg", Brokers(f.brokers), Parallelism(2), Guarantee(ExactlyOnce), Checkpoints(50*time.Millisecond, t.TempDir()))
	in := FromKafka(env, "in", JSON[ev](), FromEarliest(), BoundedAtLatest())
	cols := []PostgresColumn{{Name: "seq", Kind: ColumnInt}, {Name: "username", Kind: ColumnText},
		{Name: "at", Kind: ColumnTimestamp}, {Name: "cents", Kind: ColumnInt}, {Name: "raw", Kind: ColumnBytes}}
	ToPostgres(in, srv.DSN(), "events", cols, func(e ev) ([]any, error) {
		return []any{e.Seq, e.User, time.UnixMilli(e.TS), e.Amount * 100, []byte(e.User)}, nil
	}, PostgresSinkUID("pg"))
	if err := env.Run(f.ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := c.Query(context.Background(), "SELECT seq, username, at, cents, raw FROM events")
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]bool{}
	for rows.Next() {
		var seq, cents int64
		var user string
		var at time.Time
		var raw []byte
		if err := rows.Scan(&seq, &user, &at, &cents, &raw); err != nil {
			t.Fatal(err)
		}
		got[seq] = true
		if seq < 0 || seq >= int64(len(f.events)) {
			t.Fatalf("row seq %d is no event", seq)
		}
		e := f.events[seq]
		if user != e.Key || at.UnixMilli() != e.TS || cents != e.Amount*100 || string(raw) != e.Key {
			t.Fatalf("row %d = (%s, %v, %d, %q), want event %+v", seq, user, at, cents, raw, e)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(f.events) {
		t.Fatalf("%d rows, want %d", len(got), len(f.events))
	}
	pgNoPrepared(t, c)
}

// TestPostgresSinkRescale: an exactly-once window job into PostgreSQL at
// parallelism 3 is stopped mid-stream and restored at parallelism 1 (and
// 2 to 3): every window once, nothing prepared left (the old subtasks'
// prepared transactions after the checkpoint are rolled back).
func TestPostgresSinkRescale(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	for i, ps := range [][2]int{{3, 1}, {2, 3}} {
		t.Run(fmt.Sprintf("%dto%d", ps[0], ps[1]), func(t *testing.T) {
			table := fmt.Sprintf("rescale_%d", i)
			if _, err := c.Exec(context.Background(), fmt.Sprintf(pgResultsDDL, table, "")); err != nil {
				t.Fatal(err)
			}
			f := newFixture(t, verify.GenConfig{Seed: 23, Keys: 300, Partitions: 4, Events: 100000})
			spec := f.eosSpec(fmt.Sprintf("pgrescale%d", i))
			spec.Parallelism = ps[0]
			spec.Sink = SinkSpec{Kind: SinkPostgres, DSN: srv.DSN(), Table: table}
			st1 := f.runUntil(spec, func(_ *Job, id uint64) bool { return id >= 2 }, WithFlowControl(1, 64)).Stats()
			spec.Parallelism = ps[1]
			st2 := f.drain(spec).Stats()
			t.Logf("run 1: read %d, checkpoint %d; run 2: restored %d, read %d", st1.RecordsIn, st1.LastCheckpoint, st2.RestoredFrom, st2.RecordsIn)
			if st2.RestoredFrom < 2 {
				t.Fatalf("run 2 did not restore: %+v", st2)
			}
			v := verify.Compare(len(f.events), verify.Expected(f.events, time.Second), pgResults(t, c, table))
			t.Log(v.String())
			if !v.OK {
				t.Fatal(v.Report())
			}
			pgNoPrepared(t, c)
		})
	}
}

// BenchmarkWindowToPostgres runs the window job (1 s windows; 100 keys:
// few results, or 10,000 keys: about one result per event) over 200,000
// events on the in-process broker into a PostgreSQL table, at least once
// and exactly once (checkpoints every 100 ms, parallelism 2), and reports
// events/s and window results/s of the whole drain:
//
//	go test -p 1 -count=1 -run '^$' -bench BenchmarkWindowToPostgres -benchtime 3x .
func BenchmarkWindowToPostgres(b *testing.B) {
	srv := pgtest.Start(b)
	c := srv.Conn(b)
	const events = 200_000
	ctx := context.Background()
	run := 0
	for _, bc := range []struct {
		keys int
		d    Delivery
	}{{100, AtLeastOnce}, {100, ExactlyOnce}, {10000, AtLeastOnce}, {10000, ExactlyOnce}} {
		d := bc.d
		b.Run(fmt.Sprintf("keys=%d/%s", bc.keys, d), func(b *testing.B) {
			kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "in"), kfake.Ports(0))
			if err != nil {
				b.Fatal(err)
			}
			defer kc.Close()
			brokers := kc.ListenAddrs()[0]
			evs, err := verify.Generate(verify.GenConfig{Seed: 3, Keys: bc.keys, Partitions: 4, Events: events,
				Start: 1_700_000_000_000, Step: time.Millisecond, OutOfOrderness: 100 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			if err := verify.Produce(ctx, brokers, "in", evs, 4); err != nil {
				b.Fatal(err)
			}
			var results int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				run++
				table := fmt.Sprintf("bench_%d", run)
				if _, err := c.Exec(ctx, fmt.Sprintf(pgResultsDDL, table, "")); err != nil {
					b.Fatal(err)
				}
				spec := JobSpec{
					Name: fmt.Sprintf("pgbench%d", run), Brokers: brokers, Parallelism: 2, Delivery: d,
					Source:   SourceSpec{Topic: "in", Start: StartSpec{Mode: StartEarliest}, Bounded: BoundLatest},
					KeyField: "user", TimestampField: "ts",
					Window:     WindowSpec{Size: time.Second, OutOfOrderness: 100 * time.Millisecond},
					Aggregate:  AggregateSpec{ValueField: "amount"},
					Sink:       SinkSpec{Kind: SinkPostgres, DSN: srv.DSN(), Table: table},
					Checkpoint: CheckpointSpec{Interval: 100 * time.Millisecond, Dir: b.TempDir()},
				}
				job, err := NewJob(spec, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := job.Run(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				results += job.Stats().ResultsOut
				var n int64
				if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != job.Stats().ResultsOut {
					b.Fatalf("table holds %d rows (%v), the job wrote %d", n, err, job.Stats().ResultsOut)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(results)/b.Elapsed().Seconds(), "results/s")
		})
	}
}
