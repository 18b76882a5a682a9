package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir/internal/kafkaconf"
	"github.com/weirstream/weir/internal/rdk"
	"github.com/weirstream/weir/snapshot"

	"github.com/weirstream/weir/txsink"
)

// SinkConfig configures one Kafka sink subtask.
type SinkConfig struct {
	Task  string
	Index int
	// Inputs are the senders: input 0 the results, inputs 1.. the sources
	// whose dead letters this sink writes. With more than one, barriers
	// are aligned (exactly-once: an input's records after barrier N wait
	// until barrier N arrived on every input).
	Inputs     int
	Brokers    string
	Topic      string
	Properties map[string]string
	// FlushTimeout bounds the wait for Kafka to acknowledge everything at
	// the end of input, and for room in the producer queue.
	FlushTimeout time.Duration
	// Checkpoint is nil when checkpoints are off.
	Checkpoint *Checkpointing
	// Transactional, when set, makes the sink exactly-once: results are
	// written in Kafka transactions pre-committed at each barrier and
	// committed when the checkpoint completes (see txsink).
	Transactional *txsink.KafkaConfig
	// Postgres, when set, makes the sink write to a PostgreSQL table
	// instead of Kafka: exactly-once through prepared transactions (the
	// same txsink protocol) when PostgresExactlyOnce, else at least once
	// (each batch received written and committed in one transaction, so
	// before the barrier after it is acked). Owner is set per subtask.
	Postgres            *txsink.PostgresConfig
	PostgresExactlyOnce bool
	// OpTimeout bounds each transactional operation (default 1m).
	OpTimeout time.Duration
	// MaxPendingBytes bounds the records an exactly-once sink holds for
	// its uncommitted epochs (txsink.Config.MaxPendingBytes; default
	// txsink.DefaultMaxPendingBytes). It must leave room under the cap of
	// a task's operator state (snapshot.MaxOpStateBytes), which holds them.
	MaxPendingBytes int64
	// AllowReplayCommitted lets an exactly-once sink start from a
	// checkpoint older than the newest epoch its progress markers show
	// committed (or fresh over markers of an earlier run), writing those
	// epochs' results again; without it Recover refuses with a
	// *txsink.ReplayCommittedError (crash-matrix row 9).
	AllowReplayCommitted bool
	// DeadLetterTopics are the topics the dead letters sent to this sink
	// go to (RawRecord.Topic); they must exist (checked at start). With
	// exactly-once delivery they are written in the epochs' transactions.
	DeadLetterTopics []string
	// Failpoint, when set, is called at the named protocol steps (tests
	// arm it to crash the process there).
	Failpoint func(name string)
	Metrics   *Metrics
	// Stats, when set, receives the subtask's figures (see TaskStats):
	// records and bytes in and written, transactions, commit latency.
	Stats *TaskStats
	Done  *sync.WaitGroup
	Log   *slog.Logger
}

type deliveryFailed struct{ err error }

// Sink writes the records of a graph's stream to Kafka. It returns a
// credit for a batch once the batch is in the producer's queue, so a slow
// broker slows the whole job down instead of growing memory.
type Sink struct {
	cfg  SinkConfig
	prod *rdk.Producer
	// out produces results to the topic through prod, many records per
	// cgo crossing (internal/rdk).
	out    *rdk.Topic
	ended  int
	failed bool
	// Exactly-once state: the transactional sink, whether every input has
	// ended, the newest checkpoint triggered (to snapshot once ended), the
	// epoch pre-committed last, and whether Finished was sent.
	tx          *txsink.Sink
	allEnded    bool
	triggered   uint64
	preparedTo  uint64
	finalEpoch  uint64 // the epoch pre-committed after every input ended
	finishedOut bool
	// barrierAt is when each pending epoch's barrier reached the sink, for
	// the commit latency in the log.
	barrierAt map[uint64]time.Time
	// deliveryErr is set by the delivery report reader; flush checks it.
	deliveryErr atomic.Pointer[error]
	// txSeen are the transaction counts of tx already added to Stats.
	txSeen txsink.Counts
	// Barrier alignment over several inputs: the inputs that delivered
	// barrier aligning (or ended), and the messages of blocked inputs held
	// until it is complete (exactly-once only).
	arrivals  map[uint64]map[int]bool // barrier -> inputs it arrived on
	alignedTo uint64                  // the newest barrier acted on
	aligning  uint64                  // exactly-once: the barrier whose inputs are held
	arrived   map[int]bool            // its arrivals
	inEnded   map[int]bool
	held      []any
	// pg writes at least once to PostgreSQL; pgBuf is the batch being
	// written (reused).
	pg    *txsink.Postgres
	pgBuf []txsink.Record
}

// NewSink returns the producer of a sink actor.
func NewSink(cfg SinkConfig) actor.Producer {
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = 60 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = &Metrics{}
	}
	cfg.Stats = cfg.Stats.orNew()
	return func() actor.Actor { return &Sink{cfg: cfg} }
}

// Receive implements actor.Actor.
func (s *Sink) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if err := s.start(ctx); err != nil {
			s.fail(ctx, err)
			return
		}
		ctx.Send(ctx.Parent(), &SinkReady{Task: s.cfg.Task})
	case *Batch:
		if s.hold(m.In, m) {
			return
		}
		s.batch(ctx, m)
	case *EndOfInput:
		if s.hold(m.In, m) {
			return
		}
		s.endOfInput(ctx, m)
	case *Barrier:
		if s.hold(m.In, m) {
			return
		}
		s.barrier(ctx, m)
	case *TriggerCheckpoint:
		if m.ID > s.triggered {
			s.triggered = m.ID
		}
		s.prepareFinal(ctx)
	case *CheckpointComplete:
		if s.tx == nil || s.failed {
			return
		}
		s.failpoint("after-complete-before-commit")
		octx, cancel := s.opContext()
		began := time.Now()
		err := s.tx.Commit(octx, m.ID)
		took := time.Since(began)
		cancel()
		s.syncTx()
		if err == nil && s.cfg.Stats.OnCommit != nil {
			s.cfg.Stats.OnCommit(took)
		}
		if err != nil {
			s.fail(ctx, fmt.Errorf("sink %s: commit up to checkpoint %d: %w", s.cfg.Task, m.ID, err))
			return
		}
		s.failpoint("after-commit")
		now := time.Now()
		for id, at := range s.barrierAt {
			if id <= m.ID {
				s.cfg.Log.Info("epoch committed", "task", s.cfg.Task, "epoch", id, "after_barrier", now.Sub(at).Round(time.Microsecond))
				delete(s.barrierAt, id)
			}
		}
		if !s.finishedOut && s.finalEpoch > 0 && m.ID >= s.finalEpoch && len(s.tx.Pending()) == 0 {
			s.finishedOut = true
			ctx.Send(ctx.Parent(), &Finished{Task: s.cfg.Task})
		}
	case *CheckpointAbort:
	case *deliveryFailed:
		s.fail(ctx, m.err)
	case *actor.Stopping:
		if s.tx != nil {
			if err := s.tx.Close(); err != nil {
				s.cfg.Log.Warn("close transactional sink", "task", s.cfg.Task, "err", err)
			}
			s.syncTx()
			s.tx = nil
			if s.cfg.Done != nil {
				s.cfg.Done.Done()
			}
		}
		if err := s.cfg.Checkpoint.close(); err != nil {
			s.cfg.Log.Warn("close state store", "task", s.cfg.Task, "err", err)
		}
		if s.pg != nil {
			if err := s.pg.Close(); err != nil {
				s.cfg.Log.Warn("close postgres sink", "task", s.cfg.Task, "err", err)
			}
			s.pg = nil
			if s.cfg.Done != nil {
				s.cfg.Done.Done()
			}
		}
		if s.prod != nil {
			if s.out != nil {
				s.out.Close()
				s.out = nil
			}
			s.prod.Close()
			s.prod = nil
			if s.cfg.Done != nil {
				s.cfg.Done.Done()
			}
		}
	}
}

// batch writes a batch of records (the results or dead letters).
func (s *Sink) batch(ctx actor.Context, m *Batch) {
	if s.failed {
		return
	}
	// Records come encoded by the operator before the sink.
	raw, ok := m.Data.([]RawRecord)
	if !ok {
		s.fail(ctx, fmt.Errorf("sink %s: got a batch of %T, not encoded records", s.cfg.Task, m.Data))
		return
	}
	var err error
	switch {
	case s.tx != nil:
		err = s.writeTxRaw(raw)
	case s.pg != nil:
		err = s.writePG(raw)
	default:
		err = s.writeRaw(raw)
	}
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.count(raw)
	ctx.Send(m.From, &Credit{Out: m.Out, N: 1})
}

// endOfInput counts an input that ended.
func (s *Sink) endOfInput(ctx actor.Context, m *EndOfInput) {
	if s.cfg.Inputs > 1 {
		if s.inEnded == nil {
			s.inEnded = map[int]bool{}
		}
		s.inEnded[m.In] = true
		// A barrier that waited only for this input is complete now.
		var ids []uint64
		for id := range s.arrivals {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			if id > s.alignedTo && s.complete(id) {
				s.onBarrier(ctx, &Barrier{In: m.In, ID: id})
				defer s.release(ctx)
			}
		}
	}
	s.ended++
	if s.ended == s.cfg.Inputs && !s.failed {
		if s.tx != nil {
			// The last epoch is committed by the next checkpoint (the
			// supervisor keeps triggering them): finished tasks ack
			// with their final state.
			s.allEnded = true
			s.prepareFinal(ctx)
			return
		}
		if err := s.flush(); err != nil {
			s.fail(ctx, err)
			return
		}
		ctx.Send(ctx.Parent(), &Finished{Task: s.cfg.Task})
	}
}

// barrier handles barrier m once it arrived on every input that has not
// ended (at once with one input).
func (s *Sink) barrier(ctx actor.Context, m *Barrier) {
	if s.cfg.Inputs > 1 {
		if !s.aligned(m) {
			return
		}
		defer s.release(ctx)
	}
	s.onBarrier(ctx, m)
}

// onBarrier ends epoch m.ID: pre-commit (exactly-once) or flush, and the
// snapshot.
func (s *Sink) onBarrier(ctx actor.Context, m *Barrier) {
	if m.ID > s.triggered {
		s.triggered = m.ID
	}
	if s.failed || !s.cfg.Checkpoint.Enabled() {
		return
	}
	if s.tx != nil {
		s.preCommit(ctx, m.ID)
		return
	}
	// At least once: everything before the barrier must be in Kafka
	// before this task acks the checkpoint.
	if err := s.flush(); err != nil {
		ctx.Send(ctx.Parent(), &CheckpointDecline{Task: s.cfg.Task, ID: m.ID, Reason: err.Error()})
		return
	}
	s.cfg.Checkpoint.snapshot(ctx, s.cfg.Task, m.ID, nil, []byte("{}"))
}

// hold reports whether a message of input in must wait for the barrier
// being aligned (exactly-once, several inputs), and holds it then.
func (s *Sink) hold(in int, m any) bool {
	if s.aligning == 0 || !s.arrived[in] {
		return false
	}
	s.held = append(s.held, m)
	return true
}

// aligned notes barrier m of one of several inputs and reports whether it
// has now arrived on every input that has not ended. With exactly-once
// checkpoints the inputs it arrived on are held meanwhile (one barrier is
// aligned at a time); at least once nothing is held, the arrivals of each
// barrier are counted, and a barrier older than one acted on is dropped.
func (s *Sink) aligned(m *Barrier) bool {
	if m.ID <= s.alignedTo {
		return false
	}
	if s.arrivals == nil {
		s.arrivals = map[uint64]map[int]bool{}
	}
	if s.arrivals[m.ID] == nil {
		s.arrivals[m.ID] = map[int]bool{}
	}
	s.arrivals[m.ID][m.In] = true
	if s.cfg.Checkpoint.Enabled() && s.cfg.Checkpoint.ExactlyOnce {
		s.aligning, s.arrived = m.ID, s.arrivals[m.ID]
	}
	return s.complete(m.ID)
}

// complete reports whether barrier id arrived on every input not ended,
// and then forgets it and every older one.
func (s *Sink) complete(id uint64) bool {
	got := s.arrivals[id]
	for in := range s.cfg.Inputs {
		if !got[in] && !s.inEnded[in] {
			return false
		}
	}
	for old := range s.arrivals {
		if old <= id {
			delete(s.arrivals, old)
		}
	}
	s.alignedTo = id
	s.aligning, s.arrived = 0, nil
	return true
}

// release handles the messages held while a barrier was aligned, in order
// (one of them may start the next alignment and be held again).
func (s *Sink) release(ctx actor.Context) {
	held := s.held
	s.held = nil
	for _, m := range held {
		switch m := m.(type) {
		case *Batch:
			if !s.hold(m.In, m) {
				s.batch(ctx, m)
			}
		case *EndOfInput:
			if !s.hold(m.In, m) {
				s.endOfInput(ctx, m)
			}
		case *Barrier:
			if !s.hold(m.In, m) {
				s.barrier(ctx, m)
			}
		}
	}
}

func (s *Sink) fail(ctx actor.Context, err error) {
	if s.failed {
		return
	}
	s.failed = true
	ctx.Send(ctx.Parent(), &Failed{Task: s.cfg.Task, Err: err})
}

func (s *Sink) opContext() (context.Context, context.CancelFunc) {
	d := s.cfg.OpTimeout
	if d <= 0 {
		d = time.Minute
	}
	return context.WithTimeout(context.Background(), d)
}

func (s *Sink) failpoint(name string) {
	if s.cfg.Failpoint != nil {
		s.cfg.Failpoint(name)
	}
}

// SpillDir is the directory under checkpoint.dir where exactly-once sinks
// keep the records of their uncommitted epochs (txsink.Config.SpillDir).
const SpillDir = "spill"

// startTx builds the transactional sink and recovers it from the restored
// state before any record flows: fence, read the progress markers, replay
// and commit what the checkpoint pre-committed but Kafka does not have.
func (s *Sink) startTx() error {
	octx, cancel := s.opContext()
	defer cancel()
	var k txsink.Backend
	var owner string
	if pc := s.cfg.Postgres; pc != nil {
		p, err := txsink.NewPostgres(octx, *pc)
		if err != nil {
			return fmt.Errorf("sink %s: %w", s.cfg.Task, err)
		}
		k, owner = p, pc.Owner
	} else {
		kb, err := txsink.NewKafka(octx, *s.cfg.Transactional)
		if err != nil {
			return fmt.Errorf("sink %s: %w", s.cfg.Task, err)
		}
		k, owner = kb, txsink.Owner(s.cfg.Transactional.Job, s.cfg.Transactional.Sink, s.cfg.Index)
	}
	txc := txsink.Config{Owner: owner,
		OpTimeout: s.cfg.OpTimeout, MaxPendingBytes: s.cfg.MaxPendingBytes, MaxStateBytes: snapshot.MaxOpStateBytes,
		Routed: len(s.cfg.DeadLetterTopics) > 0}
	if cp := s.cfg.Checkpoint; cp.Enabled() {
		txc.FenceIDs = cp.FenceIDs
		// Each epoch's records wait for their commit in a spill file
		// under checkpoint.dir, not on the heap and in the checkpoint.
		txc.SpillFS, txc.SpillDir = cp.FS, filepath.Join(cp.Root, SpillDir)
		txc.CheckCommitted, txc.Restored = !s.cfg.AllowReplayCommitted, cp.RestoredFrom
	}
	tx, err := txsink.New(k, txc)
	if err != nil {
		k.Close()
		return fmt.Errorf("sink %s: %w", s.cfg.Task, err)
	}
	var states [][]byte
	if cp := s.cfg.Checkpoint; cp.Enabled() {
		if cp.OpState != nil && string(cp.OpState) != "{}" {
			states = append(states, cp.OpState)
		}
		states = append(states, cp.OpStates...)
	}
	err = tx.Recover(octx, states...)
	s.tx = tx
	s.syncTx()
	if err != nil {
		tx.Close()
		s.syncTx()
		s.tx = nil
		return fmt.Errorf("sink %s: recover transactions: %w", s.cfg.Task, err)
	}
	if c := tx.Counts(); c.Resumed+c.Replayed > 0 {
		// Resumed: prepared transactions (PostgreSQL) that survived the
		// restart, committed; replayed: epochs written again.
		s.cfg.Log.Info("sink recovered pending epochs", "task", s.cfg.Task, "resumed", c.Resumed, "replayed", c.Replayed)
	}
	if s.cfg.Done != nil {
		s.cfg.Done.Add(1)
	}
	return nil
}

// preCommit ends epoch id: the transaction is flushed with its progress
// marker, and its records go into the sink's state in checkpoint id.
func (s *Sink) preCommit(ctx actor.Context, id uint64) {
	s.failpoint("mid-epoch")
	octx, cancel := s.opContext()
	st, err := s.tx.PreCommit(octx, id)
	cancel()
	if err != nil {
		s.fail(ctx, fmt.Errorf("sink %s: pre-commit checkpoint %d: %w", s.cfg.Task, id, err))
		return
	}
	s.preparedTo = id
	if s.barrierAt == nil {
		s.barrierAt = map[uint64]time.Time{}
	}
	if len(s.barrierAt) < 1024 {
		s.barrierAt[id] = time.Now()
	}
	s.cfg.Checkpoint.snapshot(ctx, s.cfg.Task, id, nil, st)
}

// prepareFinal pre-commits the last epoch once every input has ended and a
// checkpoint newer than the last one prepared was triggered.
func (s *Sink) prepareFinal(ctx actor.Context) {
	if s.tx == nil || s.failed || !s.allEnded || s.triggered <= s.preparedTo {
		return
	}
	s.finalEpoch = s.triggered
	s.preCommit(ctx, s.triggered)
}

// writeTxRecords writes records in the open transaction and counts them.
func (s *Sink) writeTxRecords(out []txsink.Record) error {
	octx, cancel := s.opContext()
	defer cancel()
	if err := s.tx.Write(octx, out); err != nil {
		var full *txsink.PendingFullError
		if errors.As(err, &full) {
			return fmt.Errorf("sink %s: %w: the epoch being written would hold %d bytes of records (%d with the uncommitted epochs before it), over sink.max_pending_bytes %d; "+
				"raise sink.max_pending_bytes (weir.MaxPendingBytes) or checkpoint more often (lower checkpoint.interval)",
				s.cfg.Task, txsink.ErrPendingFull, full.Open+full.Adding, full.Held+full.Adding, full.Limit)
		}
		return fmt.Errorf("sink %s: %w", s.cfg.Task, err)
	}
	n := 0
	for i := range out {
		if out[i].Topic == "" {
			n++ // dead letters are not results
		}
	}
	s.cfg.Metrics.ResultsOut.Add(int64(n))
	return nil
}

// writeTxRaw writes records in the open transaction: the key and value
// slices are handed over as they are (nothing modifies them).
func (s *Sink) writeTxRaw(recs []RawRecord) error {
	out := make([]txsink.Record, len(recs))
	for i, r := range recs {
		out[i] = txsink.Record{Key: r.Key, Value: r.Value, Topic: r.Topic, Headers: r.Headers}
	}
	return s.writeTxRecords(out)
}

func (s *Sink) start(ctx actor.Context) error {
	if s.cfg.Transactional != nil || (s.cfg.Postgres != nil && s.cfg.PostgresExactlyOnce) {
		return s.startTx()
	}
	if s.cfg.Postgres != nil {
		octx, cancel := s.opContext()
		defer cancel()
		p, err := txsink.NewPostgres(octx, *s.cfg.Postgres)
		if err != nil {
			return fmt.Errorf("sink %s: %w", s.cfg.Task, err)
		}
		s.pg = p
		if s.cfg.Done != nil {
			s.cfg.Done.Add(1)
		}
		return nil
	}
	if err := checkTopics(s.cfg.Brokers, s.cfg.Properties, s.cfg.DeadLetterTopics, s.cfg.FlushTimeout); err != nil {
		return fmt.Errorf("sink %s: %w", s.cfg.Task, err)
	}
	root, self := ctx.ActorSystem().Root, ctx.Self()
	metrics, task, derr := s.cfg.Metrics, s.cfg.Task, &s.deliveryErr
	// The producer is weir's own (rdk.Producer): its delivery reports are
	// counted in C, and only a failure reaches Go.
	conf := kafkaconf.ProducerConfig(s.cfg.Brokers, kafka.ConfigMap{
		"enable.idempotence": true,
		"acks":               "all",
		"linger.ms":          5,
	}, s.cfg.Properties, nil)
	p, err := rdk.NewProducer(conf, rdk.ProducerEvents{
		Delivered: func(n int64) { metrics.ResultsOut.Add(n) }, // dead letters are not results
		Failed: func(err error) {
			err = fmt.Errorf("sink %s: %w", task, err)
			derr.Store(&err)
			root.Send(self, &deliveryFailed{err})
		},
	})
	if err != nil {
		return fmt.Errorf("sink %s: create producer: kafka producer: %w", s.cfg.Task, err)
	}
	if s.out, err = p.Result(s.cfg.Topic); err != nil {
		p.Close()
		return fmt.Errorf("sink %s: %w", s.cfg.Task, err)
	}
	s.prod = p
	if s.cfg.Done != nil {
		s.cfg.Done.Add(1)
	}
	return nil
}

// checkTopics checks that the dead-letter topics exist (with all topics'
// metadata: a request naming one could create it), through an admin client
// with the job's properties props.
func checkTopics(brokers string, props map[string]string, topics []string, timeout time.Duration) error {
	if len(topics) == 0 {
		return nil
	}
	a, err := kafkaconf.NewAdmin(brokers, props)
	if err != nil {
		return fmt.Errorf("metadata for the dead-letter topics: %w", err)
	}
	defer a.Close()
	md, err := a.GetMetadata(nil, true, int(timeout.Milliseconds()))
	if err != nil {
		return fmt.Errorf("metadata for the dead-letter topics: %w", err)
	}
	for _, t := range topics {
		if tm, ok := md.Topics[t]; !ok || len(tm.Partitions) == 0 {
			return fmt.Errorf("dead-letter topic %q does not exist; create it or name another", t)
		}
	}
	return nil
}

// queueFullWaitMs is one step of the sink's waits on the producer: for room
// when its queue is full, and for the queue to empty at a barrier. A step
// is short because confluent-kafka-go's Flush polls the queue its own
// poller also polls: once that poller has taken the last delivery report,
// a Flush step sleeps to its end (Flush(200) at each barrier added up to
// about 100 ms to every at-least-once checkpoint).
const queueFullWaitMs = 2

// writeRaw produces records: dead letters (a Topic) one by one, the
// others many per cgo crossing.
func (s *Sink) writeRaw(recs []RawRecord) error {
	for len(recs) > 0 {
		i := 0
		for i < len(recs) && recs[i].Topic == "" && len(recs[i].Headers) == 0 {
			i++
		}
		if i == 0 {
			if err := s.produceTo(recs[0]); err != nil {
				return err
			}
			recs = recs[1:]
			continue
		}
		if err := s.writePlain(recs[:i]); err != nil {
			return err
		}
		recs = recs[i:]
	}
	return nil
}

// writePlain produces records to the sink's topic.
func (s *Sink) writePlain(recs []RawRecord) error {
	deadline := time.Now().Add(s.cfg.FlushTimeout)
	err := s.out.ProduceAll(kafka.PartitionAny, len(recs), func(i int) ([]byte, []byte) {
		return recs[i].Key, recs[i].Value
	}, func(full error) error {
		if time.Now().After(deadline) {
			return full
		}
		// A short wait: Flush returns when the whole queue is empty or
		// the time is up, and room for more records comes sooner.
		s.prod.Flush(queueFullWaitMs)
		return nil
	})
	if err != nil {
		return fmt.Errorf("sink %s: produce to %s: %w", s.cfg.Task, s.cfg.Topic, err)
	}
	return nil
}

// produceTo hands one record to the producer, to its Topic (the sink's
// when empty) with its headers, waiting (bounded by FlushTimeout) while
// its queue is full.
func (s *Sink) produceTo(r RawRecord) error {
	topic := r.Topic
	if topic == "" {
		topic = s.cfg.Topic
	}
	var hs []rdk.Header
	for _, h := range r.Headers {
		hs = append(hs, rdk.Header{Key: h.Key, Value: h.Value})
	}
	deadline := time.Now().Add(s.cfg.FlushTimeout)
	for {
		err := s.prod.ProduceOne(topic, r.Key, r.Value, hs, r.Topic == "") // dead letters are not results
		if err == nil {
			return nil
		}
		var ke kafka.Error
		if errors.As(err, &ke) && ke.Code() == kafka.ErrQueueFull && time.Now().Before(deadline) {
			s.prod.Flush(queueFullWaitMs)
			continue
		}
		return fmt.Errorf("sink %s: produce to %s: %w", s.cfg.Task, topic, err)
	}
}

// writePG writes a batch of records to PostgreSQL (at least once) in one
// transaction: nothing waits in the sink for more (an unbounded job
// without checkpoints would otherwise hold a slow trickle back).
func (s *Sink) writePG(raw []RawRecord) error {
	for _, r := range raw {
		s.pgBuf = append(s.pgBuf, txsink.Record{Key: r.Key, Value: r.Value})
	}
	return s.flushPG()
}

// flushPG writes the buffered records in one committed transaction.
func (s *Sink) flushPG() error {
	if len(s.pgBuf) == 0 {
		return nil
	}
	octx, cancel := s.opContext()
	defer cancel()
	if err := s.pg.WriteCommitted(octx, s.pgBuf); err != nil {
		return fmt.Errorf("sink %s: %w", s.cfg.Task, err)
	}
	s.cfg.Metrics.ResultsOut.Add(int64(len(s.pgBuf)))
	clear(s.pgBuf)
	s.pgBuf = s.pgBuf[:0]
	return nil
}

func (s *Sink) flush() error {
	if s.pg != nil {
		return s.flushPG()
	}
	deadline := time.Now().Add(s.cfg.FlushTimeout)
	for s.prod.Flush(queueFullWaitMs) > 0 { // short steps: see queueFullWaitMs
		if time.Now().After(deadline) {
			return fmt.Errorf("sink %s: %d results not acknowledged by Kafka within %v", s.cfg.Task, s.prod.Len(), s.cfg.FlushTimeout)
		}
	}
	if e := s.deliveryErr.Load(); e != nil {
		return *e
	}
	return nil
}

// count adds a written batch to the subtask's figures: one atomic add per
// figure per batch.
func (s *Sink) count(raw []RawRecord) {
	var n int64
	for i := range raw {
		n += int64(len(raw[i].Key) + len(raw[i].Value))
	}
	st := s.cfg.Stats
	st.RecordsIn.Add(int64(len(raw)))
	st.BatchesIn.Add(1)
	st.BytesIn.Add(n)
	st.RecordsOut.Add(int64(len(raw)))
	st.BytesOut.Add(n)
}

// syncTx adds the transactions of tx since the last call to the
// subtask's figures.
func (s *Sink) syncTx() {
	if s.tx == nil {
		return
	}
	c := s.tx.Counts()
	st := s.cfg.Stats
	st.TxCommitted.Add(c.Committed - s.txSeen.Committed)
	st.TxAborted.Add(c.Aborted - s.txSeen.Aborted)
	st.TxReplayed.Add(c.Replayed - s.txSeen.Replayed)
	s.txSeen = c
}
