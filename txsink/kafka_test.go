package txsink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirstream/weir/integration/verify"
	"github.com/weirstream/weir/internal/kfakeresp"
)

const (
	outTopic      = "out"
	progressTopic = "progress"
)

func newKfake(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, string) {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(2, outTopic), kfake.SeedTopics(ProgressPartitions, progressTopic)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()[0]
}

type sinkOpts struct {
	subtask   int
	pool      int
	txTimeout time.Duration
	opTimeout time.Duration
	fence     []string
}

func kafkaCfg(brokers string, o sinkOpts) KafkaConfig {
	return KafkaConfig{Brokers: brokers, Topic: outTopic, ProgressTopic: progressTopic,
		TransactionalIDPrefix: "weir-test", Job: "job", Sink: "sink", Subtask: o.subtask, Pool: o.pool,
		TransactionTimeout: o.txTimeout, CheckpointTimeout: 500 * time.Millisecond, RequestTimeout: 10 * time.Second}
}

// newKafkaSink builds a Kafka-backed sink and runs Recover with states.
func newKafkaSink(t *testing.T, ctx context.Context, brokers string, o sinkOpts, states ...[]byte) (*Sink, *Kafka) {
	t.Helper()
	k, err := NewKafka(ctx, kafkaCfg(brokers, o))
	if err != nil {
		t.Fatal(err)
	}
	if o.opTimeout == 0 {
		o.opTimeout = 30 * time.Second
	}
	s, err := New(k, Config{Owner: Owner("job", "sink", o.subtask), OpTimeout: o.opTimeout, FenceIDs: o.fence})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(ctx, states...); err != nil {
		t.Fatalf("recover: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return s, k
}

// crash drops a sink the way a dying process does: its producers go away
// without aborting anything.
func crash(t *testing.T, k *Kafka) {
	t.Helper()
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
}

func recs(epoch, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{Key: fmt.Appendf(nil, "k%d", i%5), Value: fmt.Appendf(nil, "e%d-%d", epoch, i)}
	}
	return out
}

func values(rs ...[]Record) []string {
	var out []string
	for _, r := range rs {
		for _, x := range r {
			out = append(out, string(x.Value))
		}
	}
	slices.Sort(out)
	return out
}

func read(t *testing.T, ctx context.Context, brokers, isolation string) []string {
	t.Helper()
	vs, err := verify.ReadAll(ctx, brokers, outTopic, isolation)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	slices.Sort(out)
	return out
}

// expectCommitted checks that a read_committed reader sees exactly want
// (each once) and that no transaction is left open on the output topic:
// its last stable offset is its end (a lingering transaction would block
// read_committed readers).
func expectCommitted(t *testing.T, ctx context.Context, brokers string, want []string) {
	t.Helper()
	got := read(t, ctx, brokers, verify.ReadCommitted)
	if !slices.Equal(got, want) {
		t.Fatalf("read_committed output:\n got  %q\n want %q", got, want)
	}
	if open := openPartitions(t, ctx, brokers); len(open) > 0 {
		t.Fatalf("transactions still open on %s: %v", outTopic, open)
	}
}

// openPartitions returns the partitions of the output topic whose last
// stable offset is below the high watermark.
func openPartitions(t *testing.T, ctx context.Context, brokers string) []string {
	t.Helper()
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": brokers, "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	topic := outTopic
	ends := func(iso kafka.IsolationLevel) map[int32]kafka.Offset {
		q := map[kafka.TopicPartition]kafka.OffsetSpec{}
		for p := range int32(2) {
			q[kafka.TopicPartition{Topic: &topic, Partition: p}] = kafka.LatestOffsetSpec
		}
		res, err := a.ListOffsets(ctx, q, kafka.SetAdminIsolationLevel(iso))
		if err != nil {
			t.Fatal(err)
		}
		out := map[int32]kafka.Offset{}
		for tp, r := range res.ResultInfos {
			out[tp.Partition] = r.Offset
		}
		return out
	}
	hwm, lso := ends(kafka.IsolationLevelReadUncommitted), ends(kafka.IsolationLevelReadCommitted)
	var open []string
	for p, h := range hwm {
		if lso[p] < h {
			open = append(open, fmt.Sprintf("partition %d lso %d hwm %d", p, lso[p], h))
		}
	}
	return open
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func precommit(t *testing.T, ctx context.Context, s *Sink, epoch uint64) []byte {
	t.Helper()
	st, err := s.PreCommit(ctx, epoch)
	if err != nil {
		t.Fatalf("pre-commit %d: %v", epoch, err)
	}
	return st
}

// TestKafkaCycle: epochs pre-commit at barriers and commit on complete;
// epoch N+1 is written while N waits for its commit; complete(N) is
// subsuming; nothing is visible before its commit.
func TestKafkaCycle(t *testing.T) {
	for _, pool := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("pool=%d", pool), func(t *testing.T) {
			ctx := testCtx(t)
			_, brokers := newKfake(t)
			s, k := newKafkaSink(t, ctx, brokers, sinkOpts{pool: pool})
			e1, e2, e3 := recs(1, 10), recs(2, 7), recs(3, 5)
			must(t, s.Write(ctx, e1))
			precommit(t, ctx, s, 1)
			must(t, s.Write(ctx, e2)) // while epoch 1 awaits its commit
			if got := read(t, ctx, brokers, verify.ReadCommitted); len(got) != 0 {
				t.Fatalf("visible before commit: %q", got)
			}
			if pool == 1 && s.cur.txn != nil {
				t.Fatal("pool 1: epoch 2 has a producer while epoch 1 holds the only one")
			}
			if pool > 1 {
				// Epoch 2 went to the broker on another producer.
				if s.cur.txn == nil || s.cur.slot == s.pend[0].slot {
					t.Fatalf("epoch 2 has no producer of its own while epoch 1 waits")
				}
				if n := k.slots[s.cur.slot].p.Flush(30_000); n > 0 {
					t.Fatalf("%d records of epoch 2 not flushed", n)
				}
				if got := read(t, ctx, brokers, verify.ReadUncommitted); len(got) != len(e1)+len(e2) {
					t.Fatalf("read_uncommitted sees %d records, want %d (epoch 2 not written while 1 waits)", len(got), len(e1)+len(e2))
				}
			}
			precommit(t, ctx, s, 2)
			must(t, s.Commit(ctx, 2)) // complete(1) was lost; 2 subsumes it
			if p := s.Pending(); len(p) != 0 {
				t.Fatalf("pending after commit(2): %v", p)
			}
			must(t, s.Write(ctx, e3))
			precommit(t, ctx, s, 3)
			must(t, s.Commit(ctx, 3))
			expectCommitted(t, ctx, brokers, values(e1, e2, e3))
			must(t, s.Close())
		})
	}
}

// TestKafkaCrashAfterPreCommit: the process dies after checkpoint 1 is
// complete but before the commit; Recover replays epoch 1 once, and the
// broker holds the aborted first copy.
func TestKafkaCrashAfterPreCommit(t *testing.T) {
	ctx := testCtx(t)
	_, brokers := newKfake(t)
	s, k := newKafkaSink(t, ctx, brokers, sinkOpts{})
	e1, e2 := recs(1, 10), recs(2, 4)
	must(t, s.Write(ctx, e1))
	st := precommit(t, ctx, s, 1)
	must(t, s.Write(ctx, e2)) // epoch 2, never checkpointed
	if n := k.slots[s.cur.slot].p.Flush(30_000); n > 0 {
		t.Fatalf("%d records of epoch 2 not flushed", n)
	}
	crash(t, k)

	s2, _ := newKafkaSink(t, ctx, brokers, sinkOpts{}, st)
	expectCommitted(t, ctx, brokers, values(e1))
	if got := read(t, ctx, brokers, verify.ReadUncommitted); len(got) != 2*len(e1)+len(e2) {
		t.Fatalf("read_uncommitted sees %d records, want %d (the aborted first copy, epoch 2 and the replay)", len(got), 2*len(e1)+len(e2))
	}
	e3 := recs(3, 3)
	must(t, s2.Write(ctx, e3))
	precommit(t, ctx, s2, 3)
	must(t, s2.Commit(ctx, 3))
	expectCommitted(t, ctx, brokers, values(e1, e3))
}

// TestKafkaRecoverAfterCommit: the commit went through but the process
// died before it could know (or before the checkpoint after it): Recover
// finds the marker and does not write epoch 1 again.
func TestKafkaRecoverAfterCommit(t *testing.T) {
	// Subtask 5 too: its markers must be where recovery looks for them
	// from the first one on (regression: a fresh sink wrote them to a
	// hashed partition, and recovery replayed committed epochs).
	for _, subtask := range []int{0, 5} {
		t.Run(fmt.Sprintf("subtask=%d", subtask), func(t *testing.T) {
			ctx := testCtx(t)
			_, brokers := newKfake(t)
			s, k := newKafkaSink(t, ctx, brokers, sinkOpts{subtask: subtask})
			e1 := recs(1, 10)
			must(t, s.Write(ctx, e1))
			st := precommit(t, ctx, s, 1)
			must(t, s.Commit(ctx, 1))
			crash(t, k)
			for range 2 { // twice: recovery itself may be interrupted
				_, k2 := newKafkaSink(t, ctx, brokers, sinkOpts{subtask: subtask}, st)
				crash(t, k2)
			}
			expectCommitted(t, ctx, brokers, values(e1))
			if got := read(t, ctx, brokers, verify.ReadUncommitted); len(got) != len(e1) {
				t.Fatalf("read_uncommitted sees %d records, want %d: epoch 1 was written again", len(got), len(e1))
			}
		})
	}
}

// TestKafkaCommitFails: EndTxn fails (the broker never commits); the sink
// fails with ErrCommit, the caller restarts, and Recover commits epoch 1
// exactly once.
func TestKafkaCommitFails(t *testing.T) {
	ctx := testCtx(t)
	c, brokers := newKfake(t)
	s, k := newKafkaSink(t, ctx, brokers, sinkOpts{opTimeout: 2 * time.Second})
	e1 := recs(1, 10)
	must(t, s.Write(ctx, e1))
	st := precommit(t, ctx, s, 1)

	var failing atomic.Bool
	failing.Store(true)
	var hits atomic.Int64
	c.ControlKey(kmsg.EndTxn.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !failing.Load() {
			return nil, nil, false
		}
		c.KeepControl()
		hits.Add(1)
		r := req.(*kmsg.EndTxnRequest)
		resp := r.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp, nil, true
	})
	err := s.Commit(ctx, 1)
	if !errors.Is(err, ErrCommit) {
		t.Fatalf("commit with EndTxn failing: %v, want ErrCommit", err)
	}
	if hits.Load() == 0 {
		t.Fatal("the EndTxn fault was never hit")
	}
	if err := s.Write(ctx, recs(2, 1)); !errors.Is(err, ErrFailed) {
		t.Fatalf("write after a failed commit: %v, want ErrFailed", err)
	}
	failing.Store(false)
	crash(t, k)

	newKafkaSink(t, ctx, brokers, sinkOpts{}, st)
	expectCommitted(t, ctx, brokers, values(e1))
	if got := read(t, ctx, brokers, verify.ReadUncommitted); len(got) != 2*len(e1) {
		t.Fatalf("read_uncommitted sees %d records, want %d (aborted copy + replay)", len(got), 2*len(e1))
	}
}

// TestKafkaEmptyEpoch: epochs without records commit cleanly (they open no
// transaction, FLINK-31363), also across a recovery.
func TestKafkaEmptyEpoch(t *testing.T) {
	ctx := testCtx(t)
	_, brokers := newKfake(t)
	s, k := newKafkaSink(t, ctx, brokers, sinkOpts{})
	precommit(t, ctx, s, 1)
	must(t, s.Commit(ctx, 1))
	e2 := recs(2, 3)
	must(t, s.Write(ctx, e2))
	precommit(t, ctx, s, 2)
	st := precommit(t, ctx, s, 3) // empty, while 2 is pending
	must(t, s.Commit(ctx, 3))
	st4 := precommit(t, ctx, s, 4)
	must(t, s.Commit(ctx, 4))
	crash(t, k)
	s2, k2 := newKafkaSink(t, ctx, brokers, sinkOpts{}, st)
	crash(t, k2)
	_ = s2
	newKafkaSink(t, ctx, brokers, sinkOpts{}, st4)
	expectCommitted(t, ctx, brokers, values(e2))
}

// TestKafkaZombie: a second instance with the same transactional ids
// fences the first; the first can no longer commit, and the output has
// every record once.
func TestKafkaZombie(t *testing.T) {
	ctx := testCtx(t)
	_, brokers := newKfake(t)
	s1, _ := newKafkaSink(t, ctx, brokers, sinkOpts{})
	e1 := recs(1, 6)
	must(t, s1.Write(ctx, e1))
	st := precommit(t, ctx, s1, 1)

	s2, _ := newKafkaSink(t, ctx, brokers, sinkOpts{}, st)
	err := s1.Commit(ctx, 1)
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("zombie commit: %v, want ErrFenced", err)
	}
	e2 := recs(2, 4)
	must(t, s2.Write(ctx, e2))
	precommit(t, ctx, s2, 2)
	must(t, s2.Commit(ctx, 2))
	expectCommitted(t, ctx, brokers, values(e1, e2))
}

// TestKafkaBrokerAbortedTransaction: the broker aborts the pre-committed
// transaction on its own (transaction.timeout.ms passed during an
// outage); the commit fails, and Recover replays it: nothing lost (Flink
// loses it).
func TestKafkaBrokerAbortedTransaction(t *testing.T) {
	ctx := testCtx(t)
	_, brokers := newKfake(t)
	o := sinkOpts{txTimeout: time.Second, opTimeout: 5 * time.Second}
	s, k := newKafkaSink(t, ctx, brokers, o)
	e1 := recs(1, 8)
	must(t, s.Write(ctx, e1))
	st := precommit(t, ctx, s, 1)
	// Wait (bounded) until the broker has aborted it: the output's last
	// stable offset reaches its end.
	for len(openPartitions(t, ctx, brokers)) > 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the broker never aborted the transaction")
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := s.Commit(ctx, 1); err == nil {
		t.Fatal("commit of a transaction the broker aborted succeeded")
	}
	crash(t, k)
	newKafkaSink(t, ctx, brokers, o, st)
	expectCommitted(t, ctx, brokers, values(e1))
}

// TestKafkaRescale: subtask 1 of parallelism 2 dies with a pending epoch
// and an open transaction; the job comes back with parallelism 1 and
// subtask 0 recovers both old states: subtask 1's ids are fenced (no
// lingering transaction) and its epoch is replayed under its own marker.
func TestKafkaRescale(t *testing.T) {
	ctx := testCtx(t)
	_, brokers := newKfake(t)
	s0, k0 := newKafkaSink(t, ctx, brokers, sinkOpts{subtask: 0})
	s1, k1 := newKafkaSink(t, ctx, brokers, sinkOpts{subtask: 1})
	a1, b1 := recs(1, 5), recs(101, 5)
	must(t, s0.Write(ctx, a1))
	must(t, s1.Write(ctx, b1))
	st0 := precommit(t, ctx, s0, 1)
	st1 := precommit(t, ctx, s1, 1)
	must(t, s0.Commit(ctx, 1)) // subtask 0 committed, subtask 1 did not
	must(t, s1.Write(ctx, recs(102, 3)))
	crash(t, k0)
	crash(t, k1)
	if len(openPartitions(t, ctx, brokers)) == 0 {
		t.Fatal("expected subtask 1's transactions to linger before recovery")
	}
	newKafkaSink(t, ctx, brokers, sinkOpts{subtask: 0}, st0, st1)
	expectCommitted(t, ctx, brokers, values(a1, b1))
}

// TestKafkaTransactionTimeoutChecked: transaction.timeout.ms is checked at
// start against the checkpoint timeout and the broker's maximum.
func TestKafkaTransactionTimeoutChecked(t *testing.T) {
	ctx := testCtx(t)
	_, brokers := newKfake(t, kfake.BrokerConfigs(map[string]string{"transaction.max.timeout.ms": "5000"}))
	cfg := kafkaCfg(brokers, sinkOpts{txTimeout: 10 * time.Second})
	if _, err := NewKafka(ctx, cfg); !errors.Is(err, ErrTransactionTimeout) {
		t.Fatalf("timeout above the broker maximum: %v, want ErrTransactionTimeout", err)
	}
	cfg = kafkaCfg(brokers, sinkOpts{txTimeout: 2 * time.Second})
	cfg.CheckpointInterval, cfg.CheckpointTimeout = time.Second, 2*time.Second
	if _, err := NewKafka(ctx, cfg); !errors.Is(err, ErrTransactionTimeout) {
		t.Fatalf("timeout below interval+checkpoint timeout: %v, want ErrTransactionTimeout", err)
	}
	cfg = kafkaCfg(brokers, sinkOpts{})
	cfg.CheckpointInterval, cfg.CheckpointTimeout = time.Second, 10*time.Second
	if _, err := NewKafka(ctx, cfg); !errors.Is(err, ErrTransactionTimeout) {
		t.Fatalf("default timeout with a checkpoint timeout above the broker maximum: %v, want ErrTransactionTimeout", err)
	}
	cfg.CheckpointTimeout = 2 * time.Second
	k, err := NewKafka(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := k.TransactionTimeout(); got != 5*time.Second {
		t.Fatalf("default transaction timeout %v, want the broker maximum 5s", got)
	}
	cfg.ProgressTopic = "missing"
	if _, err := NewKafka(ctx, cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("missing progress topic: %v, want ErrConfig", err)
	}
}

// TestKafkaCloseWhenAbortFails: Close releases every producer even when
// the abort fails (FLINK-37613 leaked them).
func TestKafkaCloseWhenAbortFails(t *testing.T) {
	ctx := testCtx(t)
	c, brokers := newKfake(t)
	s, k := newKafkaSink(t, ctx, brokers, sinkOpts{opTimeout: 2 * time.Second})
	must(t, s.Write(ctx, recs(1, 3)))
	precommit(t, ctx, s, 1)
	must(t, s.Write(ctx, recs(2, 3)))
	c.ControlKey(kmsg.EndTxn.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		resp := req.(*kmsg.EndTxnRequest).ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp, nil, true
	})
	if err := s.Close(); err == nil {
		t.Fatal("close with every EndTxn failing reported no error")
	}
	if n := k.openProducers.Load(); n != 0 {
		t.Fatalf("%d producers left open after Close", n)
	}
}

// TestKafkaRecoverNotBlockedBySibling: with a progress partition per
// subtask, a subtask's recovery does not wait for a sibling subtask's
// pre-committed transaction, whose commit waits for this very recovery (the
// checkpoint needs every subtask's ack). Regression: with one shared
// partition the recovery stalled until its operation timeout.
func TestKafkaRecoverNotBlockedBySibling(t *testing.T) {
	ctx := testCtx(t)
	_, brokers := newKfake(t)
	const progress = "progress-per-subtask"
	if err := CreateProgressTopic(ctx, brokers, nil, progress, 1); err != nil {
		t.Fatal(err)
	}
	cfg := func(subtask int) KafkaConfig {
		k := kafkaCfg(brokers, sinkOpts{subtask: subtask})
		k.ProgressTopic = progress
		return k
	}
	open := func(subtask int, states ...[]byte) (*Sink, *Kafka) {
		k, err := NewKafka(ctx, cfg(subtask))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k.Close() })
		// A short operation timeout: a stall fails the test instead of
		// passing after a minute.
		s, err := New(k, Config{Owner: Owner("job", "sink", subtask), OpTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Recover(ctx, states...); err != nil {
			t.Fatalf("recover subtask %d: %v", subtask, err)
		}
		return s, k
	}
	s1, _ := open(1)
	must(t, s1.Write(ctx, recs(1, 5)))
	precommit(t, ctx, s1, 1) // subtask 1's marker is written, not committed
	if MarkerPartition(Owner("job", "sink", 0), ProgressPartitions) == MarkerPartition(Owner("job", "sink", 1), ProgressPartitions) {
		t.Fatal("subtasks 0 and 1 share a progress partition")
	}
	open(0) // must not wait for subtask 1's open transaction
	must(t, s1.Commit(ctx, 1))
}

// TestKafkaProgressLeaderEpochRetried: while the broker answers the
// progress topic's offset lookups with UNKNOWN_LEADER_EPOCH (its view of a
// new topic's leader lags the client's), Recover asks again instead of
// failing the sink.
func TestKafkaProgressLeaderEpochRetried(t *testing.T) {
	ctx := testCtx(t)
	c, brokers := newKfake(t)
	var hits atomic.Int64
	c.ControlKey(kmsg.ListOffsets.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if hits.Load() >= 3 {
			return nil, nil, false
		}
		c.KeepControl()
		hits.Add(1)
		return kfakeresp.ListOffsets(req.(*kmsg.ListOffsetsRequest), func(_ *kmsg.ListOffsetsRequestTopicPartition, sp *kmsg.ListOffsetsResponseTopicPartition) {
			sp.ErrorCode = kerr.UnknownLeaderEpoch.Code
		}), nil, true
	})
	k, err := NewKafka(ctx, kafkaCfg(brokers, sinkOpts{}))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	s, err := New(k, Config{Owner: Owner("job", "sink", 0), OpTimeout: 30 * time.Second, CheckCommitted: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(ctx); err != nil {
		t.Fatalf("recover: %v", err)
	}
	if hits.Load() == 0 {
		t.Fatal("the UNKNOWN_LEADER_EPOCH fault was never hit")
	}
}
