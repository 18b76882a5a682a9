package actors

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// StartPosition says where a source starts when nothing is restored.
type StartPosition struct {
	Mode            string // group, earliest, latest, timestamp, offsets
	AutoOffsetReset string // earliest, latest, none
	TimestampMillis int64
	Offsets         map[int32]int64
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
	// Properties are librdkafka consumer properties applied last.
	Properties map[string]string
	Extract    Extractor
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
	BatchRecords    int
	Metrics         *Metrics
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
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = &Metrics{}
	}
}

// polled is what the poller hands the source actor: records of one poll
// round, per-partition progress, and whether the poller is done.
type polled struct {
	records []Record
	parts   []partProgress
	done    bool
	err     error
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
}

// NewSource returns the producer of a source actor.
func NewSource(cfg SourceConfig) actor.Producer {
	cfg.defaults()
	return func() actor.Actor {
		return &Source{cfg: cfg, wm: math.MinInt64, parts: map[int32]*partState{}}
	}
}

const pollerTokens = 2

// Receive implements actor.Actor.
func (s *Source) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.out = NewOutput(s.cfg.Targets, s.cfg.Index, ctx.Self(), s.cfg.Credits, s.cfg.BatchRecords)
		if err := s.start(ctx); err != nil {
			s.fail(ctx, err)
		}
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
	if !s.ended {
		id := m.ID
		s.out.Broadcast(ctx, func(in int) any { return &Barrier{In: in, ID: id} })
	}
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
	n := s.out.Targets()
	for _, r := range p.records {
		s.out.Emit(ctx, SubtaskForKeyGroup(KeyGroup(r.Key), n), r)
	}
	s.cfg.Metrics.RecordsIn.Add(int64(len(p.records)))
	now := s.cfg.Now()
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
	s.out.Flush(ctx)
	if p.done {
		s.ended = true
		s.out.Broadcast(ctx, func(in int) any { return &EndOfInput{In: in} })
		s.poller.stop()
		s.poller = nil
		return
	}
	s.advanceWatermark(ctx, now)
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
		pw := int64(math.MinInt64)
		if st.maxTS != math.MinInt64 {
			pw = st.maxTS - s.cfg.OutOfOrderness.Milliseconds() - 1
		}
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
		}
		w := s.wm
		s.out.Broadcast(ctx, func(in int) any { return &Watermark{In: in, TS: w} })
	}
}

func (s *Source) start(ctx actor.Context) error {
	c := s.cfg
	conf := kafka.ConfigMap{
		"bootstrap.servers":    c.Brokers,
		"group.id":             c.Group,
		"enable.partition.eof": true,
		"auto.offset.reset":    librdkafkaReset(c.Start.AutoOffsetReset),
		"log_level":            3,
	}
	for k, v := range c.Properties {
		conf[k] = v
	}
	cons, err := kafka.NewConsumer(&conf)
	if err != nil {
		return fmt.Errorf("source %s: create consumer: %w", c.Task, err)
	}
	parts, err := topicPartitions(cons, c.Topic, c.MetadataTimeout)
	if err != nil {
		cons.Close()
		return fmt.Errorf("source %s: %w", c.Task, err)
	}
	var mine []int32
	for _, p := range parts {
		if int(p)%c.Parallelism == c.Index {
			mine = append(mine, p)
		}
	}
	restored, err := s.restoredState()
	if err != nil {
		cons.Close()
		return err
	}
	// Partitions with a position in the checkpoint resume there; a
	// partition the checkpoint does not know (added since) starts at the
	// earliest offset, as Flink does for newly discovered partitions; one
	// that had no position yet when the checkpoint was taken starts at the
	// start position.
	var assign, fromStart []kafka.TopicPartition
	var unpositioned []int32
	topic := c.Topic
	for _, p := range mine {
		r, known := partitionRecord{}, false
		if restored != nil {
			r, known = restored.Partitions[p]
		}
		switch {
		case restored == nil || (known && r.Next < 0):
			unpositioned = append(unpositioned, p)
		case known:
			assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.Offset(r.Next)})
		default:
			assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.OffsetBeginning})
		}
	}
	if len(unpositioned) > 0 {
		fromStart, err = startOffsets(cons, c, unpositioned)
		if err != nil {
			cons.Close()
			return fmt.Errorf("source %s: %w", c.Task, err)
		}
		assign = append(assign, fromStart...)
	}
	if restored != nil {
		c.Log.Info("source restored from checkpoint; the start position applies only to partitions without a recorded position",
			"task", c.Task, "checkpoint", c.Checkpoint.RestoredFrom, "positions", restored.Partitions)
	} else {
		c.Log.Info("source starts at its start position (no checkpoint restored)", "task", c.Task, "start", c.Start.Mode)
	}
	if len(assign) > 0 {
		if err := cons.Assign(assign); err != nil {
			cons.Close()
			return fmt.Errorf("source %s: assign %v: %w", c.Task, mine, err)
		}
	}
	now := c.Now()
	for _, p := range mine {
		ps := &partState{partition: p, next: -1, maxTS: math.MinInt64, lastActive: now}
		if restored != nil {
			if r, ok := restored.Partitions[p]; ok {
				ps.next, ps.maxTS = r.Next, r.MaxTS
			}
		}
		s.parts[p] = ps
	}
	if restored != nil && restored.Watermark > s.wm {
		s.wm = restored.Watermark
	}
	c.Log.Info("source started", "task", c.Task, "topic", c.Topic, "partitions", mine, "start", c.Start.Mode)
	s.poller = newPoller(ctx.ActorSystem().Root, ctx.Self(), cons, c, mine)
	if len(mine) == 0 {
		s.idle = true
		s.out.Broadcast(ctx, func(in int) any { return &Idle{In: in} })
	}
	s.tokens = pollerTokens
	for i := 0; i < pollerTokens; i++ {
		s.poller.grant()
	}
	if c.Done != nil {
		c.Done.Add(1)
	}
	go s.poller.run()
	return nil
}

func librdkafkaReset(r string) string {
	if r == "none" {
		return "error"
	}
	if r == "" {
		return "earliest"
	}
	return r
}

func topicPartitions(cons *kafka.Consumer, topic string, timeout time.Duration) ([]int32, error) {
	md, err := cons.GetMetadata(&topic, false, int(timeout.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("metadata of topic %q: %w", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() == kafka.ErrUnknownTopicOrPart || tm.Error.Code() == kafka.ErrUnknownTopic {
		return nil, fmt.Errorf("topic %q does not exist; create it or fix source.topic", topic)
	}
	if tm.Error.Code() != kafka.ErrNoError {
		return nil, fmt.Errorf("metadata of topic %q: %w", topic, tm.Error)
	}
	ps := make([]int32, 0, len(tm.Partitions))
	for _, p := range tm.Partitions {
		ps = append(ps, p.ID)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps, nil
}

func startOffsets(cons *kafka.Consumer, c SourceConfig, parts []int32) ([]kafka.TopicPartition, error) {
	topic := c.Topic
	tps := make([]kafka.TopicPartition, 0, len(parts))
	for _, p := range parts {
		tp := kafka.TopicPartition{Topic: &topic, Partition: p}
		switch c.Start.Mode {
		case "earliest":
			tp.Offset = kafka.OffsetBeginning
		case "latest":
			tp.Offset = kafka.OffsetEnd
		case "timestamp":
			tp.Offset = kafka.Offset(c.Start.TimestampMillis)
		case "offsets":
			if o, ok := c.Start.Offsets[p]; ok {
				tp.Offset = kafka.Offset(o)
			} else {
				tp.Offset = kafka.OffsetStored
			}
		default: // group
			tp.Offset = kafka.OffsetStored
		}
		tps = append(tps, tp)
	}
	if c.Start.Mode == "timestamp" && len(tps) > 0 {
		res, err := cons.OffsetsForTimes(tps, int(c.MetadataTimeout.Milliseconds()))
		if err != nil {
			return nil, fmt.Errorf("offsets for timestamp %d: %w", c.Start.TimestampMillis, err)
		}
		for i := range res {
			if res[i].Error != nil {
				return nil, fmt.Errorf("offset for timestamp %d on partition %d: %w", c.Start.TimestampMillis, res[i].Partition, res[i].Error)
			}
			if res[i].Offset < 0 {
				res[i].Offset = kafka.OffsetEnd
			}
		}
		tps = res
	}
	return tps, nil
}

// poller owns the consumer: it polls in its own goroutine (librdkafka's
// poll blocks), extracts records, and hands one batch at a time to the
// source actor, at most as many as it holds tokens for.
type poller struct {
	root    *actor.RootContext
	self    *actor.PID
	cons    *kafka.Consumer
	cfg     SourceConfig
	parts   []int32
	tokens  chan struct{}
	quit    chan struct{}
	drainCh chan struct{}
	exited  chan struct{}
	once    sync.Once
	dOnce   sync.Once
}

func newPoller(root *actor.RootContext, self *actor.PID, cons *kafka.Consumer, cfg SourceConfig, parts []int32) *poller {
	return &poller{
		root: root, self: self, cons: cons, cfg: cfg, parts: parts,
		tokens:  make(chan struct{}, pollerTokens),
		quit:    make(chan struct{}),
		drainCh: make(chan struct{}),
		exited:  make(chan struct{}),
	}
}

func (p *poller) grant() {
	select {
	case p.tokens <- struct{}{}:
	default:
	}
}

func (p *poller) drain() { p.dOnce.Do(func() { close(p.drainCh) }) }

// stop ends the poller and closes the consumer; it waits at most for one
// poll timeout plus the consumer's close.
func (p *poller) stop() {
	p.once.Do(func() { close(p.quit) })
}

func (p *poller) run() {
	defer func() {
		p.cons.Close()
		close(p.exited)
		if p.cfg.Done != nil {
			p.cfg.Done.Done()
		}
	}()
	var (
		draining bool
		targets  map[int32]int64 // partition -> end offset to stop at
		next     = map[int32]int64{}
	)
	done := func() bool {
		for part, end := range targets {
			if n, ok := next[part]; !ok || n < end {
				return false
			}
		}
		return true
	}
	for {
		select {
		case <-p.quit:
			return
		case <-p.tokens:
		}
		if !draining {
			select {
			case <-p.drainCh:
				draining = true
				t, err := p.endOffsets()
				if err != nil {
					p.root.Send(p.self, &polled{err: err})
					return
				}
				targets = t
				p.cfg.Log.Info("source draining", "task", p.cfg.Task, "end_offsets", t)
			default:
			}
		}
		if draining && done() {
			p.root.Send(p.self, &polled{done: true})
			return
		}
		b, err := p.pollBatch(next, targets)
		if err != nil {
			p.root.Send(p.self, &polled{err: err})
			return
		}
		if draining && done() {
			b.done = true
		}
		p.root.Send(p.self, b)
		if b.done {
			return
		}
	}
}

func (p *poller) endOffsets() (map[int32]int64, error) {
	t := map[int32]int64{}
	for _, part := range p.parts {
		lo, hi, err := p.cons.QueryWatermarkOffsets(p.cfg.Topic, part, int(p.cfg.MetadataTimeout.Milliseconds()))
		if err != nil {
			return nil, fmt.Errorf("source %s: end offset of partition %d: %w", p.cfg.Task, part, err)
		}
		if hi > lo {
			t[part] = hi
		}
	}
	return t, nil
}

func (p *poller) pollBatch(next map[int32]int64, targets map[int32]int64) (*polled, error) {
	b := &polled{records: make([]Record, 0, 256)}
	prog := map[int32]*partProgress{}
	progress := func(part int32) *partProgress {
		pp := prog[part]
		if pp == nil {
			pp = &partProgress{partition: part, maxTS: math.MinInt64}
			prog[part] = pp
		}
		return pp
	}
	timeout := int(p.cfg.PollTimeout.Milliseconds())
	for len(b.records) < p.cfg.PollRecords {
		ev := p.cons.Poll(timeout)
		if ev == nil {
			break
		}
		timeout = 0
		switch e := ev.(type) {
		case *kafka.Message:
			part := e.TopicPartition.Partition
			off := int64(e.TopicPartition.Offset)
			if end, ok := targets[part]; ok && off >= end {
				next[part] = off + 1
				continue // past the drain point
			}
			key, ts, v, err := p.cfg.Extract(e.Value)
			if err != nil {
				p.cfg.Metrics.BadRecords.Add(1)
				return nil, fmt.Errorf("source %s: bad record at %s/%d offset %d: %w (bad_records: fail stops the job; fix the producer or the field names)",
					p.cfg.Task, p.cfg.Topic, part, off, err)
			}
			b.records = append(b.records, Record{Key: string(key), TS: ts, Val: v})
			pp := progress(part)
			pp.next = off + 1
			next[part] = off + 1
			if ts > pp.maxTS {
				pp.maxTS = ts
			}
		case kafka.PartitionEOF:
			part := e.Partition
			if int64(e.Offset) > next[part] {
				next[part] = int64(e.Offset)
			}
			pp := progress(part)
			if next[part] > pp.next {
				pp.next = next[part]
			}
		case kafka.Error:
			if e.Code() == kafka.ErrAutoOffsetReset {
				return nil, fmt.Errorf("source %s: %v: a partition has no committed offset and source.start.auto_offset_reset is none; set it to earliest or latest, or commit offsets for group %q",
					p.cfg.Task, e, p.cfg.Group)
			}
			if e.IsFatal() {
				return nil, fmt.Errorf("source %s: fatal consumer error: %w", p.cfg.Task, e)
			}
			// Transient errors (broker down, ...) are retried by librdkafka.
			p.cfg.Log.Warn("consumer error", "task", p.cfg.Task, "err", e)
		}
	}
	for _, pp := range prog {
		b.parts = append(b.parts, *pp)
	}
	return b, nil
}
