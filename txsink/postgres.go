package txsink

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultProgressTable is PostgresConfig.ProgressTable when it is not set.
const DefaultProgressTable = "weir_progress"

// PostgresMode is how the PostgreSQL backend writes rows.
type PostgresMode string

const (
	// PostgresInsert appends every row (COPY into the table).
	PostgresInsert PostgresMode = "insert"
	// PostgresUpsert inserts or updates on the conflict columns
	// (INSERT ... ON CONFLICT (cols) DO UPDATE), so the table holds the
	// latest row per key: the table needs a unique constraint or primary
	// key on exactly those columns.
	PostgresUpsert PostgresMode = "upsert"
)

// PostgresKind is the kind of Go value a column receives from the row
// mapping; the preflight checks the column's SQL type accepts it.
type PostgresKind string

// Column kinds and the SQL types that accept them.
const (
	KindText      PostgresKind = "text"      // string: text, varchar, char
	KindBytes     PostgresKind = "bytes"     // []byte: bytea
	KindInt       PostgresKind = "int"       // int64: bigint, integer, smallint, numeric
	KindFloat     PostgresKind = "float"     // float64: double precision, real, numeric
	KindTimestamp PostgresKind = "timestamp" // time.Time: timestamptz, timestamp
)

var kindTypes = map[PostgresKind][]string{
	KindText:      {"text", "varchar", "bpchar"},
	KindBytes:     {"bytea"},
	KindInt:       {"int8", "int4", "int2", "numeric"},
	KindFloat:     {"float8", "float4", "numeric"},
	KindTimestamp: {"timestamptz", "timestamp"},
}

// sqlTypeNames names the types of kindTypes as a user writes them.
var sqlTypeNames = map[string]string{
	"text": "text", "varchar": "varchar", "bpchar": "char", "bytea": "bytea",
	"int8": "bigint", "int4": "integer", "int2": "smallint", "numeric": "numeric",
	"float8": "double precision", "float4": "real",
	"timestamptz": "timestamptz", "timestamp": "timestamp",
}

// PostgresColumn is one column the sink writes.
type PostgresColumn struct {
	Name string
	Kind PostgresKind
}

// PostgresConfig configures the PostgreSQL backend of one sink subtask.
type PostgresConfig struct {
	// DSN is a pgx connection string (URL or key=value). It may hold a
	// password: the backend never prints it (errors name host:port and
	// database only).
	DSN string
	// Table is the target table, optionally schema-qualified
	// ("schema.table"). It must exist.
	Table string
	// Columns are the columns written, in the order Row returns values.
	// Default: key bytea, value bytea (Row nil writes Record.Key and
	// Record.Value).
	Columns []PostgresColumn
	// Row maps a record to the values of Columns. Default: Key, Value.
	Row func(Record) ([]any, error)
	// Mode is PostgresInsert (default) or PostgresUpsert.
	Mode PostgresMode
	// ConflictColumns are the upsert key (a unique constraint or primary
	// key of Table on exactly these columns). Required for upsert.
	ConflictColumns []string
	// ProgressTable holds the progress markers (owner text, epoch bigint,
	// primary key (owner, epoch)); created if missing. Default
	// DefaultProgressTable.
	ProgressTable string
	// Owner is the sink subtask's Config.Owner; IDs() are
	// PostgresIDs(Owner, Slots). Required.
	Owner string
	// Slots is the size of the transaction pool: default 2 for insert,
	// and 1 (the only size allowed) for upsert, where a key updated in two
	// open transactions would make the later wait on the earlier's row
	// lock until it commits, which the sink only does after the later's
	// barrier.
	Slots int
	// Batch caps the rows of one COPY (default 10000) or multi-row
	// INSERT statement (default 1000). BenchmarkPostgresWrite measured
	// COPY of 10,000 rows fastest on 2 cores.
	Batch int
	// UseInsert makes the insert mode use multi-row INSERT statements
	// instead of COPY (for comparison; COPY is the default).
	UseInsert bool
	// ConnectTimeout bounds each connection attempt. Default 10s.
	ConnectTimeout time.Duration
	// Failpoint, when set, is called at the named protocol steps
	// (between-data-and-marker, after-prepare, during-commit); tests arm
	// it to crash the process there.
	Failpoint func(name string) `json:"-"`
	// AtLeastOnce is for WriteCommitted only (no prepared transactions):
	// the preflight does not ask for max_prepared_transactions nor the
	// progress table.
	AtLeastOnce bool
}

// PostgresIDs returns the transactional identities of owner's slots:
// "<owner>#<slot>". They name the session-level advisory locks the slots'
// connections hold, which Fence uses to find earlier holders.
func PostgresIDs(owner string, slots int) []string {
	ids := make([]string, slots)
	for i := range ids {
		ids[i] = owner + "#" + strconv.Itoa(i)
	}
	return ids
}

// ownerOfID is the owner of a PostgresIDs identity.
func ownerOfID(id string) string {
	if i := strings.LastIndexByte(id, '#'); i >= 0 {
		return id[:i]
	}
	return id
}

// PostgresGID is the global transaction id under which the backend
// prepares owner's epoch: "weir:<owner>:<epoch>", the owner escaped to
// [A-Za-z0-9/_.#-] (others as %XX) and, when long, cut and followed by a
// hash, so the id stays under PostgreSQL's 200 bytes.
func PostgresGID(owner string, epoch uint64) string {
	return gidPrefix(owner) + strconv.FormatUint(epoch, 10)
}

func gidPrefix(owner string) string {
	var b strings.Builder
	for i := 0; i < len(owner); i++ {
		c := owner[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("/_.#-", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	s := b.String()
	if len(s) > 150 {
		h := fnv.New64a()
		h.Write([]byte(owner))
		s = fmt.Sprintf("%s~%016x", s[:120], h.Sum64())
	}
	return "weir:" + s + ":"
}

// lockKey is the advisory lock key of a transactional identity.
func lockKey(id string) int64 {
	h := fnv.New64a()
	h.Write([]byte("weir-txsink:" + id))
	return int64(h.Sum64())
}

// Postgres is a Backend on PostgreSQL's two-phase commit:
//
//   - each slot has a dedicated connection that holds a session-level
//     advisory lock on its identity (PostgresIDs) for as long as it lives;
//   - Begin runs BEGIN on the slot's connection; Write copies rows in
//     (COPY, or multi-row INSERT ... ON CONFLICT DO UPDATE for upsert);
//   - Prepare inserts the progress row (owner, epoch) into the progress
//     table in the same transaction and runs PREPARE TRANSACTION with
//     PostgresGID(owner, epoch);
//   - Commit runs COMMIT PREPARED and then deletes the owner's older
//     progress rows (committed, so nothing else holds them);
//   - Committed reads the highest epoch per owner from the progress table;
//   - Fence terminates the sessions holding the advisory locks of the ids
//     (their open transactions roll back, a zombie's later calls fail) and
//     opens this backend's slot connections, taking their locks;
//   - prepared transactions survive a crash: Resume (Resumer) commits the
//     one of a pending epoch that Recover would otherwise replay, and
//     Discard rolls back those left, of epochs after the checkpoint.
//
// NewPostgres checks the server and the tables before anything flows.
type Postgres struct {
	cfg      PostgresConfig
	ids      []string
	cols     []string
	ctl      *pgx.Conn   // Committed, Resume, Discard, Fence
	plain    *pgx.Conn   // WriteCommitted
	slots    []*pgx.Conn // by slot; opened by Fence
	owners   map[string]bool
	insert   string // upsert statement prefix
	conflict string // upsert statement suffix
	where    string // host:port/database, for errors (no password)
	closed   bool
}

// NewPostgres connects to the server and checks, before any data flows:
// max_prepared_transactions (at least Slots), the table and each column's
// type, the unique constraint an upsert needs, and the progress table
// (created when missing). Each failure is one line naming what is wrong
// and the fix, wrapping ErrConfig.
func NewPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	if cfg.DSN == "" {
		return nil, fmt.Errorf("%w: postgres: DSN is required", ErrConfig)
	}
	if cfg.Table == "" {
		return nil, fmt.Errorf("%w: postgres: Table is required", ErrConfig)
	}
	if cfg.Owner == "" {
		return nil, fmt.Errorf("%w: postgres: Owner is required", ErrConfig)
	}
	if cfg.Slots <= 0 {
		cfg.Slots = 2
		if cfg.Mode == PostgresUpsert {
			cfg.Slots = 1
		}
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
		if cfg.Mode != PostgresUpsert && !cfg.UseInsert {
			cfg.Batch = 10000
		}
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.ProgressTable == "" {
		cfg.ProgressTable = DefaultProgressTable
	}
	if cfg.Mode == "" {
		cfg.Mode = PostgresInsert
	}
	if len(cfg.Columns) == 0 {
		cfg.Columns = []PostgresColumn{{"key", KindBytes}, {"value", KindBytes}}
	}
	if cfg.Row == nil {
		cfg.Row = func(r Record) ([]any, error) { return []any{r.Key, r.Value}, nil }
	}
	switch cfg.Mode {
	case PostgresInsert:
	case PostgresUpsert:
		if len(cfg.ConflictColumns) == 0 {
			return nil, fmt.Errorf("%w: postgres: upsert into %s needs the conflict columns (its unique key, e.g. key, window_start)", ErrConfig, cfg.Table)
		}
		if cfg.Slots != 1 {
			return nil, fmt.Errorf("%w: postgres: upsert into %s with %d transaction slots: upsert takes one (an update of a key in two open transactions would wait for a commit that never comes); leave Slots unset", ErrConfig, cfg.Table, cfg.Slots)
		}
	default:
		return nil, fmt.Errorf("%w: postgres: mode %q: use insert or upsert", ErrConfig, cfg.Mode)
	}
	b := &Postgres{cfg: cfg, ids: PostgresIDs(cfg.Owner, cfg.Slots), slots: make([]*pgx.Conn, cfg.Slots), owners: map[string]bool{}}
	for _, c := range cfg.Columns {
		if _, ok := kindTypes[c.Kind]; !ok {
			return nil, fmt.Errorf("%w: postgres: column %s: kind %q: use text, bytes, int, float or timestamp", ErrConfig, c.Name, c.Kind)
		}
		b.cols = append(b.cols, c.Name)
	}
	for _, c := range cfg.ConflictColumns {
		if !slices.Contains(b.cols, c) {
			return nil, fmt.Errorf("%w: postgres: conflict column %s is not among the written columns %s", ErrConfig, c, strings.Join(b.cols, ", "))
		}
	}
	pc, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres: the DSN does not parse (%s): use postgres://user:password@host:port/database", ErrConfig, redactDSNError(err))
	}
	b.where = fmt.Sprintf("%s:%d/%s", pc.Host, pc.Port, pc.Database)
	ctl, err := b.connect(ctx)
	if err != nil {
		return nil, err
	}
	b.ctl = ctl
	if err := b.preflight(ctx); err != nil {
		ctl.Close(context.Background())
		return nil, err
	}
	b.buildUpsert()
	return b, nil
}

// redactDSNError is a DSN parse error without the DSN (pgconn masks
// passwords only on a best-effort basis).
func redactDSNError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return "invalid URL: " + ue.Err.Error()
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		return msg[i+3:]
	}
	return "invalid connection string"
}

func (b *Postgres) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.ConnectTimeout)
	defer cancel()
	pc, err := pgx.ParseConfig(b.cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres: the DSN does not parse (%s)", ErrConfig, redactDSNError(err))
	}
	pc.ConnectTimeout = b.cfg.ConnectTimeout
	c, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		// pgconn's error names host, user and database, never the password.
		return nil, fmt.Errorf("txsink: postgres: connect to %s: %w", b.where, err)
	}
	return c, nil
}

func (b *Postgres) ident(name string) string {
	return pgx.Identifier(strings.Split(name, ".")).Sanitize()
}

func (b *Postgres) preflight(ctx context.Context) error {
	if b.cfg.AtLeastOnce {
		return b.checkTable(ctx)
	}
	var mpt int
	if err := b.ctl.QueryRow(ctx, "SELECT current_setting('max_prepared_transactions')::int").Scan(&mpt); err != nil {
		return fmt.Errorf("txsink: postgres: %s: read max_prepared_transactions: %w", b.where, err)
	}
	if mpt < b.cfg.Slots {
		return fmt.Errorf("%w: postgres: %s has max_prepared_transactions = %d, and the exactly-once sink prepares up to %d transactions per subtask: set max_prepared_transactions to at least the sink's parallelism x %d (e.g. 64) in postgresql.conf and restart the server",
			ErrConfig, b.where, mpt, b.cfg.Slots, b.cfg.Slots)
	}
	if err := b.checkTable(ctx); err != nil {
		return err
	}
	return b.checkProgress(ctx)
}

// checkTable checks the target table: it exists, has the columns with
// types that take their kinds, and the unique constraint of an upsert.
func (b *Postgres) checkTable(ctx context.Context) error {
	types, err := b.columnTypes(ctx, b.cfg.Table)
	if err != nil {
		return err
	}
	if types == nil {
		return fmt.Errorf("%w: postgres: table %s does not exist in %s: create it, e.g. CREATE TABLE %s (%s)", ErrConfig, b.cfg.Table, b.where, b.ident(b.cfg.Table), b.exampleColumns())
	}
	for _, c := range b.cfg.Columns {
		typ, ok := types[c.Name]
		if !ok {
			return fmt.Errorf("%w: postgres: table %s has no column %s: ALTER TABLE %s ADD COLUMN %s %s", ErrConfig, b.cfg.Table, c.Name, b.ident(b.cfg.Table), pgx.Identifier{c.Name}.Sanitize(), sqlTypeNames[kindTypes[c.Kind][0]])
		}
		if !slices.Contains(kindTypes[c.Kind], typ) {
			var want []string
			for _, t := range kindTypes[c.Kind] {
				want = append(want, sqlTypeNames[t])
			}
			return fmt.Errorf("%w: postgres: column %s of table %s is %s but receives %s values: change its type to one of %s (ALTER TABLE %s ALTER COLUMN %s TYPE %s USING ...)",
				ErrConfig, c.Name, b.cfg.Table, typ, c.Kind, strings.Join(want, ", "), b.ident(b.cfg.Table), pgx.Identifier{c.Name}.Sanitize(), want[0])
		}
	}
	if b.cfg.Mode == PostgresUpsert {
		ok, err := b.hasUnique(ctx, b.cfg.Table, b.cfg.ConflictColumns)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: postgres: table %s has no unique constraint on (%s), which upsert needs: ALTER TABLE %s ADD UNIQUE (%s)",
				ErrConfig, b.cfg.Table, strings.Join(b.cfg.ConflictColumns, ", "), b.ident(b.cfg.Table), strings.Join(b.cfg.ConflictColumns, ", "))
		}
	}
	return nil
}

// checkProgress checks the progress table, creating it when missing.
func (b *Postgres) checkProgress(ctx context.Context) error {
	pt := b.cfg.ProgressTable
	types, err := b.columnTypes(ctx, pt)
	if err != nil {
		return err
	}
	if types == nil {
		// Subtasks start together: CREATE TABLE IF NOT EXISTS is not safe
		// against a concurrent one, so they take turns.
		create := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (owner text NOT NULL, epoch bigint NOT NULL, PRIMARY KEY (owner, epoch))", b.ident(pt))
		err := pgx.BeginFunc(ctx, b.ctl, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("create:"+pt)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, create)
			return err
		})
		if err != nil {
			return fmt.Errorf("%w: postgres: create the progress table %s in %s: %v: create it yourself: CREATE TABLE %s (owner text NOT NULL, epoch bigint NOT NULL, PRIMARY KEY (owner, epoch))",
				ErrConfig, pt, b.where, err, b.ident(pt))
		}
		return nil
	}
	if types["owner"] != "text" || types["epoch"] != "int8" {
		return fmt.Errorf("%w: postgres: progress table %s has columns %v, not (owner text, epoch bigint): drop it or set another progress table", ErrConfig, pt, types)
	}
	ok, err := b.hasUnique(ctx, pt, []string{"owner", "epoch"})
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: postgres: progress table %s has no primary key (owner, epoch): ALTER TABLE %s ADD PRIMARY KEY (owner, epoch)", ErrConfig, pt, b.ident(pt))
	}
	return nil
}

func (b *Postgres) exampleColumns() string {
	var cols []string
	for _, c := range b.cfg.Columns {
		cols = append(cols, pgx.Identifier{c.Name}.Sanitize()+" "+sqlTypeNames[kindTypes[c.Kind][0]])
	}
	if b.cfg.Mode == PostgresUpsert {
		cols = append(cols, "PRIMARY KEY ("+strings.Join(b.cfg.ConflictColumns, ", ")+")")
	}
	return strings.Join(cols, ", ")
}

// columnTypes returns the type name of each column of table, or nil when
// the table does not exist.
func (b *Postgres) columnTypes(ctx context.Context, table string) (map[string]string, error) {
	var exists bool
	if err := b.ctl.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", b.ident(table)).Scan(&exists); err != nil {
		return nil, fmt.Errorf("txsink: postgres: %s: look up table %s: %w", b.where, table, err)
	}
	if !exists {
		return nil, nil
	}
	rows, err := b.ctl.Query(ctx, `SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, b.ident(table))
	if err != nil {
		return nil, fmt.Errorf("txsink: postgres: %s: read the columns of %s: %w", b.where, table, err)
	}
	types := map[string]string{}
	for rows.Next() {
		var n, t string
		if err := rows.Scan(&n, &t); err != nil {
			rows.Close()
			return nil, err
		}
		types[n] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("txsink: postgres: %s: read the columns of %s: %w", b.where, table, err)
	}
	return types, nil
}

// hasUnique reports whether table has a unique index (constraint or
// primary key, no predicate) on exactly cols.
func (b *Postgres) hasUnique(ctx context.Context, table string, cols []string) (bool, error) {
	rows, err := b.ctl.Query(ctx, `SELECT array(SELECT a.attname::text FROM unnest(i.indkey) k JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k)
		FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL`, b.ident(table))
	if err != nil {
		return false, fmt.Errorf("txsink: postgres: %s: read the unique indexes of %s: %w", b.where, table, err)
	}
	defer rows.Close()
	want := slices.Clone(cols)
	slices.Sort(want)
	for rows.Next() {
		var got []string
		if err := rows.Scan(&got); err != nil {
			return false, err
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return true, nil
		}
	}
	return false, rows.Err()
}

func (b *Postgres) buildUpsert() {
	var cols []string
	for _, c := range b.cols {
		cols = append(cols, pgx.Identifier{c}.Sanitize())
	}
	b.insert = fmt.Sprintf("INSERT INTO %s (%s) VALUES ", b.ident(b.cfg.Table), strings.Join(cols, ", "))
	if b.cfg.Mode != PostgresUpsert {
		return
	}
	var conf, set []string
	for _, c := range b.cfg.ConflictColumns {
		conf = append(conf, pgx.Identifier{c}.Sanitize())
	}
	for _, c := range b.cols {
		if !slices.Contains(b.cfg.ConflictColumns, c) {
			q := pgx.Identifier{c}.Sanitize()
			set = append(set, q+" = EXCLUDED."+q)
		}
	}
	if len(set) == 0 {
		b.conflict = " ON CONFLICT (" + strings.Join(conf, ", ") + ") DO NOTHING"
	} else {
		b.conflict = " ON CONFLICT (" + strings.Join(conf, ", ") + ") DO UPDATE SET " + strings.Join(set, ", ")
	}
}

// IDs implements Backend.
func (b *Postgres) IDs() []string { return slices.Clone(b.ids) }

// Fence implements Backend: it terminates every other session holding the
// advisory lock of any of ids (an earlier instance's slot connections:
// their open transactions roll back and their later calls fail), waiting
// for each to end, then opens this backend's slot connections and takes
// their locks. The owners of ids are remembered for Discard.
func (b *Postgres) Fence(ctx context.Context, ids []string) error {
	if b.closed {
		return fmt.Errorf("txsink: postgres: fence: %w", ErrClosed)
	}
	for _, c := range b.slots {
		if c != nil {
			c.Close(ctx)
		}
	}
	clear(b.slots)
	keys := make([]int64, len(ids))
	for i, id := range ids {
		keys[i] = lockKey(id)
		b.owners[ownerOfID(id)] = true
	}
	// pg_terminate_backend(pid, timeout) waits for the session to end.
	rows, err := b.ctl.Query(ctx, `SELECT l.pid, pg_terminate_backend(l.pid, 30000) FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND l.pid <> pg_backend_pid()
		AND ((l.classid::bigint << 32) | l.objid::bigint) = ANY($1)`, keys)
	if err != nil {
		return fmt.Errorf("txsink: postgres: fence %d ids: %w", len(ids), err)
	}
	for rows.Next() {
		var pid int32
		var ok bool
		if err := rows.Scan(&pid, &ok); err != nil {
			rows.Close()
			return fmt.Errorf("txsink: postgres: fence: %w", err)
		}
		if !ok {
			rows.Close()
			return fmt.Errorf("txsink: postgres: fence: session %d holding a slot lock did not end within 30s", pid)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("txsink: postgres: fence %d ids: %w", len(ids), err)
	}
	for i, id := range b.ids {
		c, err := b.connect(ctx)
		if err != nil {
			return fmt.Errorf("txsink: postgres: fence: slot %d: %w", i, err)
		}
		// A holder that connected since the query above is fenced by
		// the wait failing (lock_timeout); the caller retries Recover.
		if _, err := c.Exec(ctx, "SET lock_timeout = '30s'"); err != nil {
			c.Close(ctx)
			return fmt.Errorf("txsink: postgres: fence: slot %d: %w", i, err)
		}
		if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey(id)); err != nil {
			c.Close(ctx)
			return fmt.Errorf("txsink: postgres: fence: lock %s: %w", id, err)
		}
		b.slots[i] = c
	}
	return nil
}

// Committed implements Backend.
func (b *Postgres) Committed(ctx context.Context, owners []string) (map[string]uint64, error) {
	rows, err := b.ctl.Query(ctx, fmt.Sprintf("SELECT owner, max(epoch) FROM %s WHERE owner = ANY($1) GROUP BY owner", b.ident(b.cfg.ProgressTable)), owners)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres: read %s: %w", ErrProgress, b.cfg.ProgressTable, err)
	}
	out := map[string]uint64{}
	for rows.Next() {
		var o string
		var e int64
		if err := rows.Scan(&o, &e); err != nil {
			rows.Close()
			return nil, fmt.Errorf("%w: postgres: %w", ErrProgress, err)
		}
		out[o] = uint64(e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: postgres: read %s: %w", ErrProgress, b.cfg.ProgressTable, err)
	}
	return out, nil
}

// Resume implements Resumer: it commits the prepared transaction of
// owner's epoch if there is one.
func (b *Postgres) Resume(ctx context.Context, owner string, epoch uint64) (bool, error) {
	gid := PostgresGID(owner, epoch)
	var n int
	if err := b.ctl.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = $1 AND database = current_database()", gid).Scan(&n); err != nil {
		return false, fmt.Errorf("txsink: postgres: resume %s: %w", gid, err)
	}
	if n == 0 {
		return false, nil
	}
	if _, err := b.ctl.Exec(ctx, "COMMIT PREPARED "+quoteLiteral(gid)); err != nil {
		return false, fmt.Errorf("%w: postgres: resume: COMMIT PREPARED %s: %w", ErrCommit, gid, err)
	}
	b.owners[owner] = true
	return true, b.trimProgress(ctx, b.ctl, owner, epoch)
}

// Discard implements Resumer: it rolls back every prepared transaction of
// owners and of the owners of the fenced ids.
func (b *Postgres) Discard(ctx context.Context, owners []string) error {
	for _, o := range owners {
		b.owners[o] = true
	}
	var prefixes []string
	for o := range b.owners {
		prefixes = append(prefixes, gidPrefix(o))
	}
	rows, err := b.ctl.Query(ctx, "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE 'weir:%'")
	if err != nil {
		return fmt.Errorf("txsink: postgres: list prepared transactions: %w", err)
	}
	gids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("txsink: postgres: list prepared transactions: %w", err)
	}
	for _, gid := range gids {
		for _, p := range prefixes {
			rest, ok := strings.CutPrefix(gid, p)
			if !ok {
				continue
			}
			if _, err := strconv.ParseUint(rest, 10, 64); err != nil {
				continue
			}
			if _, err := b.ctl.Exec(ctx, "ROLLBACK PREPARED "+quoteLiteral(gid)); err != nil {
				return fmt.Errorf("txsink: postgres: ROLLBACK PREPARED %s: %w", gid, err)
			}
		}
	}
	return nil
}

// Prepared lists the global ids of the prepared transactions of owner on
// the server (for tests and tools).
func (b *Postgres) Prepared(ctx context.Context, owner string) ([]string, error) {
	rows, err := b.ctl.Query(ctx, "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND starts_with(gid, $1) ORDER BY gid", gidPrefix(owner))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// trimProgress deletes owner's progress rows below epoch, which is
// committed (so are they: commits go in epoch order).
func (b *Postgres) trimProgress(ctx context.Context, c *pgx.Conn, owner string, epoch uint64) error {
	if _, err := c.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE owner = $1 AND epoch < $2", b.ident(b.cfg.ProgressTable)), owner, int64(epoch)); err != nil {
		return fmt.Errorf("txsink: postgres: trim progress of %s below %d: %w", owner, epoch, fenced(err))
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Begin implements Backend.
func (b *Postgres) Begin(ctx context.Context, slot int) (Txn, error) {
	if b.closed {
		return nil, fmt.Errorf("txsink: postgres: begin: %w", ErrClosed)
	}
	if slot < 0 || slot >= len(b.slots) || b.slots[slot] == nil {
		return nil, fmt.Errorf("txsink: postgres: begin on slot %d: not fenced (Fence opens the slots)", slot)
	}
	c := b.slots[slot]
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		return nil, fmt.Errorf("txsink: postgres: begin %s: %w", b.ids[slot], fenced(err))
	}
	return &pgTxn{b: b, c: c, id: b.ids[slot]}, nil
}

// fenced wraps err with ErrFenced when the session was terminated (Fence
// of a newer instance) or its connection is gone.
func fenced(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "57P01" { // admin_shutdown: pg_terminate_backend
		return fmt.Errorf("%w: session terminated (another instance fenced it, or the server shut down): %w", ErrFenced, err)
	}
	return err
}

// Close implements Backend: it closes the connections; open transactions
// roll back, prepared ones stay for the next Recover.
func (b *Postgres) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range append(b.slots, b.plain) {
		if c != nil {
			c.Close(ctx)
		}
	}
	return b.ctl.Close(ctx)
}

type pgTxn struct {
	b        *Postgres
	c        *pgx.Conn
	id       string
	gid      string // once prepared
	owner    string
	epoch    uint64
	prepared bool
	done     bool
	rows     [][]any
}

// Write implements Txn: it maps the records to rows and writes them in
// batches of PostgresConfig.Batch rows.
func (t *pgTxn) Write(ctx context.Context, recs []Record) error {
	if t.done || t.prepared {
		return fmt.Errorf("txsink: postgres: write on %s: transaction prepared or ended", t.id)
	}
	b := t.b
	for len(recs) > 0 {
		n := min(len(recs), b.cfg.Batch)
		rows := t.rows[:0]
		for _, r := range recs[:n] {
			row, err := b.cfg.Row(r)
			if err != nil {
				return fmt.Errorf("txsink: postgres: map a record to a row of %s: %w", b.cfg.Table, err)
			}
			if len(row) != len(b.cols) {
				return fmt.Errorf("txsink: postgres: the row mapping returned %d values for the %d columns %s", len(row), len(b.cols), strings.Join(b.cols, ", "))
			}
			rows = append(rows, row)
		}
		t.rows = rows
		var err error
		if b.cfg.Mode == PostgresInsert && !b.cfg.UseInsert {
			_, err = t.c.CopyFrom(ctx, pgx.Identifier(strings.Split(b.cfg.Table, ".")), b.cols, pgx.CopyFromRows(rows))
		} else {
			err = t.insertRows(ctx, rows)
		}
		clear(t.rows)
		if err != nil {
			return fmt.Errorf("txsink: postgres: write %d rows to %s on %s: %w", len(rows), b.cfg.Table, t.id, fenced(err))
		}
		recs = recs[n:]
	}
	return nil
}

// insertRows writes rows with one multi-row INSERT (ON CONFLICT for
// upsert; a later row of the same key wins).
func (t *pgTxn) insertRows(ctx context.Context, rows [][]any) error {
	b := t.b
	if b.cfg.Mode == PostgresUpsert {
		rows = lastPerKey(rows, b.cols, b.cfg.ConflictColumns)
	}
	// PostgreSQL takes at most 65535 parameters per statement.
	per := max(1, 65535/len(b.cols))
	for len(rows) > 0 {
		n := min(len(rows), per)
		var sql strings.Builder
		sql.WriteString(b.insert)
		args := make([]any, 0, n*len(b.cols))
		for i, row := range rows[:n] {
			if i > 0 {
				sql.WriteByte(',')
			}
			sql.WriteByte('(')
			for j, v := range row {
				if j > 0 {
					sql.WriteByte(',')
				}
				args = append(args, v)
				sql.WriteString("$" + strconv.Itoa(len(args)))
			}
			sql.WriteByte(')')
		}
		sql.WriteString(b.conflict)
		if _, err := t.c.Exec(ctx, sql.String(), args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// lastPerKey keeps the last row of each conflict key, in first-seen order
// (an INSERT ... ON CONFLICT DO UPDATE may not touch a row twice).
func lastPerKey(rows [][]any, cols, key []string) [][]any {
	idx := make([]int, len(key))
	for i, k := range key {
		idx[i] = slices.Index(cols, k)
	}
	at := make(map[string]int, len(rows))
	out := rows[:0:0]
	for _, row := range rows {
		var kb strings.Builder
		for _, i := range idx {
			fmt.Fprintf(&kb, "%T:%v\x00", row[i], row[i])
		}
		k := kb.String()
		if j, ok := at[k]; ok {
			out[j] = row
			continue
		}
		at[k] = len(out)
		out = append(out, row)
	}
	return out
}

// Prepare implements Txn: it inserts the progress row and prepares the
// transaction as PostgresGID(owner, epoch).
func (t *pgTxn) Prepare(ctx context.Context, owner string, epoch uint64) error {
	if t.done || t.prepared {
		return fmt.Errorf("txsink: postgres: prepare on %s: transaction prepared or ended", t.id)
	}
	if owner == "" || epoch == 0 || epoch > 1<<63-1 {
		return fmt.Errorf("txsink: postgres: prepare on %s: marker needs an owner and an epoch in [1, 2^63)", t.id)
	}
	t.b.failpoint("between-data-and-marker")
	gid := PostgresGID(owner, epoch)
	if _, err := t.c.Exec(ctx, fmt.Sprintf("INSERT INTO %s (owner, epoch) VALUES ($1, $2)", t.b.ident(t.b.cfg.ProgressTable)), owner, int64(epoch)); err != nil {
		return fmt.Errorf("txsink: postgres: prepare %s: progress row: %w", gid, fenced(err))
	}
	if _, err := t.c.Exec(ctx, "PREPARE TRANSACTION "+quoteLiteral(gid)); err != nil {
		return fmt.Errorf("txsink: postgres: PREPARE TRANSACTION %s: %w", gid, fenced(err))
	}
	t.prepared, t.gid, t.owner, t.epoch = true, gid, owner, epoch
	t.b.failpoint("after-prepare")
	return nil
}

func (b *Postgres) failpoint(name string) {
	if b.cfg.Failpoint != nil {
		b.cfg.Failpoint(name)
	}
}

// WriteCommitted writes recs in one ordinary transaction (BEGIN, the
// batched writes, COMMIT) on a connection of its own: the at-least-once
// sink. It needs no Fence.
func (b *Postgres) WriteCommitted(ctx context.Context, recs []Record) error {
	if b.closed {
		return fmt.Errorf("txsink: postgres: write: %w", ErrClosed)
	}
	if b.plain == nil {
		c, err := b.connect(ctx)
		if err != nil {
			return err
		}
		b.plain = c
	}
	fail := func(err error) error {
		b.plain.Close(context.Background())
		b.plain = nil
		return fmt.Errorf("txsink: postgres: write %d rows to %s: %w", len(recs), b.cfg.Table, err)
	}
	if _, err := b.plain.Exec(ctx, "BEGIN"); err != nil {
		return fail(err)
	}
	t := &pgTxn{b: b, c: b.plain, id: "at-least-once"}
	if err := t.Write(ctx, recs); err != nil {
		return fail(err)
	}
	if _, err := b.plain.Exec(ctx, "COMMIT"); err != nil {
		return fail(err)
	}
	return nil
}

// Commit implements Txn: COMMIT PREPARED, then the owner's older progress
// rows are deleted.
func (t *pgTxn) Commit(ctx context.Context) error {
	if t.done || !t.prepared {
		return fmt.Errorf("txsink: postgres: commit on %s: transaction not prepared or ended", t.id)
	}
	t.b.failpoint("during-commit")
	if _, err := t.c.Exec(ctx, "COMMIT PREPARED "+quoteLiteral(t.gid)); err != nil {
		return fmt.Errorf("txsink: postgres: COMMIT PREPARED %s: %w", t.gid, fenced(err))
	}
	t.done = true
	return t.b.trimProgress(ctx, t.c, t.owner, t.epoch)
}

// Abort implements Txn: ROLLBACK, or ROLLBACK PREPARED once prepared.
func (t *pgTxn) Abort(ctx context.Context) error {
	if t.done {
		return fmt.Errorf("txsink: postgres: abort on %s: transaction already ended", t.id)
	}
	t.done = true
	q := "ROLLBACK"
	if t.prepared {
		q = "ROLLBACK PREPARED " + quoteLiteral(t.gid)
	}
	if _, err := t.c.Exec(ctx, q); err != nil {
		return fmt.Errorf("txsink: postgres: %s on %s: %w", q, t.id, fenced(err))
	}
	return nil
}
