package weir

import (
	"strings"
	"testing"

	"github.com/weirstream/weir/txsink"
)

const pgJobFile = `
name: clicks
brokers: 127.0.0.1:9092
source: {topic: clicks}
key_field: user
timestamp_field: ts
window: {size: 10s}
aggregate: {functions: [count, sum]}
delivery: exactly-once
checkpoint: {interval: 1s, dir: /tmp/weir-cp}
sink:
  kind: postgres
  dsn: postgres://weir:Pg-S3cret-pw@db:5432/analytics
  table: clicks_per_user
  mode: upsert
  columns: {user_id: key, starts: window_start, ends: window_end, clicks: count, total: sum}
`

// TestPostgresJobFile: the postgres sink keys parse into SinkSpec, and
// the DSN's password is hidden by Redacted and RedactSecrets.
func TestPostgresJobFile(t *testing.T) {
	s, err := ParseJobFile([]byte(pgJobFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WithDefaults().Validate(); err != nil {
		t.Fatal(err)
	}
	sk := s.Sink
	if sk.Kind != SinkPostgres || sk.Table != "clicks_per_user" || sk.Mode != PostgresUpsert || sk.Columns["user_id"] != "key" || len(sk.Columns) != 5 {
		t.Fatalf("sink %+v", sk)
	}
	p := windowPostgres(s.WithDefaults())
	if got := strings.Join(p.conflict, ","); got != "user_id,starts" {
		t.Fatalf("conflict columns %s, want user_id,starts", got)
	}
	row, err := p.row(recordOf(`{"key":"u1","window_start":10000,"window_end":20000,"count":3,"sum":7.5}`))
	if err != nil {
		t.Fatal(err)
	}
	// Columns in name order: clicks, ends, starts, total, user_id.
	if len(row) != 5 || row[0] != int64(3) || row[3] != 7.5 || row[4] != "u1" {
		t.Fatalf("row %v", row)
	}
	if r := s.Redacted(); strings.Contains(r.Sink.DSN, "Pg-S3cret-pw") || !strings.Contains(r.Sink.DSN, "weir:") {
		t.Fatalf("redacted DSN %q", r.Sink.DSN)
	}
	if msg := RedactSecrets("connect postgres://weir:Pg-S3cret-pw@db failed"); strings.Contains(msg, "Pg-S3cret-pw") {
		t.Fatalf("RedactSecrets left the DSN password: %q", msg)
	}
}

// TestPostgresJobFileErrors: each mistake is one line naming the key.
func TestPostgresJobFileErrors(t *testing.T) {
	for _, tc := range []struct{ edit, old, want string }{
		{"  dsn: postgres://weir:Pg-S3cret-pw@db:5432/analytics\n", "", "sink.dsn: required"},
		{"  table: clicks_per_user\n", "", "sink.table: required"},
		{"mode: upsert", "mode: merge", `sink.mode: "merge" is not a mode`},
		{"clicks: count", "clicks: clicks", `sink.columns.clicks: "clicks" is not a window-result field`},
		{"total: sum", "total: max", "sink.columns.total: max is not computed"},
		{"user_id: key, ", "", "upsert updates on (key, window_start)"},
		{"kind: postgres", "kind: mysql", `sink.kind: "mysql" is not a sink kind`},
		{"  kind: postgres\n", "  kind: postgres\n  topic: out\n", "sink.topic: is for sink.kind: kafka"},
		{"  kind: postgres\n", "  topic: out\n", "sink.kind: sink.dsn, sink.table"},
	} {
		text := strings.Replace(pgJobFile, tc.edit, tc.old, 1)
		if text == pgJobFile {
			t.Fatalf("edit %q did not apply", tc.edit)
		}
		s, err := ParseJobFile([]byte(text))
		if err == nil {
			err = s.WithDefaults().Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q -> %q: got %v, want one line with %q", tc.edit, tc.old, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "Pg-S3cret-pw") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func recordOf(value string) txsink.Record { return txsink.Record{Value: []byte(value)} }
