package weir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/sys/unix"
)

// jobFileErrorClasses are the kinds of mistakes the job file parser must
// report well; testdata/jobfiles must hold at least one case of each
// (parse class=...).
var jobFileErrorClasses = []string{
	"unknown-key", "unknown-nested-key", "unknown-key-elsewhere", "props-not-scalar",
	"missing-required", "wrong-type-number", "wrong-type-map", "wrong-type-list",
	"boolean", "negative-number", "bad-duration", "duration-no-unit", "non-positive-size",
	"bad-timestamp", "offsets-partition", "offsets-offset", "duplicate-key",
	"empty-file", "not-yaml", "multi-document", "no-value", "validate", "bad-size", "validate-memory",
}

// TestJobFileGolden runs the cases in testdata/jobfiles (datadriven; -rewrite
// regenerates the expected output, which is then reviewed as a diff).
//
//	parse [class=C] [key=K]
//	<job file>
//	----
//	<the error, or the parsed spec, one key per line>
//
// For an error, the test also checks that it is one line, is a
// *JobFileError naming K, and that K appears in the message.
func TestJobFileGolden(t *testing.T) {
	seen := map[string]bool{}
	datadriven.Walk(t, "testdata/jobfiles", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "parse" {
				d.Fatalf(t, "unknown command %q", d.Cmd)
			}
			var class, key string
			if d.HasArg("class") {
				d.ScanArgs(t, "class", &class)
				seen[class] = true
			}
			if d.HasArg("key") {
				d.ScanArgs(t, "key", &key)
			}
			input := d.Input
			if input != "" {
				input += "\n"
			}
			s, err := ParseJobFile([]byte(input))
			if err == nil {
				if class != "" || key != "" {
					d.Fatalf(t, "parsed without error, but the case expects one")
				}
				return dumpSpec(s)
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				d.Fatalf(t, "error is not one line: %q", msg)
			}
			var je *JobFileError
			if !errors.As(err, &je) {
				d.Fatalf(t, "error %T is not a *JobFileError: %v", err, err)
			}
			if je.Key != key {
				d.Fatalf(t, "error names key %q, want %q: %s", je.Key, key, msg)
			}
			if key != "" && !strings.Contains(msg, " "+key+": ") {
				d.Fatalf(t, "message does not name %s: %s", key, msg)
			}
			if !strings.HasPrefix(msg, "job file") {
				d.Fatalf(t, "message lacks the job file prefix: %s", msg)
			}
			return msg + "\n"
		})
	})
	var missing []string
	for _, c := range jobFileErrorClasses {
		if !seen[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		t.Errorf("testdata/jobfiles has no case for the error classes %v", missing)
	}
}

// dumpSpec prints a spec one job file key per line, maps sorted.
func dumpSpec(s JobSpec) string {
	var b strings.Builder
	p := func(k string, v any) {
		if fmt.Sprint(v) == "" {
			v = `""`
		}
		fmt.Fprintf(&b, "%s: %v\n", k, v)
	}
	props := func(prefix string, m map[string]string) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p(prefix+"."+k, fmt.Sprintf("%q", m[k]))
		}
	}
	p("name", s.Name)
	p("brokers", s.Brokers)
	p("kind", s.Kind)
	p("parallelism", s.Parallelism)
	p("source.topic", s.Source.Topic)
	p("source.group", s.Source.Group)
	p("source.start.mode", s.Source.Start.Mode)
	p("source.start.auto_offset_reset", s.Source.Start.AutoOffsetReset)
	if !s.Source.Start.Timestamp.IsZero() {
		ts := s.Source.Start.Timestamp
		p("source.start.timestamp", fmt.Sprintf("%s (%d ms)", ts.Format(time.RFC3339Nano), ts.UnixMilli()))
	}
	parts := make([]int32, 0, len(s.Source.Start.Offsets))
	for part := range s.Source.Start.Offsets {
		parts = append(parts, part)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	for _, part := range parts {
		p(fmt.Sprintf("source.start.offsets.%d", part), s.Source.Start.Offsets[part])
	}
	if s.Source.Bounded != "" {
		p("source.bounded", s.Source.Bounded)
	}
	if !s.Source.BoundedTimestamp.IsZero() {
		ts := s.Source.BoundedTimestamp
		p("source.bounded_timestamp", fmt.Sprintf("%s (%d ms)", ts.Format(time.RFC3339Nano), ts.UnixMilli()))
	}
	bparts := make([]int32, 0, len(s.Source.BoundedOffsets))
	for part := range s.Source.BoundedOffsets {
		bparts = append(bparts, part)
	}
	sort.Slice(bparts, func(i, j int) bool { return bparts[i] < bparts[j] })
	for _, part := range bparts {
		p(fmt.Sprintf("source.bounded_offsets.%d", part), s.Source.BoundedOffsets[part])
	}
	p("source.isolation", s.Source.Isolation)
	p("source.commit_offsets_on_checkpoint", !s.Source.DisableOffsetCommit)
	p("source.partition_discovery_interval", s.Source.PartitionDiscoveryInterval)
	props("source.properties", s.Source.Properties)
	p("key_field", s.KeyField)
	p("timestamp_field", s.TimestampField)
	p("window.size", s.Window.Size)
	p("window.out_of_orderness", s.Window.OutOfOrderness)
	p("window.idle_timeout", s.Window.IdleTimeout)
	p("window.max_future", s.Window.MaxFuture)
	p("aggregate.value_field", s.Aggregate.ValueField)
	p("sink.topic", s.Sink.Topic)
	p("sink.transactional_id_prefix", s.Sink.TransactionalIDPrefix)
	props("sink.properties", s.Sink.Properties)
	if s.Sink.MaxPendingBytes != 0 {
		p("sink.max_pending_bytes", s.Sink.MaxPendingBytes)
	}
	p("delivery", s.Delivery)
	p("checkpoint.interval", s.Checkpoint.Interval)
	p("checkpoint.dir", s.Checkpoint.Dir)
	p("checkpoint.timeout", s.Checkpoint.Timeout)
	p("checkpoint.min_pause", s.Checkpoint.MinPause)
	p("checkpoint.max_concurrent", s.Checkpoint.MaxConcurrent)
	p("checkpoint.retain", s.Checkpoint.Retain)
	p("checkpoint.tolerable_failures", s.Checkpoint.TolerableFailures)
	p("bad_records", s.BadRecords)
	if s.Memory.Limit != 0 {
		p("memory.limit", fmt.Sprintf("%d (%s)", s.Memory.Limit, FormatMemoryLimit(s.Memory.Limit)))
	}
	props("kafka", s.Kafka)
	return b.String()
}

// exampleSpec is what examples/job.yaml must parse to.
func exampleSpec() JobSpec {
	return JobSpec{
		Name:        "clicks-per-user",
		Brokers:     "127.0.0.1:9092",
		Kind:        KindWindow,
		Parallelism: 2,
		Source: SourceSpec{
			Topic:                      "clicks",
			Group:                      "weir-clicks-per-user",
			Start:                      StartSpec{Mode: StartGroup, AutoOffsetReset: "earliest"},
			Isolation:                  ReadCommitted,
			PartitionDiscoveryInterval: 5 * time.Minute,
			Properties: map[string]string{
				"fetch.max.bytes": "52428800",
			},
		},
		KeyField:       "user",
		TimestampField: "ts",
		Window: WindowSpec{Kind: WindowTumbling, Size: 10 * time.Second, OutOfOrderness: 2 * time.Second, IdleTimeout: 30 * time.Second,
			MaxFuture: time.Hour, LateTopic: "clicks-late"},
		Aggregate: AggregateSpec{ValueField: "amount", Functions: []string{"count", "sum"}},
		Sink: SinkSpec{
			Kind: SinkKafka, Topic: "clicks-per-user",
			TransactionalIDPrefix: "weir", ProgressTopic: "clicks-per-user.weir-progress", TransactionTimeout: 15 * time.Minute,
			Properties: map[string]string{"linger.ms": "5"}, MaxPendingBytes: 64 << 20,
		},
		Delivery: ExactlyOnce,
		Checkpoint: CheckpointSpec{
			Interval:          time.Second,
			Dir:               "./checkpoints",
			Timeout:           10 * time.Minute,
			MinPause:          0,
			MaxConcurrent:     1,
			Retain:            3,
			TolerableFailures: 0,
			Mode:              CheckpointExactlyOnce,
		},
		Restart: RestartSpec{Strategy: "exponential-delay", Delay: time.Second, MaxDelay: time.Minute,
			ResetAfter: time.Hour, Multiplier: 1.5, Jitter: 0.1},
		BadRecords: BadRecordsFail,
		Kafka:      map[string]string{"security.protocol": "plaintext"},
	}
}

// TestJobFileExample checks that examples/job.yaml parses to exampleSpec,
// that it shows every key of the job file (the start alternatives
// timestamp and offsets as comments, since only one start mode applies),
// and that docs/jobfile.md documents every key and holds the example.
func TestJobFileExample(t *testing.T) {
	data, err := os.ReadFile("examples/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadJobFile("examples/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := exampleSpec(); !reflect.DeepEqual(got, want) {
		t.Errorf("examples/job.yaml parsed to\n%s\nwant\n%s", dumpSpec(got), dumpSpec(want))
	}

	root, err := jobFileRoot(data)
	if err != nil {
		t.Fatal(err)
	}
	p := &jobParser{lines: map[string]int{}}
	if err := p.mapping("", root, jobFileSchema(&p.spec)); err != nil {
		t.Fatal(err)
	}
	commented := map[string]string{
		"source.start.timestamp":   `(?m)^\s*#\s*timestamp: 2024-05-01T12:00:00Z`,
		"source.start.offsets":     `(?m)^\s*#\s*offsets: \{0: 42, 1: 7\}`,
		"source.bounded":           `(?m)^\s*#\s*bounded: latest`,
		"source.bounded_timestamp": `(?m)^\s*#\s*bounded_timestamp: 2024-05-01T13:00:00Z`,
		"source.bounded_offsets":   `(?m)^\s*#\s*bounded_offsets: \{0: 1000, 1: 800\}`,
		"restart.attempts":         `(?m)^\s*#\s*attempts: 3`,
		"restart.max_failures":     `(?m)^\s*#\s*max_failures: 1`,
		"restart.interval":         `(?m)^\s*#\s*interval: 1m`,
		"window.slide":             `(?m)^\s*#\s*slide: 5s`,
		"window.gap":               `(?m)^\s*#\s*gap: 30s`,
		"memory.limit":             `(?m)^\s*#\s*limit: 2GiB`,
		"http.addr":                `(?m)^\s*#\s*addr: 127.0.0.1:8081`,
		"dead_letter.topic":        `(?m)^\s*#\s*topic: clicks-dead-letter`,
		"sink.dsn":                 `(?m)^\s*#\s*dsn: postgres://`,
		"sink.table":               `(?m)^\s*#\s*table: clicks_per_user`,
		"sink.mode":                `(?m)^\s*#\s*mode: upsert`,
		"sink.columns":             `(?m)^\s*#\s*columns: \{user_id: key`,
	}
	for _, k := range jobFileKeys() {
		if re, ok := commented[k]; ok {
			if !regexp.MustCompile(re).Match(data) {
				t.Errorf("examples/job.yaml does not show %s as a comment matching %s", k, re)
			}
			continue // TestJobFileExampleAlternatives parses it

		}
		if p.lines[k] == 0 {
			t.Errorf("examples/job.yaml does not set %s", k)
		}
	}

	for _, docPath := range []string{"docs/jobfile.md", "README.md"} {
		doc, err := os.ReadFile(docPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range jobFileKeys() {
			if !strings.Contains(string(doc), "`"+k+"`") {
				t.Errorf("%s does not document `%s`", docPath, k)
			}
		}
		if !strings.Contains(string(doc), "```yaml\n"+string(data)+"```\n") {
			t.Errorf("%s does not hold examples/job.yaml verbatim in a yaml block", docPath)
		}
	}
}

// TestJobFileExampleAlternatives checks that the commented-out start
// alternatives of examples/job.yaml parse when switched on.
func TestJobFileExampleAlternatives(t *testing.T) {
	data, err := os.ReadFile("examples/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		mode, line string
		check      func(StartSpec) bool
	}{
		{"timestamp", "timestamp: 2024-05-01T12:00:00Z", func(st StartSpec) bool { return st.Timestamp.Equal(ts) }},
		{"offsets", "offsets: {0: 42, 1: 7}", func(st StartSpec) bool {
			return reflect.DeepEqual(st.Offsets, map[int32]int64{0: 42, 1: 7})
		}},
	} {
		text := strings.Replace(string(data), "mode: group", "mode: "+tc.mode, 1)
		text = regexp.MustCompile(`(?m)^(\s*)#\s*`+regexp.QuoteMeta(tc.line)+`.*$`).ReplaceAllString(text, "${1}"+tc.line)
		s, err := ParseJobFile([]byte(text))
		if err != nil {
			t.Errorf("mode %s: %v", tc.mode, err)
			continue
		}
		if s.Source.Start.Mode != StartMode(tc.mode) || !tc.check(s.Source.Start) {
			t.Errorf("mode %s: parsed start %+v", tc.mode, s.Source.Start)
		}
	}
}

// TestJobFileExampleWindowKinds: the example's commented window keys make
// a valid sliding and session job.
func TestJobFileExampleWindowKinds(t *testing.T) {
	data, err := os.ReadFile("examples/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	uncomment := func(text, line string) string {
		return regexp.MustCompile(`(?m)^(\s*)#\s*`+regexp.QuoteMeta(line)+`.*$`).ReplaceAllString(text, "${1}"+line)
	}
	sliding := uncomment(strings.Replace(string(data), "kind: tumbling", "kind: sliding", 1), "slide: 5s")
	s, err := ParseJobFile([]byte(sliding))
	if err != nil || s.Window.Kind != WindowSliding || s.Window.Slide != 5*time.Second {
		t.Errorf("sliding: %v, window %+v", err, s.Window)
	}
	session := uncomment(strings.Replace(string(data), "kind: tumbling", "kind: session", 1), "gap: 30s")
	session = regexp.MustCompile(`(?m)^  (size|offset): .*$`).ReplaceAllString(session, "")
	s, err = ParseJobFile([]byte(session))
	if err != nil || s.Window.Kind != WindowSession || s.Window.Gap != 30*time.Second {
		t.Errorf("session: %v, window %+v", err, s.Window)
	}
}

// TestJobFileLoad checks the errors of LoadJobFile that concern the file.
func TestJobFileLoad(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "job.yaml")
	_, err := LoadJobFile(missing)
	if want := "job file " + missing + ": no such file; check the path given to --config"; err == nil || err.Error() != want {
		t.Errorf("missing file: got %v, want %s", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v does not wrap fs.ErrNotExist", err)
	}

	_, err = LoadJobFile(dir)
	if want := "job file " + dir + ": is a directory; give the path of a YAML file"; err == nil || err.Error() != want {
		t.Errorf("directory: got %v, want %s", err, want)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: x\nwindow:\n  size: 10x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadJobFile(bad)
	if want := "job file " + bad + ` line 3: window.size: "10x" is not a duration; write e.g. 10s or 500ms (units: ms, s, m, h)`; err == nil || err.Error() != want {
		t.Errorf("bad file: got %v, want %s", err, want)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("name: x\n"+strings.Repeat("# padding\n", MaxJobFileBytes/10+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadJobFile(big)
	if want := fmt.Sprintf("job file %s: is larger than %d bytes; a job file is a short YAML file", big, MaxJobFileBytes); err == nil || err.Error() != want {
		t.Errorf("big file: got %v, want %s", err, want)
	}
}

// TestJobFileValidateError checks that Validate's errors are wrapped, keep
// their *SpecError and gain the line of the key when it is in the file.
func TestJobFileValidateError(t *testing.T) {
	_, err := ParseJobFile([]byte("name: a\nbrokers: 127.0.0.1:9092\nsource:\n  topic: t\n"))
	var se *SpecError
	if !errors.As(err, &se) || se.Key != "key_field" {
		t.Fatalf("got %v, want a *SpecError for key_field", err)
	}
	if want := "job file: key_field: " + se.Msg; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

// TestSpecValidateStart covers the checks added to StartSpec.validate: a
// start setting that the mode ignores is refused, and offsets errors are
// reported in partition order.
func TestSpecValidateStart(t *testing.T) {
	base := exampleSpec()
	for _, tc := range []struct {
		start StartSpec
		want  string
	}{
		{StartSpec{Mode: StartGroup, AutoOffsetReset: "earliest", Timestamp: time.UnixMilli(1)},
			"source.start.timestamp: is only used with mode timestamp; set source.start.mode: timestamp or remove it"},
		{StartSpec{Mode: StartEarliest, AutoOffsetReset: "earliest", Offsets: map[int32]int64{0: 1}},
			"source.start.offsets: is only used with mode offsets; set source.start.mode: offsets or remove it"},
		{StartSpec{Mode: StartOffsets, AutoOffsetReset: "earliest", Offsets: map[int32]int64{3: -1, 1: -5, 2: 0}},
			"source.start.offsets: offset -5 for partition 1 is negative; offsets start at 0"},
	} {
		s := base
		s.Source.Start = tc.start
		if err := s.Validate(); err == nil || err.Error() != tc.want {
			t.Errorf("start %+v: got %v, want %s", tc.start, err, tc.want)
		}
	}
	s := base
	s.Brokers = "127.0.0.1:99999"
	if err, want := s.Validate(), `brokers: "127.0.0.1:99999" has port 99999; ports are 1 to 65535`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// closedPort returns a loopback address on which nothing listens: a port
// that was just bound and closed.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// captureStderr runs f with file descriptor 2 redirected to a file and
// returns what was written there: librdkafka writes to it from C.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	tmp, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	saved, err := unix.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(saved)
	if err := unix.Dup2(int(tmp.Fd()), 2); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if err := unix.Dup2(saved, 2); err != nil {
				t.Errorf("restore stderr: %v", err)
			}
		}()
		f()
	}()
	out, err := os.ReadFile(tmp.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestCheckBrokersUnreachable(t *testing.T) {
	addr := closedPort(t)
	s := exampleSpec()
	s.Brokers = addr
	var err error
	stderr := captureStderr(t, func() {
		err = CheckBrokers(context.Background(), s, time.Second)
	})
	if err == nil {
		t.Fatalf("CheckBrokers(%s) succeeded; nothing listens there", addr)
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	prefix := "brokers: cannot reach " + addr + " within 1s: "
	suffix := "; check that Kafka is running and brokers is right"
	if !strings.HasPrefix(msg, prefix) || !strings.HasSuffix(msg, suffix) || len(msg) <= len(prefix)+len(suffix) {
		t.Errorf("got %q, want %q<cause>%q", msg, prefix, suffix)
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	var se *SpecError
	if !errors.As(err, &se) || se.Key != "brokers" {
		t.Errorf("error does not unwrap to a *SpecError for brokers: %#v", err)
	}
	if stderr != "" {
		t.Errorf("the Kafka client wrote to stderr:\n%s", stderr)
	}
}

func TestCheckBrokersCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := exampleSpec()
	s.Brokers = closedPort(t)
	err := CheckBrokers(ctx, s, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want an error wrapping context.Canceled", err)
	}
	if want := "brokers: check of " + s.Brokers + " not started: context canceled"; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func TestCheckBrokersBadProperty(t *testing.T) {
	s := exampleSpec()
	s.Brokers = closedPort(t)
	s.Kafka = map[string]string{"no.such.property": "1"}
	err := CheckBrokers(context.Background(), s, time.Minute)
	var se *SpecError
	if !errors.As(err, &se) || se.Key != "kafka" || !strings.Contains(err.Error(), "no.such.property") {
		t.Fatalf("got %v, want a kafka error naming no.such.property", err)
	}
	t.Logf("error: %s", err)
}

func TestCheckBrokersKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "clicks"),
		kfake.AllowAutoTopicCreation()) // so a check that named the topic would create it
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := exampleSpec()
	s.Brokers = strings.Join(c.ListenAddrs(), ",")

	stderr := captureStderr(t, func() { err = CheckBrokers(context.Background(), s, 30*time.Second) })
	if err != nil {
		t.Fatalf("topic exists: %v", err)
	}
	if stderr != "" {
		t.Errorf("the Kafka client wrote to stderr:\n%s", stderr)
	}

	s.Source.Topic = "no-such-topic"
	err = CheckBrokers(context.Background(), s, 30*time.Second)
	want := `source.topic: topic "no-such-topic" does not exist on ` + s.Brokers +
		"; create it (e.g. kafka-topics.sh --create --topic no-such-topic) or fix source.topic"
	if err == nil || err.Error() != want {
		t.Fatalf("missing topic: got %v, want %s", err, want)
	}
	var se *SpecError
	if !errors.As(err, &se) || se.Key != "source.topic" {
		t.Errorf("error is not a *SpecError for source.topic: %#v", err)
	}
	// The check itself must not have created the topic.
	err = CheckBrokers(context.Background(), s, 30*time.Second)
	if err == nil || err.Error() != want {
		t.Errorf("second check: got %v, want %s", err, want)
	}
}

// TestJobFileOneLine checks that keys and values with line breaks or great
// length still give one short line.
func TestJobFileOneLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"\"sour\\nce\": x\n", `job file line 1: "sour\nce": unknown key; did you mean source?`},
		{"window:\n  size: \"10\\nx\"\n", `job file line 2: window.size: "10\nx" is not a duration; write e.g. 10s or 500ms (units: ms, s, m, h)`},
		{"parallelism: |\n  two\n  three\n", `job file line 1: parallelism: "two\nthree\n" is not a whole number; write e.g. 4`},
		{"window:\n  size: " + strings.Repeat("x", 500) + "\n", `job file line 2: window.size: "` + strings.Repeat("x", 60) + `..." is not a duration; write e.g. 10s or 500ms (units: ms, s, m, h)`},
	} {
		_, err := ParseJobFile([]byte(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseJobFile(%q):\n got %v\nwant %s", tc.in, err, tc.want)
		}
	}
}

// FuzzJobFile checks that no input panics and that every error is a
// one-line *JobFileError. The seeds are the golden cases and the example;
// go test -fuzz FuzzJobFile explores further.
func FuzzJobFile(f *testing.F) {
	example, err := os.ReadFile("examples/job.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, name := range []string{"errors.txt", "valid.txt"} {
		data, err := os.ReadFile(filepath.Join("testdata/jobfiles", name))
		if err != nil {
			f.Fatal(err)
		}
		var in []string
		inInput := false
		for _, line := range strings.Split(string(data), "\n") {
			switch {
			case strings.HasPrefix(line, "parse"):
				inInput, in = true, in[:0]
			case line == "----" && inInput:
				inInput = false
				f.Add([]byte(strings.Join(in, "\n") + "\n"))
			case inInput:
				in = append(in, line)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseJobFile(data)
		if err == nil {
			return
		}
		var je *JobFileError
		if !errors.As(err, &je) {
			t.Fatalf("error %T is not a *JobFileError: %v", err, err)
		}
		if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
			t.Fatalf("error is not one line: %q", msg)
		}
	})
}

// TestRefusedProperty: the client's messages for rejected credentials and
// untrusted or misnamed broker certificates name the property to fix;
// other errors name none.
func TestRefusedProperty(t *testing.T) {
	for _, tc := range []struct {
		code kafka.ErrorCode
		msg  string
		key  string
	}{
		{kafka.ErrAuthentication, "sasl_ssl://127.0.0.1:9094/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512", "kafka.sasl.password"},
		{kafka.ErrNoError, "[thrd:sasl_ssl://h:1/b]: sasl_ssl://h:1/bootstrap: SASL authentication error: bad", "kafka.sasl.password"},
		{kafka.ErrSsl, "sasl_ssl://127.0.0.1:9094/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified", "kafka.ssl.ca.location"},
		{kafka.ErrSsl, "SSL handshake failed: certificate verify failed: Hostname mismatch", "kafka.ssl.endpoint.identification.algorithm"},
		{kafka.ErrTransport, "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused", ""},
		{kafka.ErrAllBrokersDown, "1/1 brokers are down", ""},
	} {
		if key, hint := refusedProperty(tc.code, tc.msg); key != tc.key || (key != "" && hint == "") {
			t.Errorf("%q: key %q hint %q, want key %q and a hint", tc.msg, key, hint, tc.key)
		}
	}
}
