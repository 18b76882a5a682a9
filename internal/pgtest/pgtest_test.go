package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestServer starts a server, checks its settings, prepares a transaction,
// restarts the server and finds the prepared transaction still there.
func TestServer(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	var mpt, listen string
	if err := conn.QueryRow(ctx, "SHOW max_prepared_transactions").Scan(&mpt); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SHOW listen_addresses").Scan(&listen); err != nil {
		t.Fatal(err)
	}
	if mpt != "64" || listen != "127.0.0.1" {
		t.Fatalf("max_prepared_transactions = %s, listen_addresses = %s; want 64, 127.0.0.1", mpt, listen)
	}
	for _, q := range []string{"CREATE TABLE t (v int)", "BEGIN", "INSERT INTO t VALUES (1)", "PREPARE TRANSACTION 'pgtest-1'"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close(ctx)
	s.Restart()
	conn, err = pgx.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	defer conn.Close(ctx)
	var gid string
	if err := conn.QueryRow(ctx, "SELECT gid FROM pg_prepared_xacts").Scan(&gid); err != nil || gid != "pgtest-1" {
		t.Fatalf("prepared transaction after restart: %q, %v", gid, err)
	}
	if _, err := conn.Exec(ctx, "COMMIT PREPARED 'pgtest-1'"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after COMMIT PREPARED: %d, %v", n, err)
	}
}
