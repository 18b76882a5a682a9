package weir

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/integration/verify"
)

// badRecord is a record produced into the input that the window job
// cannot read, where it landed.
type badRecord struct {
	key, value string
	partition  int32
	offset     int64
}

// produceBad produces n records the window job cannot read (not JSON, or
// without the timestamp field; only cut-short JSON with jsonOnly) to
// topic, spread over its partitions, and returns where each landed.
func produceBad(f *fixture, topic, tag string, n int, jsonOnly ...bool) []badRecord {
	f.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		f.t.Fatal(err)
	}
	defer cl.Close()
	var out []badRecord
	for i := range n {
		v := fmt.Sprintf(`{"user":"u%d","amount":1`, i) // cut short
		if i%2 == 1 && len(jsonOnly) == 0 {
			v = fmt.Sprintf(`{"user":"u%d","amount":1}`, i) // no ts
		}
		r := &kgo.Record{Topic: topic, Partition: int32(i % f.partitions), Key: []byte(fmt.Sprintf("%s-%d", tag, i)), Value: []byte(v)}
		res := cl.ProduceSync(f.ctx, r)
		if err := res.FirstErr(); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, badRecord{key: string(r.Key), value: v, partition: r.Partition, offset: r.Offset})
	}
	return out
}

// checkDeadLetters reads topic read_committed and checks it holds each of
// bad exactly once, with its key and value and the headers naming where it
// was read (source topic src) and why.
func checkDeadLetters(f *fixture, brokers, topic, src string, bad []badRecord) {
	f.t.Helper()
	got, err := verify.ReadRecords(f.ctx, brokers, topic, verify.ReadCommitted)
	if err != nil {
		f.t.Fatal(err)
	}
	want := map[string]badRecord{}
	for _, b := range bad {
		want[b.key] = b
	}
	seen := map[string]bool{}
	for _, r := range got {
		k := string(r.Key)
		b, ok := want[k]
		switch {
		case !ok:
			f.t.Fatalf("%s/%d offset %d: key %q is no bad record of the input (value %q)", topic, r.Partition, r.Offset, k, r.Value)
		case seen[k]:
			f.t.Fatalf("%s: bad record %q appears twice", topic, k)
		case string(r.Value) != b.value:
			f.t.Fatalf("%s: %q has value %q, the input's is %q", topic, k, r.Value, b.value)
		case r.Headers[HeaderSourceTopic] != src,
			r.Headers[HeaderSourcePartition] != strconv.Itoa(int(b.partition)),
			r.Headers[HeaderSourceOffset] != strconv.FormatInt(b.offset, 10),
			r.Headers[HeaderError] == "":
			f.t.Fatalf("%s: %q has headers %v; want source %s/%d offset %d and an error", topic, k, r.Headers, src, b.partition, b.offset)
		}
		seen[k] = true
	}
	if len(seen) != len(bad) {
		f.t.Fatalf("%s holds %d of the %d bad records", topic, len(seen), len(bad))
	}
	f.t.Logf("%s: all %d bad records exactly once, with their headers (e.g. %s=%q)", topic, len(bad), HeaderError, got[0].Headers[HeaderError])
}

// TestDeadLetterOnKfake: bad_records: dead-letter. Records the window job
// cannot read, in the middle and at the end of the input, go to the
// dead-letter topic with their key, value and headers naming their source
// topic, partition, offset and the error; they are counted, and every
// window is still right. At least once and exactly once; exactly once also
// when the first run is stopped mid-stream and a second restores (the
// dead letters are in the epochs' transactions: each exactly once).
func TestDeadLetterOnKfake(t *testing.T) {
	for _, tc := range []struct {
		delivery  Delivery
		interrupt bool
	}{{AtLeastOnce, false}, {ExactlyOnce, false}, {ExactlyOnce, true}} {
		t.Run(fmt.Sprintf("%s/interrupted=%v", tc.delivery, tc.interrupt), func(t *testing.T) {
			f := startFixture(t, verify.GenConfig{Seed: 23, Keys: 100, Partitions: 2, Events: 30000}, true, "in", "out", "dlq")
			bad := produceBad(f, "in", "mid", 10)
			if err := f.produceHeld(); err != nil {
				t.Fatal(err)
			}
			bad = append(bad, produceBad(f, "in", "end", 6)...)
			spec := f.spec("dlq")
			if tc.delivery == ExactlyOnce {
				spec = f.eosSpec("dlq")
			}
			spec.BadRecords, spec.DeadLetter.Topic = BadRecordsDeadLetter, "dlq"
			if tc.interrupt {
				st := f.runUntil(spec, func(job *Job, _ uint64) bool { return job.Stats().RecordsIn > 20000 }, WithFlowControl(1, 64)).Stats()
				t.Logf("run 1: read %d, dead-lettered %d, last checkpoint %d", st.RecordsIn, st.DeadLettered, st.LastCheckpoint)
			}
			st := f.drain(spec).Stats()
			t.Logf("last run: restored %d, read %d, bad %d, dead-lettered %d", st.RestoredFrom, st.RecordsIn, st.BadRecords, st.DeadLettered)
			if !tc.interrupt && (st.BadRecords != int64(len(bad)) || st.DeadLettered != int64(len(bad))) {
				t.Fatalf("counted %d bad records, %d dead-lettered; want %d each", st.BadRecords, st.DeadLettered, len(bad))
			}
			if st.BadRecords != st.DeadLettered {
				t.Fatalf("counted %d bad records, %d dead-lettered; want them equal", st.BadRecords, st.DeadLettered)
			}
			f.check(true)
			checkDeadLetters(f, f.brokers, "dlq", "in", bad)
		})
	}
}

// TestDeadLetterSpecErrors: bad_records: dead-letter without
// dead_letter.topic, or with the source, sink or progress topic, and
// dead_letter.topic with bad_records: fail, are one-line errors naming the
// key.
func TestDeadLetterSpecErrors(t *testing.T) {
	base := JobSpec{Name: "d", Brokers: "127.0.0.1:9", Source: SourceSpec{Topic: "in"}, KeyField: "user", TimestampField: "ts",
		Window: WindowSpec{Size: 1e9}, Aggregate: AggregateSpec{ValueField: "amount"}, Sink: SinkSpec{Topic: "out"}}
	for _, tc := range []struct {
		policy BadRecordPolicy
		topic  string
		want   string
	}{
		{BadRecordsDeadLetter, "", "dead_letter.topic: required with bad_records: dead-letter"},
		{BadRecordsDeadLetter, "in", `dead_letter.topic: "in" is also source.topic`},
		{BadRecordsDeadLetter, "out", `dead_letter.topic: "out" is also sink.topic`},
		{BadRecordsDeadLetter, "out.weir-progress", `dead_letter.topic: "out.weir-progress" is also sink.progress_topic`},
		{BadRecordsFail, "dlq", "dead_letter.topic: is set but bad_records is fail"},
		{"skip", "", `bad_records: "skip" is not a policy; use fail or dead-letter`},
	} {
		s := base
		s.BadRecords, s.DeadLetter.Topic = tc.policy, tc.topic
		_, err := NewJob(s)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("policy %q topic %q: %v; want one line with %q", tc.policy, tc.topic, err, tc.want)
		}
	}
	s := base
	s.BadRecords, s.DeadLetter.Topic = BadRecordsDeadLetter, "dlq"
	if _, err := NewJob(s); err != nil {
		t.Errorf("a valid dead-letter spec: %v", err)
	}
	// The dead letters go into the sink's Kafka transaction: not with a
	// PostgreSQL sink.
	s.Sink = SinkSpec{Kind: SinkPostgres, DSN: "postgres://u@127.0.0.1/db", Table: "t"}
	if _, err := NewJob(s); err == nil || !strings.Contains(err.Error(), "bad_records: dead-letter needs a Kafka sink") {
		t.Errorf("dead-letter with a PostgreSQL sink: %v", err)
	}
}

// TestDeadLetterDataflow: weir.DeadLetter on a dataflow source whose JSON
// format fails on the bad records; the job has two sinks, the one marked
// weir.DeadLetterSink writes the dead letters (exactly once, in its
// transactions; and at least once). Without the mark, with two marks, or
// with a dead-letter topic that is the source's or a sink's, building the
// job is one line naming the fix.
func TestDeadLetterDataflow(t *testing.T) {
	for _, g := range []Delivery{AtLeastOnce, ExactlyOnce} {
		t.Run(string(g), func(t *testing.T) {
			f := dataflowFixtureHeld(t, verify.GenConfig{Seed: 29, Keys: 50, Partitions: 2, Events: 4000}, true, "out", "small", "dlq")
			bad := produceBad(f, "in", "mid", 8, true)
			if err := f.produceHeld(); err != nil {
				t.Fatal(err)
			}
			opts := []EnvOption{Brokers(f.brokers), Parallelism(2), Guarantee(g)}
			if g == ExactlyOnce {
				opts = append(opts, Checkpoints(30*time.Millisecond, t.TempDir()))
			}
			env := NewEnv("dlq-dataflow", opts...)
			in := FromKafka(env, "in", JSON[ev](), FromEarliest(), BoundedAtLatest(), DeadLetter("dlq"))
			ToKafka(Filter(in, func(e ev) bool { return e.Amount >= 50 }), "out", JSON[ev](), SinkUID("big"), DeadLetterSink())
			ToKafka(Filter(in, func(e ev) bool { return e.Amount < 50 }), "small", JSON[ev](), SinkUID("small"))
			if err := env.Run(f.ctx); err != nil {
				t.Fatal(err)
			}
			if n := len(readJSON[ev](f, "out")) + len(readJSON[ev](f, "small")); n != len(f.events) {
				t.Fatalf("out and small hold %d records, want the %d good ones", n, len(f.events))
			}
			checkDeadLetters(f, f.brokers, "dlq", "in", bad)
		})
	}

	for _, tc := range []struct {
		name string
		sink []SinkOption
		dl   string
		want string
	}{
		{"no mark", nil, "dlq", "has a dead-letter topic and job dlq-bad has 2 sinks; mark the one that writes the dead letters with weir.DeadLetterSink()"},
		{"two marks", []SinkOption{DeadLetterSink()}, "dlq", "2 sinks are marked weir.DeadLetterSink"},
		{"source topic", []SinkOption{DeadLetterSink()}, "in", `the dead-letter topic "in" is the topic it reads`},
	} {
		env := NewEnv("dlq-bad", Brokers("127.0.0.1:9"))
		in := FromKafka(env, "in", JSON[ev](), DeadLetter(tc.dl))
		ToKafka(in, "out", JSON[ev](), append([]SinkOption{SinkUID("a")}, tc.sink...)...)
		ToKafka(in, "small", JSON[ev](), append([]SinkOption{SinkUID("b")}, tc.sink...)...)
		err := env.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%s: %v; want one line with %q", tc.name, err, tc.want)
		}
	}
	env := NewEnv("dlq-bad", Brokers("127.0.0.1:9"))
	ToKafka(FromKafka(env, "in", JSON[ev](), DeadLetter("out")), "out", JSON[ev]())
	if err := env.Run(context.Background()); err == nil || !strings.Contains(err.Error(), `the dead-letter topic "out" is the topic of sink`) {
		t.Errorf("dead-letter topic = sink topic: %v", err)
	}
}
