package weir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir/internal/kafkaconf"
	"gopkg.in/yaml.v3"
)

// The job file of `engine run --config job.yaml` is a thin YAML layer over
// JobSpec: one key per field, nested as the struct is (see the field comments
// of JobSpec and docs/jobfile.md). ParseJobFile walks the YAML tree itself,
// rather than decoding into tagged structs, so that every error names the
// full dotted key, its line and a fix.

// MaxJobFileBytes is the largest job file LoadJobFile reads.
const MaxJobFileBytes = 1 << 20

// JobFileError is an error in a job file. Its message is one line:
//
//	job file[ PATH][ line N]: [KEY: ]MSG
//
// for example `job file job.yaml line 7: window.size: "10x" is not a
// duration; write e.g. 10s or 500ms`.
type JobFileError struct {
	Path string // the file, as given to LoadJobFile; "" from ParseJobFile
	Line int    // 1-based line of the offending key or value; 0 if none
	Key  string // full dotted job file key, e.g. "window.size"; "" for the whole file
	Msg  string // what is wrong and how to fix it
	Err  error  // underlying error (*SpecError, file system or YAML error), or nil
}

func (e *JobFileError) Error() string {
	var b strings.Builder
	b.WriteString("job file")
	if e.Path != "" {
		b.WriteString(" ")
		b.WriteString(e.Path)
	}
	if e.Line > 0 {
		b.WriteString(" line ")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(displayKey(e.Key))
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *JobFileError) Unwrap() error { return e.Err }

// LoadJobFile reads and parses the job file at path (see ParseJobFile). Its
// errors are *JobFileError naming the path.
func LoadJobFile(path string) (JobSpec, error) {
	fail := func(msg string, err error) (JobSpec, error) {
		return JobSpec{}, &JobFileError{Path: path, Msg: msg, Err: err}
	}
	openErr := func(err error) (JobSpec, error) {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fail("no such file; check the path given to --config", err)
		case errors.Is(err, fs.ErrPermission):
			return fail("permission denied; make the file readable", err)
		}
		return fail("cannot open it: "+oneLine(pathErrCause(err)), err)
	}
	// Only a regular file is read: a FIFO would block the open and the
	// read until a writer comes, a device or socket never ends. The file
	// is looked at before it is opened, and opened without blocking (which
	// a regular file ignores) and looked at again, in case it was replaced.
	fi, err := os.Stat(path)
	if err != nil {
		return openErr(err)
	}
	if msg := notRegular(fi); msg != "" {
		return fail(msg, nil)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return openErr(err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return fail("cannot read it: "+oneLine(pathErrCause(err)), err)
	} else if msg := notRegular(fi); msg != "" {
		return fail(msg, nil)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxJobFileBytes+1))
	if err != nil {
		return fail("cannot read it: "+oneLine(pathErrCause(err)), err)
	}
	if len(data) > MaxJobFileBytes {
		return fail(fmt.Sprintf("is larger than %d bytes; a job file is a short YAML file", MaxJobFileBytes), nil)
	}
	s, err := ParseJobFile(data)
	if err != nil {
		var je *JobFileError
		if errors.As(err, &je) {
			c := *je
			c.Path = path
			return JobSpec{}, &c
		}
		return JobSpec{}, fmt.Errorf("job file %s: %w", path, err)
	}
	return s, nil
}

// notRegular says why fi is not a job file, "" for a regular file.
func notRegular(fi fs.FileInfo) string {
	m := fi.Mode()
	var what string
	switch {
	case m.IsRegular():
		return ""
	case m.IsDir():
		return "is a directory; give the path of a YAML file"
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	case m&fs.ModeDevice != 0:
		what = "a device"
	default:
		what = "a special file (" + m.Type().String() + ")"
	}
	return "is " + what + ", not a regular file; write the job to a file and give its path"
}

func pathErrCause(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// ParseJobFile parses a job file: one YAML document holding a map whose keys
// are those of JobSpec (docs/jobfile.md). It applies WithDefaults and
// Validate, so a nil error means the spec is ready to run. Every error is a
// *JobFileError whose one-line message names the key and, where the key is in
// the file, its line; errors found by Validate wrap its *SpecError.
func ParseJobFile(data []byte) (JobSpec, error) {
	root, err := jobFileRoot(data)
	if err != nil {
		return JobSpec{}, err
	}
	p := &jobParser{lines: map[string]int{}}
	if err := p.mapping("", root, jobFileSchema(&p.spec)); err != nil {
		return JobSpec{}, err
	}
	s := p.spec.WithDefaults()
	RegisterSecrets(s)
	err = s.Validate()
	if err == nil && s.Kind == KindDataflow {
		err = specErr("kind", "dataflow jobs are Go programs built with weir.NewEnv; a job file uses kind window or passthrough")
	}
	if err != nil {
		je := &JobFileError{Msg: err.Error(), Err: err}
		var se *SpecError
		if errors.As(err, &se) {
			je.Key, je.Msg, je.Line = se.Key, oneLine(se.Msg), p.lines[se.Key]
		}
		return JobSpec{}, je
	}
	return s, nil
}

// jobFileRoot decodes data and returns the top-level mapping node.
func jobFileRoot(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root *yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, yamlError(err)
		}
		if len(doc.Content) == 0 || isNull(doc.Content[0]) {
			continue // an empty document, e.g. a lone or trailing ---
		}
		if root != nil {
			return nil, &JobFileError{Line: doc.Content[0].Line,
				Msg: "a second YAML document starts here; a job file holds one job, so remove the --- line and merge or delete the rest"}
		}
		root = doc.Content[0]
	}
	if root == nil {
		return nil, &JobFileError{Msg: "the file is empty; write a job such as examples/job.yaml (keys: docs/jobfile.md)"}
	}
	if root.Kind == yaml.AliasNode {
		root = root.Alias
	}
	if root.Kind != yaml.MappingNode {
		return nil, &JobFileError{Line: root.Line,
			Msg: fmt.Sprintf("the file holds %s, but a job file is a map of keys such as name:, brokers: and source:", describe(root))}
	}
	return root, nil
}

// yamlError turns a yaml.v3 syntax error ("yaml: line 3: did not find ...")
// into a one-line JobFileError.
func yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ": "); i > 0 {
			if n, perr := strconv.Atoi(rest[:i]); perr == nil {
				line, msg = n, rest[i+2:]
			}
		}
	}
	return &JobFileError{Line: line, Err: err,
		Msg: "not valid YAML: " + oneLine(msg) + "; check indentation (spaces, not tabs), colons after keys and matching quotes and brackets"}
}

// fieldKind is the type of a job file key.
type fieldKind int

const (
	kindString    fieldKind = iota // any scalar but a boolean, as text
	kindInt                        // a whole number
	kindDuration                   // Go duration syntax: 10s, 1m30s, 500ms
	kindTimestamp                  // ms since the epoch or RFC 3339
	kindSection                    // a map of known keys
	kindProps                      // a map of librdkafka properties to scalars
	kindOffsets                    // a map of partition to offset
	kindBool                       // true or false
	kindList                       // a list of strings
	kindSize                       // bytes: 1048576, or with a binary unit: 256MiB, 4KiB
	kindMemory                     // a memory limit: a size of at least MinMemoryLimit, or off
)

// bound restricts numbers and durations.
type bound int

const (
	anyValue bound = iota
	nonNegative
	positive
)

// field is one key of the job file schema, bound to the JobSpec field it sets.
type field struct {
	name    string
	kind    fieldKind
	bound   bound
	example string // a valid value, for hints

	str     *string
	num     *int
	dur     *time.Duration
	ts      *time.Time
	props   *map[string]string
	offsets *map[int32]int64
	flag    *bool
	list    *[]string
	size    *int64
	sub     []field

	// negate stores the opposite of a boolean (a Go field that is false by
	// default for a key that is true by default).
	negate bool
	// zeroMeans, when set, is stored for a duration of 0 (a Go field whose
	// zero value means "the default").
	zeroMeans *time.Duration
}

// discoveryOff is what source.partition_discovery_interval: 0 stores.
var discoveryOff = NoPartitionDiscovery

// jobFileSchema is the job file: every key and the field of s it sets.
func jobFileSchema(s *JobSpec) []field {
	return []field{
		{name: "name", kind: kindString, example: "clicks-per-user", str: &s.Name},
		{name: "brokers", kind: kindString, example: "127.0.0.1:9092", str: &s.Brokers},
		{name: "kind", kind: kindString, example: "passthrough", str: (*string)(&s.Kind)},
		{name: "parallelism", kind: kindInt, bound: positive, example: "4", num: &s.Parallelism},
		{name: "source", kind: kindSection, sub: []field{
			{name: "topic", kind: kindString, example: "clicks", str: &s.Source.Topic},
			{name: "group", kind: kindString, example: "weir-clicks-per-user", str: &s.Source.Group},
			{name: "start", kind: kindSection, sub: []field{
				{name: "mode", kind: kindString, example: "earliest", str: (*string)(&s.Source.Start.Mode)},
				{name: "auto_offset_reset", kind: kindString, example: "earliest", str: &s.Source.Start.AutoOffsetReset},
				{name: "timestamp", kind: kindTimestamp, example: "2024-05-01T12:00:00Z", ts: &s.Source.Start.Timestamp},
				{name: "offsets", kind: kindOffsets, example: "{0: 42, 1: 7}", offsets: &s.Source.Start.Offsets},
			}},
			{name: "bounded", kind: kindString, example: "latest", str: (*string)(&s.Source.Bounded)},
			{name: "bounded_timestamp", kind: kindTimestamp, example: "2024-05-01T13:00:00Z", ts: &s.Source.BoundedTimestamp},
			{name: "bounded_offsets", kind: kindOffsets, example: "{0: 1000, 1: 800}", offsets: &s.Source.BoundedOffsets},
			{name: "isolation", kind: kindString, example: "read_committed", str: (*string)(&s.Source.Isolation)},
			{name: "commit_offsets_on_checkpoint", kind: kindBool, example: "true", flag: &s.Source.DisableOffsetCommit, negate: true},
			{name: "partition_discovery_interval", kind: kindDuration, bound: nonNegative, example: "5m",
				dur: &s.Source.PartitionDiscoveryInterval, zeroMeans: &discoveryOff},
			{name: "properties", kind: kindProps, example: "fetch.max.bytes: 52428800", props: &s.Source.Properties},
		}},
		{name: "key_field", kind: kindString, example: "user", str: &s.KeyField},
		{name: "timestamp_field", kind: kindString, example: "ts", str: &s.TimestampField},
		{name: "window", kind: kindSection, sub: []field{
			{name: "kind", kind: kindString, example: "sliding", str: &s.Window.Kind},
			{name: "size", kind: kindDuration, bound: positive, example: "10s", dur: &s.Window.Size},
			{name: "slide", kind: kindDuration, bound: positive, example: "5s", dur: &s.Window.Slide},
			{name: "gap", kind: kindDuration, bound: positive, example: "30s", dur: &s.Window.Gap},
			{name: "offset", kind: kindDuration, bound: anyValue, example: "-8h", dur: &s.Window.Offset},
			{name: "allowed_lateness", kind: kindDuration, bound: nonNegative, example: "1m", dur: &s.Window.AllowedLateness},
			{name: "late_topic", kind: kindString, example: "clicks-late", str: &s.Window.LateTopic},
			{name: "out_of_orderness", kind: kindDuration, bound: nonNegative, example: "2s", dur: &s.Window.OutOfOrderness},
			{name: "idle_timeout", kind: kindDuration, bound: nonNegative, example: "30s", dur: &s.Window.IdleTimeout},
			{name: "max_future", kind: kindDuration, bound: nonNegative, example: "1h", dur: &s.Window.MaxFuture},
		}},
		{name: "aggregate", kind: kindSection, sub: []field{
			{name: "value_field", kind: kindString, example: "amount", str: &s.Aggregate.ValueField},
			{name: "functions", kind: kindList, example: "[count, sum, max]", list: &s.Aggregate.Functions},
		}},
		{name: "sink", kind: kindSection, sub: []field{
			{name: "kind", kind: kindString, example: "postgres", str: (*string)(&s.Sink.Kind)},
			{name: "topic", kind: kindString, example: "clicks-per-user", str: &s.Sink.Topic},
			{name: "dsn", kind: kindString, example: "postgres://weir:PASSWORD@db:5432/analytics", str: &s.Sink.DSN},
			{name: "table", kind: kindString, example: "clicks_per_user", str: &s.Sink.Table},
			{name: "mode", kind: kindString, example: "upsert", str: (*string)(&s.Sink.Mode)},
			{name: "columns", kind: kindProps, example: "{user_id: key, clicks: count}", props: &s.Sink.Columns},
			{name: "progress_topic", kind: kindString, example: "clicks-per-user.weir-progress", str: &s.Sink.ProgressTopic},
			{name: "transaction_timeout", kind: kindDuration, bound: nonNegative, example: "15m", dur: &s.Sink.TransactionTimeout},
			{name: "transactional_id_prefix", kind: kindString, example: "weir-clicks-per-user", str: &s.Sink.TransactionalIDPrefix},
			{name: "properties", kind: kindProps, example: "linger.ms: 5", props: &s.Sink.Properties},
			{name: "max_pending_bytes", kind: kindSize, bound: positive, example: "64MiB", size: &s.Sink.MaxPendingBytes},
		}},
		{name: "delivery", kind: kindString, example: "exactly-once", str: (*string)(&s.Delivery)},
		{name: "checkpoint", kind: kindSection, sub: []field{
			{name: "interval", kind: kindDuration, bound: nonNegative, example: "1s", dur: &s.Checkpoint.Interval},
			{name: "dir", kind: kindString, example: "/var/lib/weir/checkpoints", str: &s.Checkpoint.Dir},
			{name: "timeout", kind: kindDuration, bound: positive, example: "10m", dur: &s.Checkpoint.Timeout},
			{name: "min_pause", kind: kindDuration, bound: nonNegative, example: "500ms", dur: &s.Checkpoint.MinPause},
			{name: "max_concurrent", kind: kindInt, bound: positive, example: "1", num: &s.Checkpoint.MaxConcurrent},
			{name: "retain", kind: kindInt, bound: positive, example: "3", num: &s.Checkpoint.Retain},
			{name: "tolerable_failures", kind: kindInt, bound: nonNegative, example: "0", num: &s.Checkpoint.TolerableFailures},
			{name: "mode", kind: kindString, example: "exactly-once", str: (*string)(&s.Checkpoint.Mode)},
		}},
		{name: "restart", kind: kindSection, sub: []field{
			{name: "strategy", kind: kindString, example: "exponential-delay", str: (*string)(&s.Restart.Strategy)},
			{name: "attempts", kind: kindInt, bound: nonNegative, example: "3", num: &s.Restart.Attempts},
			{name: "delay", kind: kindDuration, bound: nonNegative, example: "1s", dur: &s.Restart.Delay},
			{name: "max_delay", kind: kindDuration, bound: nonNegative, example: "1m", dur: &s.Restart.MaxDelay},
			{name: "reset_after", kind: kindDuration, bound: nonNegative, example: "1h", dur: &s.Restart.ResetAfter},
			{name: "interval", kind: kindDuration, bound: nonNegative, example: "1m", dur: &s.Restart.Interval},
			{name: "max_failures", kind: kindInt, bound: nonNegative, example: "1", num: &s.Restart.MaxFailures},
		}},
		{name: "bad_records", kind: kindString, example: "fail", str: (*string)(&s.BadRecords)},
		{name: "dead_letter", kind: kindSection, sub: []field{
			{name: "topic", kind: kindString, example: "events.dead-letter", str: &s.DeadLetter.Topic},
		}},
		{name: "memory", kind: kindSection, sub: []field{
			{name: "limit", kind: kindMemory, example: "2GiB", size: &s.Memory.Limit},
		}},
		{name: "http", kind: kindSection, sub: []field{
			{name: "addr", kind: kindString, example: "127.0.0.1:8081", str: &s.HTTP.Addr},
		}},
		{name: "kafka", kind: kindProps, example: "security.protocol: SASL_SSL", props: &s.Kafka},
	}
}

// jobFileKeys lists every dotted key of the schema, sections included, in
// schema order.
func jobFileKeys() []string {
	var keys []string
	var walk func(prefix string, fields []field)
	walk = func(prefix string, fields []field) {
		for _, f := range fields {
			full := joinKey(prefix, f.name)
			keys = append(keys, full)
			walk(full, f.sub)
		}
	}
	walk("", jobFileSchema(&JobSpec{}))
	return keys
}

type jobParser struct {
	spec  JobSpec
	lines map[string]int // dotted key -> line of the key, for Validate's errors
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func errAt(line int, key, format string, args ...any) error {
	return &JobFileError{Line: line, Key: key, Msg: oneLine(fmt.Sprintf(format, args...))}
}

func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// mapKey checks a key node of a mapping and returns its text.
func mapKey(prefix string, k *yaml.Node) (string, error) {
	k = resolve(k)
	if k.Kind != yaml.ScalarNode {
		return "", errAt(k.Line, prefix, "has a key that is %s; keys are plain words such as topic", describe(k))
	}
	if k.ShortTag() == "!!merge" {
		return "", errAt(k.Line, prefix, "merge keys (<<) are not supported; write the keys out")
	}
	return k.Value, nil
}

// mapping walks a map node against the fields known at this level.
func (p *jobParser) mapping(prefix string, n *yaml.Node, fields []field) error {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		name, err := mapKey(prefix, kn)
		if err != nil {
			return err
		}
		full := joinKey(prefix, name)
		if first, dup := seen[name]; dup {
			return errAt(kn.Line, full, "duplicate key (first set on line %d); keep only one", first)
		}
		seen[name] = kn.Line
		var f *field
		for j := range fields {
			if fields[j].name == name {
				f = &fields[j]
				break
			}
		}
		if f == nil {
			return errAt(kn.Line, full, "unknown key; %s", suggestKey(prefix, name, fields))
		}
		p.lines[full] = kn.Line
		if err := p.value(full, f, vn); err != nil {
			return err
		}
	}
	return nil
}

// value decodes the value node of one known key into its field.
func (p *jobParser) value(key string, f *field, vn *yaml.Node) error {
	line := vn.Line
	n := resolve(vn)
	switch f.kind {
	case kindSection, kindProps, kindOffsets:
		if isNull(n) {
			return nil // "source:" with everything below commented out
		}
		if n.Kind != yaml.MappingNode {
			return errAt(line, key, "is %s, but must be %s", describe(n), want(f))
		}
		switch f.kind {
		case kindSection:
			return p.mapping(key, n, f.sub)
		case kindProps:
			return p.props(key, n, f.props)
		default:
			return p.offsets(key, n, f.offsets)
		}
	}
	if f.kind == kindList {
		if n.Kind != yaml.SequenceNode {
			return errAt(line, key, "is %s, but must be %s", describe(n), want(f))
		}
		items := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			text, err := scalar(key, &field{kind: kindString, example: f.example}, resolve(item), item.Line)
			if err != nil {
				return err
			}
			items = append(items, text)
		}
		*f.list = items
		return nil
	}
	text, err := scalar(key, f, n, line)
	if err != nil {
		return err
	}
	switch f.kind {
	case kindString:
		*f.str = text
	case kindInt:
		v, err := parseWhole(key, f, n, text, line)
		if err != nil {
			return err
		}
		*f.num = v
	case kindDuration:
		d, err := parseDuration(key, f, n, text, line)
		if err != nil {
			return err
		}
		if d == 0 && f.zeroMeans != nil {
			d = *f.zeroMeans
		}
		*f.dur = d
	case kindBool:
		b, err := strconv.ParseBool(text)
		if err != nil || n.ShortTag() != "!!bool" {
			return errAt(line, key, "%s is not true or false; write e.g. %s: %s", quote(text), lastName(key), f.example)
		}
		*f.flag = b != f.negate
	case kindTimestamp:
		t, err := parseTimestamp(key, text, line)
		if err != nil {
			return err
		}
		*f.ts = t
	case kindSize:
		v, err := parseSize(key, f, text, line)
		if err != nil {
			return err
		}
		*f.size = v
	case kindMemory:
		v, err := ParseMemoryLimit(text)
		if err != nil {
			return errAt(line, key, "%v", err)
		}
		*f.size = v
	}
	return nil
}

// scalar checks that n is a plain scalar with a value and returns its text.
func scalar(key string, f *field, n *yaml.Node, line int) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", errAt(line, key, "is %s, but must be %s", describe(n), want(f))
	}
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return "", errAt(line, key, "has no value; write e.g. %s: %s, or remove the key to use the default", lastName(key), f.example)
	case "!!bool":
		if f.kind == kindBool {
			return n.Value, nil
		}
		if f.kind == kindString {
			return "", errAt(line, key, "is the boolean %s, but must be a string; quote it (%q) if you mean the text", n.Value, n.Value)
		}
		return "", errAt(line, key, "is the boolean %s, but must be %s", n.Value, want(f))
	case "!!str", "!!int", "!!float", "!!timestamp":
		return n.Value, nil
	default:
		return "", errAt(line, key, "has the YAML tag %s; remove the tag and write %s", tag, want(f))
	}
}

func want(f *field) string {
	switch f.kind {
	case kindString:
		return "a string such as " + f.example
	case kindInt:
		return "a whole number such as " + f.example
	case kindDuration:
		return "a duration such as " + f.example
	case kindTimestamp:
		return "milliseconds since the epoch or an RFC 3339 time such as " + f.example
	case kindBool:
		return "true or false"
	case kindList:
		return "a list such as " + f.example
	case kindSize:
		return "a size such as " + f.example + " (units B, KiB, MiB, GiB) or a number of bytes"
	case kindMemory:
		return "a size such as " + f.example + " (units B, KiB, MiB, GiB), or off"
	case kindSection:
		names := make([]string, len(f.sub))
		for i, s := range f.sub {
			names[i] = s.name
		}
		return "a map of the keys " + strings.Join(names, ", ")
	case kindProps:
		if f.name == "columns" {
			return "a map of column: field such as " + f.example
		}
		return "a map of librdkafka properties such as " + f.example
	default:
		return "a map of partition to offset such as " + f.example
	}
}

func lastName(key string) string {
	return key[strings.LastIndex(key, ".")+1:]
}

func parseWhole(key string, f *field, n *yaml.Node, text string, line int) (int, error) {
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			return 0, errAt(line, key, "%s is too large; write e.g. %s", text, f.example)
		}
		if _, ferr := strconv.ParseFloat(text, 64); ferr == nil && n.ShortTag() != "!!str" {
			return 0, errAt(line, key, "%s is not a whole number; write e.g. %s", text, f.example)
		}
		return 0, errAt(line, key, "%s is not a whole number; write e.g. %s", quote(text), f.example)
	}
	if int64(int(v)) != v || v > 1<<31-1 {
		return 0, errAt(line, key, "%s is too large; write e.g. %s", text, f.example)
	}
	switch {
	case f.bound == positive && v < 1:
		return 0, errAt(line, key, "must be at least 1, got %d", v)
	case f.bound == nonNegative && v < 0:
		return 0, errAt(line, key, "must not be negative, got %d", v)
	}
	return int(v), nil
}

// sizeUnits are the units of a size, in bytes; binary only, so that MB
// (10^6 or 2^20?) is refused with a hint instead of guessed.
var sizeUnits = map[string]int64{"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}

// parseSize parses a size: a whole number of bytes, or a number with a
// binary unit (B, KiB, MiB, GiB; any case): 256MiB, 1.5GiB, 4096.
func parseSize(key string, f *field, text string, line int) (int64, error) {
	t := strings.TrimSpace(text)
	i := strings.IndexFunc(t, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' && r != '-' && r != '+' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if !ok {
		switch strings.ToLower(unit) {
		case "k", "kb", "m", "mb", "g", "gb":
			return 0, errAt(line, key, "%s: write a binary unit, e.g. %s%siB (units: B, KiB, MiB, GiB), or the number of bytes", quote(text), num, strings.ToUpper(unit[:1]))
		}
		return 0, errAt(line, key, "%s is not a size; write e.g. %s (units: B, KiB, MiB, GiB) or the number of bytes", quote(text), f.example)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, errAt(line, key, "%s is not a size; write e.g. %s (units: B, KiB, MiB, GiB) or the number of bytes", quote(text), f.example)
	}
	bytes := v * float64(mult)
	switch {
	case bytes != bytes || bytes >= 1<<62:
		return 0, errAt(line, key, "%s is too large; write e.g. %s", quote(text), f.example)
	case bytes != float64(int64(bytes)):
		return 0, errAt(line, key, "%s is not a whole number of bytes; write e.g. %s", quote(text), f.example)
	case f.bound == positive && bytes < 1:
		return 0, errAt(line, key, "must be positive, got %s; write e.g. %s", quote(text), f.example)
	}
	return int64(bytes), nil
}

func parseDuration(key string, f *field, n *yaml.Node, text string, line int) (time.Duration, error) {
	d, err := time.ParseDuration(text)
	if err != nil {
		t := strings.TrimSpace(text)
		if _, ferr := strconv.ParseFloat(t, 64); ferr == nil {
			return 0, errAt(line, key, "%s has no unit; write e.g. %ss or %sms", quote(text), t, t)
		}
		if num, ok := strings.CutSuffix(t, "d"); ok {
			if _, ferr := strconv.ParseFloat(num, 64); ferr == nil {
				return 0, errAt(line, key, "%s: days are not a unit; write hours, e.g. 24h for 1d", quote(text))
			}
		}
		return 0, errAt(line, key, "%s is not a duration; write e.g. 10s or 500ms (units: ms, s, m, h)", quote(text))
	}
	switch {
	case f.bound == positive && d <= 0:
		return 0, errAt(line, key, "must be positive, got %v; write e.g. %s", d, f.example)
	case f.bound == nonNegative && d < 0:
		return 0, errAt(line, key, "must not be negative, got %v", d)
	}
	return d, nil
}

func parseTimestamp(key, text string, line int) (time.Time, error) {
	if ms, err := strconv.ParseInt(text, 10, 64); err == nil {
		if ms < 0 {
			return time.Time{}, errAt(line, key, "%d is before 1970; give milliseconds since the epoch, e.g. 1714564800000", ms)
		}
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, text)
	if err != nil {
		return time.Time{}, errAt(line, key, "%s is not a timestamp; write milliseconds since the epoch (1714564800000) or an RFC 3339 time (2024-05-01T12:00:00Z)", quote(text))
	}
	if t.Unix() < 0 {
		return time.Time{}, errAt(line, key, "%s is before 1970; give a later time", quote(text))
	}
	return t, nil
}

// props decodes a map of librdkafka properties: any name, scalar values.
func (p *jobParser) props(key string, n *yaml.Node, dst *map[string]string) error {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		name, err := mapKey(key, kn)
		if err != nil {
			return err
		}
		if strings.TrimSpace(name) == "" {
			return errAt(kn.Line, key, "has an empty property name; write e.g. %s", "security.protocol: SSL")
		}
		full := joinKey(key, name)
		if first, dup := seen[name]; dup {
			return errAt(kn.Line, full, "duplicate key (first set on line %d); keep only one", first)
		}
		seen[name] = kn.Line
		v := resolve(vn)
		if v.Kind != yaml.ScalarNode {
			hint := "write a list as one comma-separated value, e.g. " + name + ": a,b"
			if v.Kind == yaml.MappingNode {
				hint = "write the whole property name as one key, e.g. security.protocol: SASL_SSL"
			}
			return errAt(vn.Line, full, "is %s, but librdkafka property values are single values; %s", describe(v), hint)
		}
		switch tag := v.ShortTag(); tag {
		case "!!null":
			return errAt(vn.Line, full, "has no value; give one (\"\" for empty) or remove the property")
		case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		default:
			return errAt(vn.Line, full, "has the YAML tag %s; remove it and write a plain value", tag)
		}
		if *dst == nil {
			*dst = map[string]string{}
		}
		(*dst)[name] = v.Value
		p.lines[full] = kn.Line
	}
	return nil
}

// offsets decodes source.start.offsets: partition (int32) to offset (int64).
func (p *jobParser) offsets(key string, n *yaml.Node, dst *map[int32]int64) error {
	seen := map[int32]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		name, err := mapKey(key, kn)
		if err != nil {
			return err
		}
		part, err := strconv.ParseInt(name, 10, 32)
		if err != nil || part < 0 {
			return errAt(kn.Line, key, "partition %s is not a partition number; write partition: offset, e.g. 0: 42", quote(name))
		}
		full := joinKey(key, name)
		if first, dup := seen[int32(part)]; dup {
			return errAt(kn.Line, full, "partition %d is listed twice (first on line %d); keep only one", part, first)
		}
		seen[int32(part)] = kn.Line
		v := resolve(vn)
		if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" || v.ShortTag() == "!!bool" {
			return errAt(vn.Line, full, "is %s, but must be an offset such as 42", describe(v))
		}
		off, err := strconv.ParseInt(v.Value, 10, 64)
		if err != nil {
			return errAt(vn.Line, full, "offset %s is not a whole number; write e.g. %d: 42", quote(v.Value), part)
		}
		if off < 0 {
			return errAt(vn.Line, full, "offset %d is negative; offsets start at 0", off)
		}
		if *dst == nil {
			*dst = map[int32]int64{}
		}
		(*dst)[int32(part)] = off
		p.lines[full] = kn.Line
	}
	return nil
}

// describe names what a node is, for "is X, but must be Y" messages.
func describe(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "empty"
		case "!!bool":
			return "the boolean " + n.Value
		case "!!int", "!!float":
			return "the number " + n.Value
		}
		return "the string " + quote(n.Value)
	}
	return "not a value"
}

// quote quotes s for a message, shortened so the message stays readable.
func quote(s string) string {
	const max = 60
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "..."
	}
	return strconv.Quote(s)
}

// displayKey shows a key as written, unless it has characters (line breaks,
// controls) or a length that would garble a one-line message.
func displayKey(k string) string {
	if len(k) > 100 || strings.ContainsFunc(k, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return quote(k)
	}
	return k
}

// oneLine replaces line breaks so that a message stays on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\r", " ")), " ")
}

// suggestKey says what an unknown key may have meant.
func suggestKey(prefix, name string, fields []field) string {
	norm := func(s string) string {
		return strings.ToLower(strings.NewReplacer("-", "_", " ", "_").Replace(s))
	}
	// The same name spelt differently, or a near miss, at this level.
	best, bestDist := "", 1<<30
	for _, f := range fields {
		if norm(f.name) == norm(name) {
			return "did you mean " + joinKey(prefix, f.name) + "?"
		}
		if d := editDistance(norm(name), f.name); d < bestDist {
			best, bestDist = f.name, d
		}
	}
	if bestDist <= maxTypos(name) {
		return "did you mean " + joinKey(prefix, best) + "?"
	}
	all := jobFileKeys()
	// A dotted key written flat, e.g. window.size: 10s at the top level.
	for _, k := range all {
		if full := joinKey(prefix, norm(name)); k == full && strings.Contains(name, ".") {
			i := strings.LastIndex(k, ".")
			return fmt.Sprintf("nest it: write %s: under %s:, indented", k[i+1:], k[:i])
		}
	}
	// A key that belongs in another section, e.g. topic: at the top level.
	var elsewhere []string
	for _, k := range all {
		if lastName(k) == norm(name) && k != joinKey(prefix, name) {
			elsewhere = append(elsewhere, k)
		}
	}
	if len(elsewhere) > 0 {
		return "did you mean " + strings.Join(elsewhere, " or ") + "?"
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	sort.Strings(names)
	where := "here"
	if prefix != "" {
		where = "under " + prefix
	}
	return "the keys " + where + " are " + strings.Join(names, ", ")
}

func maxTypos(s string) int {
	switch n := len(s); {
	case n <= 3:
		return 1
	case n <= 8:
		return 2
	default:
		return 3
	}
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // not a typo of any key
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// CheckBrokers is the check made before a job starts: it asks the brokers of
// s for metadata through librdkafka (with s.Kafka applied, so security
// settings are tested too) and checks that source.topic exists. It gives up
// after timeout, or earlier when ctx ends. Errors name the job file key
// (brokers, kafka or source.topic) and unwrap to *SpecError and, where there
// is one, the client's error. Brokers that refuse the client's security
// settings give an error naming the property to fix instead of brokers:
// kafka.sasl.password for rejected SASL credentials, kafka.ssl.ca.location
// for a broker certificate the client does not trust; the check then ends
// at once (retrying cannot help).
//
// The client's logs are collected, not printed; the last error it logged is
// given as the cause. The client is closed before CheckBrokers returns.
//
// Secret property values (IsSecretProperty) that the client's messages
// echo are Redacted in the error.
func CheckBrokers(ctx context.Context, s JobSpec, timeout time.Duration) error {
	_, err := InspectBrokers(ctx, s, timeout)
	return err
}

// BrokerReport is what InspectBrokers learnt from the brokers' metadata.
type BrokerReport struct {
	// Brokers is the number of brokers in the cluster's metadata.
	Brokers int
	// SourcePartitions are the partitions of source.topic, in order.
	SourcePartitions []int32
	// SinkPartitions and ProgressPartitions are the partition counts of
	// sink.topic and sink.progress_topic; 0 when the topic does not exist
	// (the progress topic of an exactly-once job is created at start; a
	// missing sink topic is created by the brokers on the first write only
	// if they allow it, auto.create.topics.enable).
	SinkPartitions     int
	ProgressPartitions int
}

// InspectBrokers makes CheckBrokers' check and, when it passes, returns
// what the metadata says of the job's topics. Like CheckBrokers it writes
// nothing: no topic is created, no offset committed.
func InspectBrokers(ctx context.Context, s JobSpec, timeout time.Duration) (BrokerReport, error) {
	RegisterSecrets(s)
	r, err := inspectBrokers(ctx, s, timeout)
	return r, redactError(err)
}

func inspectBrokers(ctx context.Context, s JobSpec, timeout time.Duration) (BrokerReport, error) {
	var none BrokerReport
	if strings.TrimSpace(s.Brokers) == "" {
		return none, specErr("brokers", "required: set the Kafka bootstrap list, e.g. brokers: 127.0.0.1:9092")
	}
	if s.Source.Topic == "" {
		return none, specErr("source.topic", "required: name the topic to read")
	}
	if timeout <= 0 {
		return none, fmt.Errorf("weir: CheckBrokers: timeout must be positive, got %v", timeout)
	}
	if err := ctx.Err(); err != nil {
		return none, &checkError{spec: &SpecError{Key: "brokers", Msg: fmt.Sprintf("check of %s not started: %v", s.Brokers, err)}, cause: err}
	}
	start := time.Now()
	deadline, budget := start.Add(timeout), timeout
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, budget = d, d.Sub(start).Round(time.Millisecond)
	}

	logs := make(chan kafka.LogEvent, 64)
	p, err := kafkaconf.NewProducer(s.Brokers, nil, s.Kafka, kafka.ConfigMap{
		"client.id":                "weir-check-brokers",
		"allow.auto.create.topics": false, // a metadata request must never create the topic
		"go.logs.channel.enable":   true,  // logs go to the channel, not to stderr
		"go.logs.channel":          logs,
		"log_level":                6, // the connection errors the check reports on
		"go.delivery.reports":      false,
		"go.events.channel.size":   64,
		"go.produce.channel.size":  1,
	})
	if err != nil {
		return none, &checkError{spec: &SpecError{Key: "kafka",
			Msg: fmt.Sprintf("the Kafka client refused the properties: %s; fix or remove that property", oneLine(err.Error()))}, cause: err}
	}

	var cause brokerCause
	eventsDone := make(chan struct{})
	go func() { // ends when Close closes the events channel
		defer close(eventsDone)
		for ev := range p.Events() {
			if e, ok := ev.(kafka.Error); ok {
				cause.note(e.Code() != kafka.ErrAllBrokersDown, e.Code(), e.Error())
			}
		}
	}()
	logsStop, logsDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(logsDone)
		for {
			select {
			case ev := <-logs:
				if ev.Level <= 4 { // syslog error and warning
					cause.note(false, kafka.ErrNoError, ev.Message)
				}
			case <-logsStop:
				return
			}
		}
	}()
	defer func() {
		p.Close() // stops the client's log poller, then closes Events
		close(logsStop)
		<-logsDone
		<-eventsDone
	}()

	const slice = 500 * time.Millisecond // how often ctx is looked at
	var md *kafka.Metadata
	var mdErr error
	for {
		remaining := time.Until(deadline)
		if remaining < time.Millisecond {
			break
		}
		// All topics: a request naming the topic could create it on brokers
		// with auto.create.topics.enable.
		md, mdErr = p.GetMetadata(nil, true, int(min(remaining, slice)/time.Millisecond))
		if mdErr == nil {
			break
		}
		if ctx.Err() != nil {
			break
		}
		if key, _, _ := cause.refusal(); key != "" {
			break // refused by the brokers: waiting cannot help
		}
		t := time.NewTimer(min(time.Until(deadline), 50*time.Millisecond))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() != nil {
			break
		}
	}
	if md == nil {
		var why error = mdErr
		if why == nil {
			why = context.DeadlineExceeded
		}
		if err := ctx.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return none, &checkError{spec: &SpecError{Key: "brokers",
				Msg: fmt.Sprintf("check of %s stopped: %v", s.Brokers, err)}, cause: err}
		}
		if key, hint, msg := cause.refusal(); key != "" {
			return none, &checkError{spec: &SpecError{Key: key,
				Msg: fmt.Sprintf("%s refused the client: %s; %s", s.Brokers, oneLine(msg), hint)}, cause: why}
		}
		msg := cause.get()
		if msg == "" {
			msg = why.Error()
		}
		return none, &checkError{spec: &SpecError{Key: "brokers",
			Msg: fmt.Sprintf("cannot reach %s within %v: %s; check that Kafka is running and brokers is right",
				s.Brokers, budget, oneLine(msg))}, cause: why}
	}
	t, ok := md.Topics[s.Source.Topic]
	if !ok || t.Error.Code() == kafka.ErrUnknownTopicOrPart || t.Error.Code() == kafka.ErrUnknownTopic {
		return none, specErr("source.topic", "topic %q does not exist on %s; create it (e.g. kafka-topics.sh --create --topic %s) or fix source.topic",
			s.Source.Topic, s.Brokers, s.Source.Topic)
	}
	if t.Error.Code() != kafka.ErrNoError {
		return none, &checkError{spec: &SpecError{Key: "source.topic",
			Msg: fmt.Sprintf("topic %q on %s: %s; check the topic and its access rights", s.Source.Topic, s.Brokers, oneLine(t.Error.Error()))}, cause: t.Error}
	}
	r := BrokerReport{Brokers: len(md.Brokers)}
	for _, p := range t.Partitions {
		r.SourcePartitions = append(r.SourcePartitions, p.ID)
	}
	slices.Sort(r.SourcePartitions)
	count := func(topic string) int {
		if tm, ok := md.Topics[topic]; ok && tm.Error.Code() == kafka.ErrNoError {
			return len(tm.Partitions)
		}
		return 0
	}
	if s.Sink.Topic != "" {
		r.SinkPartitions = count(s.Sink.Topic)
	}
	if s.Sink.ProgressTopic != "" {
		r.ProgressPartitions = count(s.Sink.ProgressTopic)
	}
	if s.BadRecords == BadRecordsDeadLetter && s.DeadLetter.Topic != "" && count(s.DeadLetter.Topic) == 0 {
		return none, specErr("dead_letter.topic", "topic %q does not exist on %s; create it (e.g. kafka-topics.sh --create --topic %s) or fix dead_letter.topic",
			s.DeadLetter.Topic, s.Brokers, s.DeadLetter.Topic)
	}
	return r, nil
}

// checkError is a *SpecError that also wraps the cause of a failed check.
type checkError struct {
	spec  *SpecError
	cause error
}

func (e *checkError) Error() string   { return e.spec.Error() }
func (e *checkError) Unwrap() []error { return []error{e.spec, e.cause} }

// brokerCause keeps the most telling error the client reported: the first
// specific one (e.g. "Connect to ipv4#127.0.0.1:9999 failed: Connection
// refused"), else the last general one ("1/1 brokers are down").
type brokerCause struct {
	mu       sync.Mutex
	specific string
	general  string
	// The first error that says the brokers refused the client's security
	// settings: the job file key to fix, how, and the client's message.
	refusedKey, refusedHint, refusedMsg string
}

func (c *brokerCause) note(specific bool, code kafka.ErrorCode, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refusedKey == "" {
		if key, hint := refusedProperty(code, msg); key != "" {
			// Log lines start with the client thread, "[thrd:NAME]: ".
			if strings.HasPrefix(msg, "[thrd:") {
				if i := strings.Index(msg, "]: "); i >= 0 {
					msg = msg[i+len("]: "):]
				}
			}
			c.refusedKey, c.refusedHint, c.refusedMsg = key, hint, msg
		}
	}
	if specific && c.specific == "" {
		c.specific = msg
	} else if !specific {
		c.general = msg
	}
}

// refusal returns the key, the hint and the client's message of the first
// refusal noted, or "" for the key if there was none.
func (c *brokerCause) refusal() (key, hint, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refusedKey, c.refusedHint, c.refusedMsg
}

// refusedProperty classifies a client error: brokers that rejected the SASL
// credentials, or a broker certificate that failed verification, give the
// kafka property to fix and a hint; anything else gives "".
func refusedProperty(code kafka.ErrorCode, msg string) (key, hint string) {
	lower := strings.ToLower(msg)
	switch {
	case code == kafka.ErrAuthentication || strings.Contains(lower, "sasl authentication error"):
		return "kafka.sasl.password", "check kafka.sasl.username and kafka.sasl.password (and kafka.sasl.mechanisms)"
	case strings.Contains(lower, "certificate verify failed") && strings.Contains(lower, "hostname mismatch"):
		return "kafka.ssl.endpoint.identification.algorithm",
			"the broker certificate does not name the host in brokers: use a host name it names, or set kafka.ssl.endpoint.identification.algorithm: none"
	case strings.Contains(lower, "certificate verify failed"):
		return "kafka.ssl.ca.location", "set kafka.ssl.ca.location to the CA certificate (PEM) that signed the broker certificate"
	}
	return "", ""
}

func (c *brokerCause) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.specific != "" {
		return c.specific
	}
	return c.general
}
