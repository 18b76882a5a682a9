package weir

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

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
// without the timestamp field) to topic, spread over its partitions, and
// returns where each landed.
func produceBad(f *fixture, topic, tag string, n int) []badRecord {
	f.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		f.t.Fatal(err)
	}
	defer cl.Close()
	var out []badRecord
	for i := range n {
		v := fmt.Sprintf(`{"user":"u%d","amount":1`, i) // cut short
		if i%2 == 1 {
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
}
