package txsink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir/internal/kafkaconf"
	"github.com/weirstream/weir/internal/rdk"
)

// KafkaConfig configures the Kafka backend of one sink subtask.
type KafkaConfig struct {
	// Brokers is the bootstrap list. Required.
	Brokers string
	// Topic receives the records. Required; it must exist.
	Topic string
	// DeadLetterTopics must exist like Topic: the dead-letter topics that
	// records name in Record.Topic (checked at start).
	DeadLetterTopics []string
	// ProgressTopic receives the progress markers (key: owner, value:
	// epoch in decimal). Required; it must exist and should be compacted
	// (see CreateProgressTopic).
	ProgressTopic string
	// TransactionalIDPrefix, Job and Sink name the transactional ids
	// (TransactionalID). All required; keep them stable across restarts.
	TransactionalIDPrefix, Job, Sink string
	// Subtask is this sink subtask's index.
	Subtask int
	// Pool is the number of transactional producers (slots) of the
	// subtask: one for the open epoch, the others for epochs waiting for
	// their commit. Default 2.
	Pool int
	// TransactionTimeout is transaction.timeout.ms. It must be at least
	// CheckpointInterval + CheckpointTimeout (an epoch's transaction stays
	// open that long) and at most the broker's transaction.max.timeout.ms.
	// Zero picks max(60s, CheckpointInterval+CheckpointTimeout+30s), cut to
	// the broker's maximum when that still fits.
	TransactionTimeout time.Duration
	// CheckpointInterval and CheckpointTimeout are the job's; the timeout
	// is required.
	CheckpointInterval, CheckpointTimeout time.Duration
	// RequestTimeout bounds each metadata, admin and offsets request.
	// Default 30s.
	RequestTimeout time.Duration
	// Properties are extra librdkafka producer properties. The
	// transactional ones are set by the backend and cannot be overridden.
	Properties map[string]string
	// Failpoint, when set, is called at the named protocol steps
	// "between-data-and-marker" and "during-commit" (tests arm it to crash
	// the process there).
	Failpoint func(name string) `json:"-"`
}

// ProgressPartitions is the partition count CreateProgressTopic uses: one
// per possible sink subtask (the engine's largest parallelism), so that
// each subtask's markers have a partition of their own.
const ProgressPartitions = 128

// MarkerPartition is the progress-topic partition of owner's markers: the
// subtask number at the end of the owner (Owner) modulo the partition
// count, or a hash of the owner when it has no number.
func MarkerPartition(owner string, partitions int32) int32 {
	if partitions <= 1 {
		return 0
	}
	if i := strings.LastIndexByte(owner, '/'); i >= 0 {
		if n, err := strconv.Atoi(owner[i+1:]); err == nil && n >= 0 {
			return int32(n % int(partitions))
		}
	}
	h := fnv.New32a()
	h.Write([]byte(owner))
	return int32(h.Sum32() % uint32(partitions))
}

// TransactionalID returns the transactional id of slot of a sink subtask:
// "<prefix>-<job>-<sink>-<subtask>-<slot>".
func TransactionalID(prefix, job, sink string, subtask, slot int) string {
	return fmt.Sprintf("%s-%s-%s-%d-%d", prefix, job, sink, subtask, slot)
}

// TransactionalIDs returns the ids of every slot of subtasks [from, to):
// pass them as Config.FenceIDs to fence subtasks of a larger parallelism
// that ran after the checkpoint being restored.
func TransactionalIDs(prefix, job, sink string, from, to, pool int) []string {
	var ids []string
	for st := from; st < to; st++ {
		for slot := range pool {
			ids = append(ids, TransactionalID(prefix, job, sink, st, slot))
		}
	}
	return ids
}

// Owner returns the progress-marker owner of a sink subtask:
// "<job>/<sink>/<subtask>". Use it as Config.Owner.
func Owner(job, sink string, subtask int) string {
	return fmt.Sprintf("%s/%s/%d", job, sink, subtask)
}

// Kafka is the Backend on Kafka transactions, through weir's own producer
// over the librdkafka that confluent-kafka-go bundles (internal/rdk): it
// is told of no successful delivery (delivery.report.only.error), where a
// confluent-kafka-go producer turns each batch of reports into Go values
// only to drop them; a failed delivery makes the transaction fail at its
// commit. Slot i uses transactional id TransactionalID(prefix, job, sink,
// subtask, i).
type Kafka struct {
	cfg   KafkaConfig
	tt    time.Duration
	ids   []string
	slots []*kproducer
	// openProducers counts producers created and not yet closed.
	openProducers atomic.Int64
	// progressParts is the progress topic's partition count, learnt in
	// NewKafka, before any marker is written.
	progressParts atomic.Int32
}

// kproducer is one transactional producer and its first fatal error.
type kproducer struct {
	id    string
	p     *rdk.Producer
	fatal atomic.Pointer[error]
	// out produces the records to the output topic many per cgo crossing,
	// marker the markers to the progress topic; nil until first used.
	out, marker *rdk.Topic
}

// NewKafka validates cfg, checks both topics, and checks the transaction
// timeout against the checkpoint timeout and the broker's
// transaction.max.timeout.ms (ErrTransactionTimeout). Producers are
// created by Fence, which Sink.Recover calls.
func NewKafka(ctx context.Context, cfg KafkaConfig) (*Kafka, error) {
	switch {
	case cfg.Brokers == "", cfg.Topic == "", cfg.ProgressTopic == "":
		return nil, fmt.Errorf("%w: Brokers, Topic and ProgressTopic are required", ErrConfig)
	case cfg.TransactionalIDPrefix == "", cfg.Job == "", cfg.Sink == "":
		return nil, fmt.Errorf("%w: TransactionalIDPrefix, Job and Sink are required", ErrConfig)
	case cfg.Subtask < 0:
		return nil, fmt.Errorf("%w: Subtask %d", ErrConfig, cfg.Subtask)
	case cfg.CheckpointTimeout <= 0:
		return nil, fmt.Errorf("%w: CheckpointTimeout is required to check the transaction timeout", ErrConfig)
	}
	if cfg.Pool <= 0 {
		cfg.Pool = 2
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	k := &Kafka{cfg: cfg}
	for i := range cfg.Pool {
		k.ids = append(k.ids, TransactionalID(cfg.TransactionalIDPrefix, cfg.Job, cfg.Sink, cfg.Subtask, i))
	}
	k.slots = make([]*kproducer, cfg.Pool)

	a, err := kafkaconf.NewAdmin(cfg.Brokers, cfg.Properties)
	if err != nil {
		return nil, fmt.Errorf("txsink: kafka: %w", err)
	}
	defer a.Close()
	md, err := a.GetMetadata(nil, true, int(cfg.RequestTimeout.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("txsink: kafka: metadata: %w", err)
	}
	topics := []string{cfg.Topic, cfg.ProgressTopic}
	topics = append(topics, cfg.DeadLetterTopics...)
	for _, t := range topics {
		tm, ok := md.Topics[t]
		switch {
		case !ok || len(tm.Partitions) == 0 && tm.Error.Code() == kafka.ErrNoError:
			return nil, fmt.Errorf("%w: topic %q does not exist", ErrConfig, t)
		case tm.Error.Code() != kafka.ErrNoError:
			return nil, fmt.Errorf("%w: topic %q: %v", ErrConfig, t, tm.Error)
		}
	}
	// Known before any marker is written: every marker of an owner must
	// land in MarkerPartition(owner), where recovery looks for it.
	k.progressParts.Store(int32(len(md.Topics[cfg.ProgressTopic].Partitions)))
	if len(md.Brokers) == 0 {
		return nil, fmt.Errorf("txsink: kafka: metadata lists no broker")
	}
	brokerMax, err := k.brokerMaxTimeout(ctx, a, md.Brokers[0].ID)
	if err != nil {
		return nil, err
	}
	if k.tt, err = transactionTimeout(cfg, brokerMax); err != nil {
		return nil, err
	}
	return k, nil
}

// transactionTimeout picks and checks transaction.timeout.ms.
func transactionTimeout(cfg KafkaConfig, brokerMax time.Duration) (time.Duration, error) {
	need := cfg.CheckpointInterval + cfg.CheckpointTimeout
	tt := cfg.TransactionTimeout
	if tt == 0 {
		tt = max(time.Minute, need+30*time.Second)
		if tt > brokerMax && brokerMax >= need {
			tt = brokerMax
		}
	}
	if tt < need {
		return 0, fmt.Errorf("%w: transaction.timeout.ms %v is shorter than the checkpoint interval %v plus the checkpoint timeout %v: "+
			"the broker would abort epochs that wait that long for their checkpoint (raise TransactionTimeout or lower the checkpoint timeout)",
			ErrTransactionTimeout, tt, cfg.CheckpointInterval, cfg.CheckpointTimeout)
	}
	if tt > brokerMax {
		return 0, fmt.Errorf("%w: transaction.timeout.ms %v exceeds the broker's transaction.max.timeout.ms %v "+
			"(lower TransactionTimeout and the checkpoint timeout, or raise the broker's maximum)", ErrTransactionTimeout, tt, brokerMax)
	}
	return tt, nil
}

// brokerMaxTimeout reads transaction.max.timeout.ms of broker id.
func (k *Kafka) brokerMaxTimeout(ctx context.Context, a *kafka.AdminClient, id int32) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.RequestTimeout)
	defer cancel()
	res, err := a.DescribeConfigs(ctx, []kafka.ConfigResource{{Type: kafka.ResourceBroker, Name: strconv.Itoa(int(id))}})
	if err != nil {
		return 0, fmt.Errorf("txsink: kafka: describe config of broker %d: %w", id, err)
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			return 0, fmt.Errorf("txsink: kafka: describe config of broker %d: %w", id, r.Error)
		}
		if e, ok := r.Config["transaction.max.timeout.ms"]; ok && e.Value != "" {
			ms, err := strconv.ParseInt(e.Value, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("txsink: kafka: broker %d transaction.max.timeout.ms %q: %w", id, e.Value, err)
			}
			return time.Duration(ms) * time.Millisecond, nil
		}
	}
	return 0, fmt.Errorf("txsink: kafka: broker %d does not report transaction.max.timeout.ms", id)
}

// TransactionTimeout returns the transaction.timeout.ms in use.
func (k *Kafka) TransactionTimeout() time.Duration { return k.tt }

// ProgressName returns the progress topic (for errors).
func (k *Kafka) ProgressName() string { return k.cfg.ProgressTopic }

// IDs implements Backend.
func (k *Kafka) IDs() []string { return append([]string(nil), k.ids...) }

func (k *Kafka) newProducer(id string) (*kproducer, error) {
	conf := kafkaconf.ProducerConfig(k.cfg.Brokers, kafka.ConfigMap{
		"linger.ms":           5,
		"enable.metrics.push": false,
	}, k.cfg.Properties, kafka.ConfigMap{
		"transactional.id":       id,
		"transaction.timeout.ms": int(k.tt.Milliseconds()),
		"enable.idempotence":     true,
		"acks":                   "all",
		// A failed delivery fails the transaction's commit; a successful
		// one needs no report.
		"delivery.report.only.error": true,
	})
	kp := &kproducer{id: id}
	p, err := rdk.NewProducer(conf, rdk.ProducerEvents{
		Fatal: func(err error) { kp.fatal.CompareAndSwap(nil, &err) },
	})
	if err != nil {
		return nil, fmt.Errorf("txsink: kafka: producer %s: kafka producer: %w", id, err)
	}
	kp.p = p
	k.openProducers.Add(1)
	return kp, nil
}

func (k *Kafka) closeProducer(kp *kproducer) {
	for _, t := range []**rdk.Topic{&kp.out, &kp.marker} {
		if *t != nil {
			(*t).Close()
			*t = nil
		}
	}
	_ = kp.p.Purge()
	kp.p.Close()
	k.openProducers.Add(-1)
}

// Fence implements Backend: InitTransactions on every id, which aborts the
// open transaction of an earlier instance (and waits for one committing)
// and fences it. The producers of this subtask's own ids stay as the pool.
func (k *Kafka) Fence(ctx context.Context, ids []string) error {
	for i, kp := range k.slots {
		if kp != nil {
			k.closeProducer(kp)
			k.slots[i] = nil
		}
	}
	own := map[string]int{}
	for i, id := range k.ids {
		own[id] = i
	}
	// InitTransactions on each id is independent (each may wait for the
	// broker to abort what the id left open): fence them all at once.
	all := append(append([]string(nil), ids...), k.ids...)
	seen := map[string]bool{}
	type result struct {
		id  string
		kp  *kproducer
		err error
	}
	results := make(chan result, len(all))
	n := 0
	for _, id := range all {
		if seen[id] {
			continue
		}
		seen[id] = true
		n++
		go func(id string) {
			kp, err := k.newProducer(id)
			if err != nil {
				results <- result{id: id, err: err}
				return
			}
			if err := retry(ctx, func(ctx context.Context) error { return kp.p.InitTransactions(ctx) }); err != nil {
				k.closeProducer(kp)
				results <- result{id: id, err: fmt.Errorf("txsink: kafka: init transactions of %s: %w", id, classify(err))}
				return
			}
			results <- result{id: id, kp: kp}
		}(id)
	}
	var firstErr error
	for i := 0; i < n; i++ {
		r := <-results
		switch {
		case r.err != nil:
			if firstErr == nil {
				firstErr = r.err
			}
		case firstErr == nil:
			if slot, isOwn := own[r.id]; isOwn {
				k.slots[slot] = r.kp
				continue
			}
			k.closeProducer(r.kp)
		default:
			k.closeProducer(r.kp)
		}
	}
	if firstErr != nil {
		for i, kp := range k.slots {
			if kp != nil {
				k.closeProducer(kp)
				k.slots[i] = nil
			}
		}
		return firstErr
	}
	return nil
}

// retry runs fn until it succeeds, fails with an error that is not
// retriable, or ctx ends.
func retry(ctx context.Context, fn func(context.Context) error) error {
	for {
		err := fn(ctx)
		var re interface{ IsRetriable() bool }
		if err == nil || !errors.As(err, &re) || !re.IsRetriable() {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", context.Cause(ctx), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// classify wraps fencing errors in ErrFenced.
func classify(err error) error {
	var ke kafka.Error
	if errors.As(err, &ke) {
		switch ke.Code() {
		case kafka.ErrFenced, kafka.ErrProducerFenced, kafka.ErrInvalidProducerEpoch:
			return fmt.Errorf("%w: %w", ErrFenced, err)
		}
	}
	return err
}

// Committed implements Backend: it waits until the progress topic's last
// stable offset reaches its high watermark as of the call (every
// transaction that wrote markers before is decided), then reads it
// read_committed to that end.
func (k *Kafka) Committed(ctx context.Context, owners []string) (map[string]uint64, error) {
	want := make(map[string]bool, len(owners))
	for _, o := range owners {
		want[o] = true
	}
	topic := k.cfg.ProgressTopic
	a, err := kafkaconf.NewAdmin(k.cfg.Brokers, k.cfg.Properties)
	if err != nil {
		return nil, fmt.Errorf("txsink: kafka: %w", err)
	}
	defer a.Close()
	md, err := a.GetMetadata(&topic, false, k.requestMs(ctx))
	if err != nil {
		return nil, fmt.Errorf("txsink: kafka: metadata of %q: %w", topic, err)
	}
	tm := md.Topics[topic]
	if tm.Error.Code() != kafka.ErrNoError || len(tm.Partitions) == 0 {
		return nil, fmt.Errorf("txsink: kafka: progress topic %q: %v", topic, tm.Error)
	}
	// Markers of an owner live in its own partition (MarkerPartition), so
	// only the owners' partitions are waited for and read: a sibling
	// subtask's open transaction, in its own partition, never holds this
	// recovery up. (With fewer partitions than subtasks they share.)
	nparts := int32(len(tm.Partitions))
	if known := k.progressParts.Load(); known != nparts {
		return nil, fmt.Errorf("%w: progress topic %q has %d partitions, %d when this sink started; do not add partitions to it",
			ErrProgress, topic, nparts, known)
	}
	mine := map[int32]bool{}
	for _, o := range owners {
		mine[MarkerPartition(o, nparts)] = true
	}
	var parts []kafka.PartitionMetadata
	for _, pm := range tm.Partitions {
		if mine[pm.ID] {
			parts = append(parts, pm)
		}
	}
	if len(parts) == 0 {
		return map[string]uint64{}, nil
	}
	hwm, err := k.listEnds(ctx, a, parts, kafka.IsolationLevelReadUncommitted)
	if err != nil {
		return nil, err
	}
	for {
		lso, err := k.listEnds(ctx, a, parts, kafka.IsolationLevelReadCommitted)
		if err != nil {
			return nil, err
		}
		behind := ""
		for p, h := range hwm {
			if lso[p] < h {
				behind += fmt.Sprintf(" partition %d at %d of %d", p, lso[p], h)
			}
		}
		if behind == "" {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %q: an open transaction of another writer holds the last stable offset:%s: %w",
				ErrProgress, topic, behind, context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}

	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	c, err := kafkaconf.NewConsumer(k.cfg.Brokers, kafka.ConfigMap{"enable.metrics.push": false}, k.cfg.Properties, kafka.ConfigMap{
		"group.id":             "weir-txsink-progress-" + hex.EncodeToString(rnd[:]),
		"enable.auto.commit":   false,
		"auto.offset.reset":    "earliest",
		"isolation.level":      "read_committed",
		"enable.partition.eof": true,
	})
	if err != nil {
		return nil, fmt.Errorf("txsink: kafka: progress reader: %w", err)
	}
	defer c.Close()
	next := map[int32]int64{}
	var assign []kafka.TopicPartition
	for p, h := range hwm {
		if h > 0 {
			next[p] = 0
			assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.OffsetBeginning})
		}
	}
	out := make(map[string]uint64, len(owners))
	if len(assign) == 0 {
		return out, nil
	}
	if err := c.Assign(assign); err != nil {
		return nil, fmt.Errorf("txsink: kafka: progress reader: assign: %w", err)
	}
	left := len(assign)
	advance := func(p int32, off int64) {
		if n, ok := next[p]; ok && off > n {
			next[p] = off
			if off >= hwm[p] {
				delete(next, p)
				left--
			}
		}
	}
	for left > 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w: %q: %d partitions not read to the end: %w", ErrProgress, topic, left, context.Cause(ctx))
		}
		switch ev := c.Poll(50).(type) {
		case nil:
			var q []kafka.TopicPartition
			for p := range next {
				q = append(q, kafka.TopicPartition{Topic: &topic, Partition: p})
			}
			if pos, err := c.Position(q); err == nil {
				for _, tp := range pos {
					if tp.Offset >= 0 {
						advance(tp.Partition, int64(tp.Offset))
					}
				}
			}
		case *kafka.Message:
			if ev.TopicPartition.Error != nil {
				return nil, fmt.Errorf("txsink: kafka: read %q: %w", topic, ev.TopicPartition.Error)
			}
			if o := string(ev.Key); want[o] {
				e, err := strconv.ParseUint(string(ev.Value), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%w: %q partition %d offset %d: marker %q of %s: %v", ErrProgress, topic,
						ev.TopicPartition.Partition, ev.TopicPartition.Offset, ev.Value, o, err)
				}
				out[o] = max(out[o], e)
			}
			advance(ev.TopicPartition.Partition, int64(ev.TopicPartition.Offset)+1)
		case kafka.PartitionEOF:
			advance(ev.Partition, int64(ev.Offset))
		case kafka.Error:
			if ev.IsFatal() {
				return nil, fmt.Errorf("txsink: kafka: read %q: %w", topic, ev)
			}
		}
	}
	return out, nil
}

// listEnds returns the end offset of every partition at isolation.
// A partition whose leader is not known yet (a progress topic created a
// moment ago) is asked again until ctx ends.
func (k *Kafka) listEnds(ctx context.Context, a *kafka.AdminClient, parts []kafka.PartitionMetadata, iso kafka.IsolationLevel) (map[int32]int64, error) {
	for {
		out, err := k.listEndsOnce(ctx, a, parts, iso)
		var ke kafka.Error
		if err == nil || !errors.As(err, &ke) || !leaderUnknown(ke.Code()) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// leaderUnknown reports whether code says a partition's leader is not
// known (yet) to the broker asked, or that the broker and the client do
// not agree on its leader epoch yet (a topic created or a leader elected a
// moment ago).
func leaderUnknown(code kafka.ErrorCode) bool {
	switch code {
	case kafka.ErrNotLeaderForPartition, kafka.ErrLeaderNotAvailable, kafka.ErrUnknownTopicOrPart, kafka.ErrNotCoordinator,
		kafka.ErrUnknownLeaderEpoch, kafka.ErrFencedLeaderEpoch:
		return true
	}
	return false
}

func (k *Kafka) listEndsOnce(ctx context.Context, a *kafka.AdminClient, parts []kafka.PartitionMetadata, iso kafka.IsolationLevel) (map[int32]int64, error) {
	rctx, cancel := context.WithTimeout(ctx, k.cfg.RequestTimeout)
	defer cancel()
	topic := k.cfg.ProgressTopic
	q := make(map[kafka.TopicPartition]kafka.OffsetSpec, len(parts))
	for _, p := range parts {
		q[kafka.TopicPartition{Topic: &topic, Partition: p.ID}] = kafka.LatestOffsetSpec
	}
	res, err := a.ListOffsets(rctx, q, kafka.SetAdminIsolationLevel(iso))
	if err != nil {
		return nil, fmt.Errorf("txsink: kafka: list offsets of %q: %w", topic, err)
	}
	out := make(map[int32]int64, len(parts))
	for tp, r := range res.ResultInfos {
		if r.Error.Code() != kafka.ErrNoError {
			return nil, fmt.Errorf("txsink: kafka: list offsets of %q partition %d: %w", topic, tp.Partition, r.Error)
		}
		out[tp.Partition] = int64(r.Offset)
	}
	return out, nil
}

func (k *Kafka) requestMs(ctx context.Context) int {
	d := k.cfg.RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return int(max(d.Milliseconds(), 1))
}

// Begin implements Backend.
func (k *Kafka) Begin(_ context.Context, slot int) (Txn, error) {
	if slot < 0 || slot >= len(k.slots) || k.slots[slot] == nil {
		return nil, fmt.Errorf("txsink: kafka: begin on slot %d: no producer (Fence first)", slot)
	}
	kp := k.slots[slot]
	if e := kp.fatal.Load(); e != nil {
		return nil, fmt.Errorf("txsink: kafka: begin on %s: %w", kp.id, classify(*e))
	}
	if err := kp.p.BeginTransaction(); err != nil {
		return nil, fmt.Errorf("txsink: kafka: begin on %s: %w", kp.id, classify(err))
	}
	return &kafkaTxn{k: k, kp: kp}, nil
}

// Close implements Backend: it closes every producer without aborting.
func (k *Kafka) Close() error {
	for i, kp := range k.slots {
		if kp != nil {
			k.closeProducer(kp)
			k.slots[i] = nil
		}
	}
	return nil
}

type kafkaTxn struct {
	k  *Kafka
	kp *kproducer
}

// produce calls fn until the producer's queue has room for its record.
func (t *kafkaTxn) produce(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		var ke kafka.Error
		if err == nil || !errors.As(err, &ke) || ke.Code() != kafka.ErrQueueFull {
			return classify(err)
		}
		if err := t.room(ctx); err != nil {
			return err
		}
	}
}

// room waits a little for the producer's queue to drain (it is full).
func (t *kafkaTxn) room(ctx context.Context) error {
	if ctx.Err() != nil {
		return fmt.Errorf("producer queue full: %w", context.Cause(ctx))
	}
	t.kp.p.Flush(roomWaitMs)
	return nil
}

// roomWaitMs is one wait for room in a full producer queue: librdkafka
// wakes a flush when its queue empties, not when it has room again, so a
// long step would leave the queue idle for up to its length.
const roomWaitMs = 2

// prepareFlushMs is one step of the flush of a pre-commit (it returns
// when the queue is empty; Prepare checks its context between steps).
const prepareFlushMs = 100

// Write implements Txn. Records with a Topic or Headers (a dead-letter
// topic) are produced one by one, the others many per cgo crossing.
func (t *kafkaTxn) Write(ctx context.Context, recs []Record) error {
	for len(recs) > 0 {
		i := 0
		for i < len(recs) && !recs[i].routed() {
			i++
		}
		if i > 0 {
			if err := t.writePlain(ctx, recs[:i]); err != nil {
				return err
			}
			recs = recs[i:]
			continue
		}
		if err := t.writeRouted(ctx, recs[0]); err != nil {
			return err
		}
		recs = recs[1:]
	}
	return nil
}

// writeRouted produces r to its topic (the sink's when empty) with its
// headers.
func (t *kafkaTxn) writeRouted(ctx context.Context, r Record) error {
	topic := r.Topic
	if topic == "" {
		topic = t.k.cfg.Topic
	}
	var hs []rdk.Header
	if len(r.Headers) > 0 {
		hs = make([]rdk.Header, len(r.Headers))
		for i, h := range r.Headers {
			hs[i] = rdk.Header{Key: h.Key, Value: h.Value}
		}
	}
	if err := t.produce(ctx, func() error { return t.kp.p.ProduceOne(topic, r.Key, r.Value, hs, false) }); err != nil {
		return fmt.Errorf("txsink: kafka: produce to %q on %s: %w", topic, t.kp.id, err)
	}
	return nil
}

// writePlain produces records without topic or headers to the sink's
// topic.
func (t *kafkaTxn) writePlain(ctx context.Context, recs []Record) error {
	topic := t.k.cfg.Topic
	kp := t.kp
	if kp.out == nil {
		out, err := kp.p.Topic(topic)
		if err != nil {
			return fmt.Errorf("txsink: kafka: produce to %q on %s: %w", topic, kp.id, err)
		}
		kp.out = out
	}
	err := kp.out.ProduceAll(kafka.PartitionAny, len(recs), func(i int) ([]byte, []byte) {
		return recs[i].Key, recs[i].Value
	}, func(error) error { return t.room(ctx) })
	if err != nil {
		return fmt.Errorf("txsink: kafka: produce to %q on %s: %w", topic, kp.id, classify(err))
	}
	return nil
}

// Prepare implements Txn: it writes the marker and flushes.
func (t *kafkaTxn) Prepare(ctx context.Context, owner string, epoch uint64) error {
	if f := t.k.cfg.Failpoint; f != nil {
		f("between-data-and-marker")
	}
	topic := t.k.cfg.ProgressTopic
	n := t.k.progressParts.Load()
	if n <= 0 {
		return fmt.Errorf("%w: progress topic %q: partition count unknown", ErrProgress, t.k.cfg.ProgressTopic)
	}
	part := MarkerPartition(owner, n)
	if t.kp.marker == nil {
		m, err := t.kp.p.Topic(topic)
		if err != nil {
			return fmt.Errorf("txsink: kafka: marker of %s epoch %d on %s: %w", owner, epoch, t.kp.id, err)
		}
		t.kp.marker = m
	}
	key, value := []byte(owner), strconv.AppendUint(nil, epoch, 10)
	err := t.produce(ctx, func() error {
		_, err := t.kp.marker.Produce(part, 1, func(int) ([]byte, []byte) { return key, value })
		return err
	})
	if err != nil {
		return fmt.Errorf("txsink: kafka: marker of %s epoch %d on %s: %w", owner, epoch, t.kp.id, err)
	}
	for t.kp.p.Flush(prepareFlushMs) > 0 {
		if ctx.Err() != nil {
			return fmt.Errorf("txsink: kafka: flush %s: %d records not acknowledged: %w", t.kp.id, t.kp.p.Len(), context.Cause(ctx))
		}
	}
	if e := t.kp.fatal.Load(); e != nil {
		return fmt.Errorf("txsink: kafka: flush %s: %w", t.kp.id, classify(*e))
	}
	return nil
}

// Commit implements Txn. A commit that fails with an error requiring an
// abort is aborted, so the producer stays usable until the caller
// restarts.
func (t *kafkaTxn) Commit(ctx context.Context) error {
	if f := t.k.cfg.Failpoint; f != nil {
		f("during-commit")
	}
	err := retry(ctx, func(ctx context.Context) error { return t.kp.p.CommitTransaction(ctx) })
	if err == nil {
		return nil
	}
	var ae interface{ TxnRequiresAbort() bool }
	if errors.As(err, &ae) && ae.TxnRequiresAbort() {
		if aerr := t.kp.p.AbortTransaction(ctx); aerr != nil {
			err = fmt.Errorf("%w; abort: %w", err, aerr)
		}
	}
	return fmt.Errorf("txsink: kafka: commit on %s: %w", t.kp.id, classify(err))
}

// Abort implements Txn.
func (t *kafkaTxn) Abort(ctx context.Context) error {
	if err := retry(ctx, func(ctx context.Context) error { return t.kp.p.AbortTransaction(ctx) }); err != nil {
		return fmt.Errorf("txsink: kafka: abort on %s: %w", t.kp.id, classify(err))
	}
	return nil
}

// CreateProgressTopic creates a compacted progress topic with
// ProgressPartitions partitions, if it does not exist, with the client
// properties props (the job's security settings), and waits (bounded by
// ctx) until its partitions have leaders.
func CreateProgressTopic(ctx context.Context, brokers string, props map[string]string, topic string, replication int) error {
	a, err := kafkaconf.NewAdmin(brokers, props)
	if err != nil {
		return fmt.Errorf("txsink: kafka: %w", err)
	}
	defer a.Close()
	res, err := a.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: ProgressPartitions, ReplicationFactor: replication,
		Config: map[string]string{"cleanup.policy": "compact"}}})
	if err != nil {
		return fmt.Errorf("txsink: kafka: create progress topic %q: %w", topic, err)
	}
	for _, r := range res {
		if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrTopicAlreadyExists {
			return fmt.Errorf("txsink: kafka: create progress topic %q: %w", topic, r.Error)
		}
	}
	// A created topic reaches the brokers' metadata a little later; the
	// sinks look for it there when they start, so wait (bounded by ctx)
	// until every partition has a leader.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		md, err := a.GetMetadata(&topic, false, 5000)
		if err == nil {
			if tm, ok := md.Topics[topic]; ok && tm.Error.Code() == kafka.ErrNoError && len(tm.Partitions) > 0 && allLed(tm.Partitions) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("txsink: kafka: progress topic %q created but not in the cluster's metadata: %w", topic, ctx.Err())
		case <-tick.C:
		}
	}
}

func allLed(ps []kafka.PartitionMetadata) bool {
	for _, p := range ps {
		if p.Leader < 0 {
			return false
		}
	}
	return true
}
