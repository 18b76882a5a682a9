package weir

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirstream/weir/internal/kafkaconf"
	"github.com/weirstream/weir/txsink"
)

// SinkKind is where a job file's results go (sink.kind).
type SinkKind string

// Sink kinds.
const (
	// SinkKafka writes results to the Kafka topic sink.topic.
	SinkKafka SinkKind = "kafka"
	// SinkPostgres writes results to the PostgreSQL table sink.table:
	// exactly once through prepared transactions (PREPARE TRANSACTION at
	// the barrier, COMMIT PREPARED when the checkpoint completes), or at
	// least once through ordinary transactions.
	SinkPostgres SinkKind = "postgres"
)

// PostgresMode is how a postgres sink writes rows (sink.mode).
type PostgresMode = txsink.PostgresMode

// PostgreSQL write modes.
const (
	PostgresInsert = txsink.PostgresInsert
	PostgresUpsert = txsink.PostgresUpsert
)

// PostgresColumn is a column a PostgreSQL sink writes and the kind of
// value it receives: txsink.KindText (string), KindBytes ([]byte),
// KindInt (int64), KindFloat (float64) or KindTimestamp (time.Time). The
// sink checks at start that the table's column type takes it.
type PostgresColumn = txsink.PostgresColumn

// Column kinds of PostgresColumn.
const (
	ColumnText      = txsink.KindText
	ColumnBytes     = txsink.KindBytes
	ColumnInt       = txsink.KindInt
	ColumnFloat     = txsink.KindFloat
	ColumnTimestamp = txsink.KindTimestamp
)

// resultFieldKinds are the window-result fields a postgres sink maps to
// columns (sink.columns), and the kind of each.
var resultFieldKinds = map[string]txsink.PostgresKind{
	"key": txsink.KindText, "window_start": txsink.KindTimestamp, "window_end": txsink.KindTimestamp,
	"count": txsink.KindInt, "sum": txsink.KindFloat, "min": txsink.KindFloat, "max": txsink.KindFloat, "avg": txsink.KindFloat,
}

// validatePostgresSink checks sink.* of a job-file job with sink.kind
// postgres.
func (s JobSpec) validatePostgresSink() error {
	if s.Kind != KindWindow {
		return specErr("sink.kind", "postgres writes window results; kind %s needs sink.kind: kafka", s.Kind)
	}
	if s.Sink.DSN == "" {
		return specErr("sink.dsn", "required with sink.kind: postgres, e.g. sink.dsn: postgres://weir:PASSWORD@db:5432/analytics")
	}
	if _, err := pgx.ParseConfig(s.Sink.DSN); err != nil {
		return specErr("sink.dsn", "does not parse as a PostgreSQL connection string; write e.g. postgres://user:password@host:5432/database")
	}
	if s.Sink.Table == "" {
		return specErr("sink.table", "required with sink.kind: postgres: name the table to write window results to")
	}
	if s.Sink.Topic != "" {
		return specErr("sink.topic", "is for sink.kind: kafka; a postgres sink writes sink.table")
	}
	switch s.Sink.Mode {
	case PostgresInsert, PostgresUpsert:
	default:
		return specErr("sink.mode", "%q is not a mode; use insert or upsert", s.Sink.Mode)
	}
	if err := validPendingBytes(s.Sink.MaxPendingBytes); err != nil {
		return specErr("sink.max_pending_bytes", "%v", err)
	}
	funcs := s.Aggregate.Functions
	if funcs == nil {
		funcs = []string{"count", "sum"}
	}
	cols := s.postgresColumns()
	for _, c := range sortedKeys(cols) {
		f := cols[c]
		if _, ok := resultFieldKinds[f]; !ok {
			return specErr("sink.columns."+c, "%q is not a window-result field; use key, window_start, window_end or an aggregate function (%s)", f, strings.Join(funcs, ", "))
		}
		if _, agg := map[string]bool{"count": true, "sum": true, "min": true, "max": true, "avg": true}[f]; agg && !slices.Contains(funcs, f) {
			return specErr("sink.columns."+c, "%s is not computed; add it to aggregate.functions (now %s)", f, strings.Join(funcs, ", "))
		}
	}
	if s.Sink.Mode == PostgresUpsert {
		if len(columnsOf(cols, "key")) == 0 || len(columnsOf(cols, "window_start")) == 0 {
			return specErr("sink.mode", "upsert updates on (key, window_start): map both in sink.columns")
		}
	}
	return nil
}

// postgresColumns is sink.columns, or each window-result field of the job
// into the column of its name.
func (s JobSpec) postgresColumns() map[string]string {
	if len(s.Sink.Columns) > 0 {
		return s.Sink.Columns
	}
	funcs := s.Aggregate.Functions
	if funcs == nil {
		funcs = []string{"count", "sum"}
	}
	cols := map[string]string{"key": "key", "window_start": "window_start", "window_end": "window_end"}
	for _, f := range funcs {
		cols[f] = f
	}
	return cols
}

func columnsOf(cols map[string]string, field string) []string {
	var out []string
	for _, c := range sortedKeys(cols) {
		if cols[c] == field {
			out = append(out, c)
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// pgSink is what a PostgreSQL sink node carries besides its SinkSpec:
// the columns and how to map a record the sink receives to their values.
type pgSink struct {
	columns  []txsink.PostgresColumn
	conflict []string
	row      func(txsink.Record) ([]any, error)
}

// windowPostgres maps the window job's JSON results to the columns of
// sink.columns.
func windowPostgres(s JobSpec) *pgSink {
	cols := s.postgresColumns()
	names := sortedKeys(cols)
	p := &pgSink{}
	fields := make([]string, len(names))
	for i, c := range names {
		fields[i] = cols[c]
		p.columns = append(p.columns, txsink.PostgresColumn{Name: c, Kind: resultFieldKinds[cols[c]]})
	}
	if s.Sink.Mode == PostgresUpsert {
		p.conflict = append(columnsOf(cols, "key")[:1], columnsOf(cols, "window_start")[:1]...)
	}
	p.row = func(r txsink.Record) ([]any, error) {
		d := json.NewDecoder(bytes.NewReader(r.Value))
		d.UseNumber()
		var obj map[string]any
		if err := d.Decode(&obj); err != nil {
			return nil, fmt.Errorf("window result %q: %w", r.Value, err)
		}
		out := make([]any, len(fields))
		for i, f := range fields {
			v, ok := obj[f]
			if !ok {
				return nil, fmt.Errorf("window result %q has no field %s", r.Value, f)
			}
			var err error
			if out[i], err = pgValue(resultFieldKinds[f], v); err != nil {
				return nil, fmt.Errorf("window result field %s: %w", f, err)
			}
		}
		return out, nil
	}
	return p
}

// pgValue converts a JSON-decoded value (json.Number for numbers) to the
// Go value of kind: window starts and ends are milliseconds since the
// epoch, written as timestamps.
func pgValue(kind txsink.PostgresKind, v any) (any, error) {
	switch kind {
	case txsink.KindText:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case txsink.KindBytes:
		if s, ok := v.(string); ok { // base64, as encoding/json writes []byte
			var b []byte
			err := json.Unmarshal([]byte(fmt.Sprintf("%q", s)), &b)
			return b, err
		}
	case txsink.KindInt:
		if n, ok := v.(json.Number); ok {
			return n.Int64()
		}
	case txsink.KindFloat:
		if n, ok := v.(json.Number); ok {
			return n.Float64()
		}
	case txsink.KindTimestamp:
		switch t := v.(type) {
		case json.Number:
			ms, err := t.Int64()
			return time.UnixMilli(ms).UTC(), err
		case string:
			return time.Parse(time.RFC3339Nano, t)
		}
	}
	return nil, fmt.Errorf("%v (%T) is not a %s value", v, v, kind)
}

// PostgresOption configures ToPostgres.
type PostgresOption func(*sinkNode)

// PostgresUpsertOn makes the sink upsert (INSERT ... ON CONFLICT (cols)
// DO UPDATE) instead of insert: the table needs a unique constraint or
// primary key on exactly cols. An upsert sink uses one transaction at a
// time per subtask.
func PostgresUpsertOn(cols ...string) PostgresOption {
	return func(s *sinkNode) {
		s.spec.Mode = PostgresUpsert
		s.pg.conflict = cols
	}
}

// PostgresSinkUID sets the sink's stable id (see UID); default "sink-N".
// With exactly-once delivery it is part of the prepared transactions'
// ids and of the progress rows' owners.
func PostgresSinkUID(id string) PostgresOption {
	return func(s *sinkNode) { s.opts = append(s.opts, UID(id)) }
}

// PostgresMaxPendingBytes is MaxPendingBytes for a PostgreSQL sink.
func PostgresMaxPendingBytes(n int64) PostgresOption {
	return func(s *sinkNode) { s.spec.MaxPendingBytes = n }
}

// ToPostgres writes s to the PostgreSQL table (optionally
// "schema.table") of the database at dsn: row maps each value to the
// values of columns, in order. With exactly-once delivery (the Env's
// ExactlyOnce) each epoch's rows are written in a transaction that is
// prepared (PREPARE TRANSACTION) at the checkpoint barrier and committed
// (COMMIT PREPARED) when the checkpoint completes; after a crash, prepared
// transactions of completed checkpoints are committed and the others
// rolled back. The server needs max_prepared_transactions of at least
// twice the parallelism (once with upsert). With at-least-once delivery
// rows are written in ordinary transactions (a batch at a time, as they
// come), so before each checkpoint is acknowledged. At start the sink checks the table, the column types and
// (for upsert) the unique constraint, and fails the job with one line
// naming what is wrong. The dsn's password is never printed.
func ToPostgres[T any](s Stream[T], dsn, table string, columns []PostgresColumn, row func(T) ([]any, error), opts ...PostgresOption) {
	sk := &sinkNode{spec: SinkSpec{Kind: SinkPostgres, DSN: dsn, Table: table, Mode: PostgresInsert}, pg: &pgSink{columns: columns}}
	for _, o := range opts {
		o(sk)
	}
	registerDSN(dsn)
	if s.n == nil {
		return
	}
	kinds := make([]txsink.PostgresKind, len(columns))
	for i, c := range columns {
		kinds[i] = c.Kind
	}
	// The task encodes each value's row as a JSON array; the sink (and
	// its spill files) keep those bytes, and decode them by column kind.
	sk.pg.row = func(r txsink.Record) ([]any, error) { return decodePGRow(r.Value, kinds) }
	format := pgRowFormat[T]{row: row, n: len(columns)}
	addSink(s, sk, Format[T](format))
}

// pgRowFormat encodes a value's row as a JSON array for the sink.
type pgRowFormat[T any] struct {
	row func(T) ([]any, error)
	n   int
}

func (f pgRowFormat[T]) Encode(v T) ([]byte, []byte, error) {
	vals, err := f.row(v)
	if err != nil {
		return nil, nil, fmt.Errorf("weir: postgres row: %w", err)
	}
	if len(vals) != f.n {
		return nil, nil, fmt.Errorf("weir: postgres row: %d values for %d columns", len(vals), f.n)
	}
	b, err := json.Marshal(vals)
	if err != nil {
		return nil, nil, fmt.Errorf("weir: postgres row: %w", err)
	}
	return nil, b, nil
}

func (f pgRowFormat[T]) Decode(_, _ []byte) (T, error) {
	var zero T
	return zero, fmt.Errorf("weir: postgres rows are written, not read")
}

func decodePGRow(b []byte, kinds []txsink.PostgresKind) ([]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var vals []any
	if err := d.Decode(&vals); err != nil {
		return nil, fmt.Errorf("row %q: %w", b, err)
	}
	if len(vals) != len(kinds) {
		return nil, fmt.Errorf("row %q has %d values for %d columns", b, len(vals), len(kinds))
	}
	for i, v := range vals {
		if v == nil {
			continue // NULL
		}
		var err error
		if vals[i], err = pgValue(kinds[i], v); err != nil {
			return nil, fmt.Errorf("row %q column %d: %w", b, i, err)
		}
	}
	return vals, nil
}

// postgresConfig is the txsink configuration of subtask i of a postgres
// sink node.
func (j *Job) postgresConfig(n *node, i int) *txsink.PostgresConfig {
	sk := n.sink.spec
	return &txsink.PostgresConfig{
		DSN: sk.DSN, Table: sk.Table, Mode: sk.Mode,
		Columns: n.sink.pg.columns, Row: n.sink.pg.row, ConflictColumns: n.sink.pg.conflict,
		Owner:       txsink.Owner(j.spec.Name, n.uid, i),
		AtLeastOnce: j.spec.Delivery != ExactlyOnce,
		Failpoint:   j.opts.failpoint,
	}
}

// dsnPassword is the password of a PostgreSQL connection string, "" when
// it has none or does not parse.
func dsnPassword(dsn string) string {
	if dsn == "" {
		return ""
	}
	if c, err := pgx.ParseConfig(dsn); err == nil {
		return c.Password
	}
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		pw, _ := u.User.Password()
		return pw
	}
	return ""
}

// registerDSN makes RedactSecrets hide dsn's password.
func registerDSN(dsn string) {
	if pw := dsnPassword(dsn); pw != "" {
		kafkaconf.RegisterSecrets(map[string]string{"sink.dsn.password": pw})
	}
}

// redactDSN returns dsn with its password Redacted.
func redactDSN(dsn string) string {
	pw := dsnPassword(dsn)
	if pw == "" {
		return dsn
	}
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), kafkaconf.Redacted)
			return u.String()
		}
	}
	return strings.ReplaceAll(dsn, pw, kafkaconf.Redacted)
}

// validatePGSinkNode checks a PostgreSQL sink of a graph.
func validatePGSinkNode(n *node) error {
	sk := n.sink.spec
	if sk.DSN == "" || sk.Table == "" {
		return fmt.Errorf("weir: sink %s: ToPostgres needs a DSN and a table", n.uid)
	}
	if _, err := pgx.ParseConfig(sk.DSN); err != nil {
		return fmt.Errorf("weir: sink %s: the DSN does not parse as a PostgreSQL connection string; write e.g. postgres://user:password@host:5432/database", n.uid)
	}
	if len(n.sink.pg.columns) == 0 || n.sink.pg.row == nil {
		return fmt.Errorf("weir: sink %s: ToPostgres needs the columns and a row function", n.uid)
	}
	for _, c := range n.sink.pg.conflict {
		if !slices.ContainsFunc(n.sink.pg.columns, func(pc PostgresColumn) bool { return pc.Name == c }) {
			return fmt.Errorf("weir: sink %s: upsert column %s is not among the columns", n.uid, c)
		}
	}
	if err := validPendingBytes(sk.MaxPendingBytes); err != nil {
		return fmt.Errorf("weir: sink %s: MaxPendingBytes: %w", n.uid, err)
	}
	return nil
}

// checkPostgres runs the preflight of every PostgreSQL sink before any
// task starts (txsink.NewPostgres: the server's max_prepared_transactions,
// the table, its columns and unique constraint, the progress table): a
// misconfiguration (txsink.ErrConfig) ends the job at once with one line
// naming it, instead of restarting.
func (j *Job) checkPostgres(ctx context.Context) error {
	for _, n := range j.graph.sinks {
		if n.sink.pg == nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		b, err := txsink.NewPostgres(cctx, *j.postgresConfig(n, 0))
		cancel()
		if err != nil {
			return fmt.Errorf("sink %s: %w", n.uid, err)
		}
		b.Close()
	}
	return nil
}
