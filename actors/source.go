package actors

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirstream/weir/operator"
)

// StartPosition says where a source starts when nothing is restored.
type StartPosition struct {
	Mode            string // group, earliest, latest, timestamp, offsets
	AutoOffsetReset string // earliest, latest, none
	TimestampMillis int64
	Offsets         map[int32]int64
}

// StopPosition says where a bounded source stops; Mode "" is unbounded.
type StopPosition struct {
	Mode            string // "", latest, timestamp, offsets
	TimestampMillis int64
	// Offsets to stop before, per partition; partitions not named stop at
	// the end they had at start (latest).
	Offsets map[int32]int64
}

// SourceConfig configures one Kafka source subtask.
type SourceConfig struct {
	Task        string
	Index       int
	Parallelism int
	Brokers     string
	Topic       string
	Group       string
	Start       StartPosition
	// Stop, when its Mode is set, makes the source bounded.
	Stop StopPosition
	// Isolation is read_committed (default) or read_uncommitted.
	Isolation string
	// CommitOnCheckpoint commits the offsets of each completed checkpoint
	// to the group (checkpoints on). Without checkpoints the client's
	// enable.auto.commit decides.
	CommitOnCheckpoint bool
	// DiscoveryInterval is how often new partitions are looked for; <= 0
	// turns discovery off.
	DiscoveryInterval time.Duration
	// Properties are librdkafka consumer properties applied last.
	Properties map[string]string
	// NewDecoder makes each subtask's Decoder: the poller decodes records
	// with it into typed batches. Without Chain they go to the one target,
	// Targets[0] (input 0 there). Watermarks are emitted only when
	// EventTime is set.
	NewDecoder func() Decoder
	// Chain, with NewDecoder, runs the stateless operators behind the
	// source inside the source's actor (Flink's source chaining): every
	// decoded batch goes into it, and what it emits leaves through the
	// source's Targets, on which the source's indexes are InputIndexes.
	// send hands a full typed batch to target t; flush sends what the
	// chain holds. The chain must keep no state.
	Chain        func(send func(t int, data any, n int)) (op operator.Operator, flush func(), err error)
	InputIndexes []int
	// BadRecordHint says how to fix a record NewDecoder cannot decode (in
	// the error that stops the job).
	BadRecordHint string
	// DeadLetterTopic, when set, makes a record the source cannot take (it
	// does not decode, or its event time is beyond MaxFuture) a dead
	// letter instead of an error that stops the job: a RawRecord with its
	// key and value, Topic DeadLetterTopic and the Header* headers, sent to
	// Targets[DeadLetterTarget] (a sink) in the epoch it was read in.
	DeadLetterTopic  string
	DeadLetterTarget int
	// EventTime makes a decoding source track event time per partition and
	// emit watermarks (bounded by OutOfOrderness, IdleTimeout).
	EventTime bool
	// MaxFuture, with EventTime, bounds how far a record's event time may
	// be ahead of the processing clock (Now, read at each poll): a record
	// beyond it is a bad record, refused before its time reaches the
	// watermark or any state (one record from the year 2500 would make
	// every later one late, also after a restore). <= 0: no bound.
	MaxFuture time.Duration
	// MaxFutureSetting names the setting that raises MaxFuture, for the
	// error (e.g. window.max_future).
	MaxFutureSetting string
	// HoldUntilStarted makes the source read nothing until it receives
	// StartOutput (sent by the supervisor once every sink is ready).
	HoldUntilStarted bool
	// OutOfOrderness bounds how late an event may be on its partition.
	OutOfOrderness time.Duration
	// IdleTimeout: a partition silent for this long stops holding back the
	// watermark; 0 disables.
	IdleTimeout time.Duration
	// PollRecords is the most records handed over in one poll batch.
	PollRecords int
	// PollTimeout bounds one wait for records.
	PollTimeout time.Duration
	// MetadataTimeout bounds metadata and offset lookups.
	MetadataTimeout time.Duration
	Targets         []*actor.PID
	Credits         int
	Metrics         *Metrics
	// Stats, when set, receives the subtask's figures (see TaskStats),
	// with its partitions' positions and ends.
	Stats *TaskStats
	// Checkpoint is nil when checkpoints are off.
	Checkpoint *Checkpointing
	// Done, when set, is marked done when the consumer is closed.
	Done *sync.WaitGroup
	Log  *slog.Logger
	Now  func() time.Time
}

func (c *SourceConfig) defaults() {
	if c.PollRecords <= 0 {
		c.PollRecords = 4096
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = 100 * time.Millisecond
	}
	if c.MetadataTimeout <= 0 {
		c.MetadataTimeout = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Stats = c.Stats.orNew()
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = &Metrics{}
	}
	if c.Isolation == "" {
		c.Isolation = "read_committed"
	}
}

// Decoder turns Kafka records into the typed records of a dataflow
// source; it runs on the poller's goroutine.
type Decoder interface {
	// Decode decodes one record and holds it until Keep; a record not
	// kept is forgotten by the next Decode (the source refused it). It
	// returns the record's event time (operator.NoTimestamp for none);
	// kafkaTS is the record's Kafka timestamp in milliseconds
	// (operator.NoTimestamp when the record has none).
	Decode(key, value []byte, kafkaTS int64, partition int32, offset int64) (ts int64, err error)
	// Keep appends the record of the last successful Decode to the batch
	// being built.
	Keep()
	// Take returns the batch built since the last Take (a []operator.Rec[T])
	// and its length, and starts a new one.
	Take() (data any, n int)
}

// InputCopier is implemented by a Decoder that keeps no reference to the
// key and value bytes it is given (it copies what it keeps) when
// CopiesInput is true. The source then reads every poll into one reused
// buffer instead of a new one per poll.
type InputCopier interface {
	CopiesInput() bool
}

// polled is what the poller hands the source actor: records of one poll
// round, per-partition progress, and whether the poller is done.
type polled struct {
	data  any // decoded records (NewDecoder)
	n     int
	dead  []RawRecord // dead letters (DeadLetterTopic)
	bytes int64       // keys and values read
	parts []partProgress
	added []partProgress // partitions discovered and assigned, with their start
	done  bool
	err   error
}

type partProgress struct {
	partition int32
	next      int64 // next offset to read
	maxTS     int64
}

type partState struct {
	partition  int32
	next       int64
	maxTS      int64 // math.MinInt64 until a record was seen
	lastActive time.Time
}

// Source is the Kafka source actor of one subtask.
type Source struct {
	cfg    SourceConfig
	out    *Output
	parts  map[int32]*partState
	poller *poller
	tokens int // poll batches the poller may still hand over
	wm     int64
	idle   bool
	ended  bool
	held   []*polled // batches received while the output was blocked
	// released: the source may hand records on (see HoldUntilStarted).
	released bool
	// chain runs the operators chained behind the source (Chain).
	chain      operator.Operator
	chainFlush func()
	ctx        actor.Context
	// pending are the offsets of checkpoints taken and not yet complete,
	// committed to the group when one completes (at most maxPendingCommits).
	pending map[uint64]map[int32]int64
}

// maxPendingCommits bounds the checkpoints whose offsets wait for their
// completion; the oldest is dropped (a newer completion subsumes it).
const maxPendingCommits = 32

// NewSource returns the producer of a source actor.
func NewSource(cfg SourceConfig) actor.Producer {
	cfg.defaults()
	return func() actor.Actor {
		return &Source{cfg: cfg, wm: math.MinInt64, parts: map[int32]*partState{}, pending: map[uint64]map[int32]int64{}}
	}
}

const pollerTokens = 2

// Receive implements actor.Actor.
func (s *Source) Receive(ctx actor.Context) {
	s.ctx = ctx
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if s.cfg.NewDecoder == nil {
			s.fail(ctx, fmt.Errorf("source %s: no decoder", s.cfg.Task))
			return
		}
		// Without a chain the source is input 0 of its one target.
		s.out = NewOutput(s.cfg.Targets, 0, ctx.Self(), s.cfg.Credits)
		if s.cfg.InputIndexes != nil {
			s.out.SetInputIndexes(s.cfg.InputIndexes)
		}
		s.out.SetStats(s.cfg.Stats)
		if s.cfg.Chain != nil {
			op, flush, err := s.cfg.Chain(func(t int, data any, n int) { s.out.EmitData(s.ctx, t, data, n) })
			if err == nil {
				err = op.Open(nil, nil)
			}
			if err != nil {
				s.fail(ctx, fmt.Errorf("source %s: %w", s.cfg.Task, err))
				return
			}
			s.chain, s.chainFlush = op, flush
		}
		s.released = !s.cfg.HoldUntilStarted
		if err := s.start(ctx); err != nil {
			s.fail(ctx, err)
			return
		}
		ctx.Send(ctx.Parent(), &SourceReady{Task: s.cfg.Task})
	case *StartOutput:
		s.released = true
		s.drainHeld(ctx)
	case *polled:
		s.held = append(s.held, m)
		s.drainHeld(ctx)
	case *Credit:
		s.out.OnCredit(ctx, m)
		s.drainHeld(ctx)
	case *Drain:
		if s.poller != nil {
			s.poller.drain()
		}
	case *TriggerCheckpoint:
		s.checkpoint(ctx, m)
	case *CheckpointComplete:
		s.commitCheckpoint(m.ID)
	case *CheckpointAbort:
		delete(s.pending, m.ID)
	case *actor.Stopping:
		if s.poller != nil {
			s.poller.stop()
		}
		if err := s.cfg.Checkpoint.close(); err != nil {
			s.cfg.Log.Warn("close state store", "task", s.cfg.Task, "err", err)
		}
	}
}

// sourceState is a source subtask's operator state in a checkpoint.
type sourceState struct {
	Topic      string                    `json:"topic"`
	Partitions map[int32]partitionRecord `json:"partitions"`
	Watermark  int64                     `json:"watermark"`
}

type partitionRecord struct {
	Next  int64 `json:"next"`  // next offset to read
	MaxTS int64 `json:"maxTs"` // newest event time seen
}

// checkpoint records the position of every partition (exactly the records
// emitted so far), snapshots it, and emits barrier N behind those records.
func (s *Source) checkpoint(ctx actor.Context, m *TriggerCheckpoint) {
	if !s.cfg.Checkpoint.Enabled() {
		return
	}
	st := sourceState{Topic: s.cfg.Topic, Partitions: map[int32]partitionRecord{}, Watermark: s.wm}
	for p, ps := range s.parts {
		st.Partitions[p] = partitionRecord{Next: ps.next, MaxTS: ps.maxTS}
	}
	b, err := json.Marshal(st)
	if err != nil {
		s.fail(ctx, fmt.Errorf("source %s: encode state: %w", s.cfg.Task, err))
		return
	}
	s.cfg.Checkpoint.snapshot(ctx, s.cfg.Task, m.ID, nil, b)
	if s.cfg.CommitOnCheckpoint {
		offsets := make(map[int32]int64, len(s.parts))
		for p, ps := range s.parts {
			if ps.next >= 0 {
				offsets[p] = ps.next
			}
		}
		s.pending[m.ID] = offsets
		if len(s.pending) > maxPendingCommits {
			oldest := uint64(math.MaxUint64)
			for id := range s.pending {
				oldest = min(oldest, id)
			}
			delete(s.pending, oldest)
		}
	}
	if !s.ended {
		id := m.ID
		s.out.Broadcast(ctx, func(in int) any { return &Barrier{In: in, ID: id} })
	}
}

// commitCheckpoint hands the offsets of the newest checkpoint <= id to the
// poller, which stores them for the client to commit to the group; the
// notification is subsuming, so older checkpoints are forgotten.
func (s *Source) commitCheckpoint(id uint64) {
	var newest uint64
	var offsets map[int32]int64
	for cid, o := range s.pending {
		if cid > id {
			continue
		}
		if offsets == nil || cid > newest {
			newest, offsets = cid, o
		}
		delete(s.pending, cid)
	}
	if offsets == nil || s.poller == nil || len(offsets) == 0 {
		return
	}
	s.poller.commit(newest, offsets)
}

// restoredState decodes the operator state restored from a checkpoint.
func (s *Source) restoredState() (*sourceState, error) {
	cp := s.cfg.Checkpoint
	if !cp.Enabled() || cp.OpState == nil {
		return nil, nil
	}
	var st sourceState
	if err := json.Unmarshal(cp.OpState, &st); err != nil {
		return nil, fmt.Errorf("source %s: state of checkpoint %d is unreadable: %w", s.cfg.Task, cp.RestoredFrom, err)
	}
	if st.Topic != s.cfg.Topic {
		return nil, fmt.Errorf("source %s: checkpoint %d read topic %q, the job reads %q; use a fresh checkpoint.dir for another topic",
			s.cfg.Task, cp.RestoredFrom, st.Topic, s.cfg.Topic)
	}
	return &st, nil
}

func (s *Source) fail(ctx actor.Context, err error) {
	ctx.Send(ctx.Parent(), &Failed{Task: s.cfg.Task, Err: err})
	if s.poller != nil {
		s.poller.stop()
		s.poller = nil
	}
}

func (s *Source) drainHeld(ctx actor.Context) {
	if !s.released {
		return // no tokens either: the poller reads nothing yet
	}
	for len(s.held) > 0 && !s.out.Blocked() {
		p := s.held[0]
		s.held[0] = nil
		s.held = s.held[1:]
		s.handle(ctx, p)
		if s.poller == nil {
			return
		}
	}
	// Hand tokens back while the output can take more.
	for !s.out.Blocked() && len(s.held) == 0 && s.tokens < pollerTokens && !s.ended && s.poller != nil {
		s.tokens++
		s.poller.grant()
	}
}

func (s *Source) handle(ctx actor.Context, p *polled) {
	s.tokens--
	if p.err != nil {
		s.fail(ctx, p.err)
		return
	}
	now := s.cfg.Now()
	for _, a := range p.added {
		if s.parts[a.partition] == nil {
			s.parts[a.partition] = &partState{partition: a.partition, next: a.next, maxTS: math.MinInt64, lastActive: now}
		}
	}
	switch {
	case s.chain != nil:
		if p.n > 0 {
			if err := s.chain.Process(0, p.data); err != nil {
				s.fail(ctx, fmt.Errorf("source %s: %w", s.cfg.Task, err))
				return
			}
			if s.chainFlush != nil {
				s.chainFlush()
			}
		}
		s.cfg.Metrics.RecordsIn.Add(int64(p.n))
	default:
		s.out.EmitData(ctx, 0, p.data, p.n)
		s.cfg.Metrics.RecordsIn.Add(int64(p.n))
	}
	if len(p.dead) > 0 {
		s.out.EmitData(ctx, s.cfg.DeadLetterTarget, p.dead, len(p.dead))
	}
	if p.n > 0 {
		st := s.cfg.Stats
		st.RecordsIn.Add(int64(p.n))
		st.BytesIn.Add(p.bytes)
		st.BatchesIn.Add(1)
	}
	for _, pp := range p.parts {
		st := s.parts[pp.partition]
		if st == nil {
			continue
		}
		st.next = pp.next
		if pp.maxTS > st.maxTS {
			st.maxTS = pp.maxTS
		}
		st.lastActive = now
	}
	if p.done {
		// The poller stays, its partitions paused, so that the offsets of
		// checkpoints completing from now on are still committed; it
		// stops with the actor.
		s.ended = true
		s.out.Broadcast(ctx, func(in int) any { return &EndOfInput{In: in} })
		ctx.Send(ctx.Parent(), &SourceFinished{Task: s.cfg.Task})
		return
	}
	if s.cfg.EventTime {
		s.advanceWatermark(ctx, now)
	}
}

// advanceWatermark emits the subtask's watermark: the smallest per-partition
// watermark (newest event time minus the out-of-orderness, minus 1 ms) over
// partitions that are not idle.
func (s *Source) advanceWatermark(ctx actor.Context, now time.Time) {
	wm := int64(math.MaxInt64)
	active := 0
	for _, st := range s.parts {
		if s.cfg.IdleTimeout > 0 && now.Sub(st.lastActive) >= s.cfg.IdleTimeout {
			continue
		}
		active++
		pw := partitionWatermark(st.maxTS, s.cfg.OutOfOrderness)
		if pw < wm {
			wm = pw
		}
	}
	if active == 0 {
		if !s.idle {
			s.idle = true
			s.out.Broadcast(ctx, func(in int) any { return &Idle{In: in} })
		}
		return
	}
	if wm > s.wm || (s.idle && wm != math.MinInt64) {
		s.idle = false
		if wm > s.wm {
			s.wm = wm
			s.cfg.Stats.SetWatermark(wm)
		}
		w := s.wm
		if s.chain != nil {
			// The chained operators see the watermark too (a Transform's
			// Context.CurrentWatermark); they hold no timers.
			if err := s.chain.Watermark(w); err != nil {
				s.fail(ctx, fmt.Errorf("source %s: %w", s.cfg.Task, err))
				return
			}
		}
		s.out.Broadcast(ctx, func(in int) any { return &Watermark{In: in, TS: w} })
	}
}

// partitionWatermark is the watermark of a partition whose newest event
// time is maxTS (math.MinInt64: none yet): maxTS minus the
// out-of-orderness, minus 1 ms, saturating at the start of time.
func partitionWatermark(maxTS int64, outOfOrderness time.Duration) int64 {
	if maxTS == math.MinInt64 {
		return math.MinInt64
	}
	return operator.SubSat(operator.SubSat(maxTS, outOfOrderness.Milliseconds()), 1)
}
