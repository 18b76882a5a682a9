package actors

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/weirstream/weir/internal/rdk"
	"github.com/weirstream/weir/operator"
	"github.com/weirstream/weir/txsink"
)

// poller owns the consumer: it polls in its own goroutine (librdkafka's
// poll blocks), extracts records, and hands one batch at a time to the
// source actor, at most as many as it holds tokens for. Everything that
// touches the consumer's assignment or stored offsets happens here.
type poller struct {
	root    *actor.RootContext
	self    *actor.PID
	cons    *kafka.Consumer
	offs    offsetLister
	cfg     SourceConfig
	parts   []int32
	next    map[int32]int64 // partition -> next offset to read
	stop0   map[int32]int64 // bounded: partition -> offset to stop before
	tokens  chan struct{}
	quit    chan struct{}
	drainCh chan struct{}
	exited  chan struct{}
	once    sync.Once
	dOnce   sync.Once

	// The offsets of the newest completed checkpoint, to be stored for
	// the client's commit; newest wins.
	commitMu  sync.Mutex
	commitID  uint64
	commitOff map[int32]int64
	commitSig chan struct{}

	lastDiscovery time.Time
	// dec decodes records of a dataflow source (SourceConfig.NewDecoder).
	dec Decoder
	// rd reads the consumer in batches; entries is its reused batch.
	rd      reader
	entries []rdk.Entry
}

func newPoller(root *actor.RootContext, self *actor.PID, cons *kafka.Consumer, rd reader, offs offsetLister, cfg SourceConfig,
	parts []int32, positions, stop map[int32]int64) *poller {
	next := make(map[int32]int64, len(positions))
	for p, o := range positions {
		next[p] = o
	}
	var dec Decoder
	if cfg.NewDecoder != nil {
		dec = cfg.NewDecoder()
	}
	if c, ok := dec.(InputCopier); ok && c.CopiesInput() {
		if r, ok := rd.(*rdk.Consumer); ok {
			r.ReuseBuffer()
		}
	}
	return &poller{
		dec:  dec,
		rd:   rd,
		root: root, self: self, cons: cons, offs: offs, cfg: cfg, parts: parts, next: next, stop0: stop,
		tokens:        make(chan struct{}, pollerTokens),
		quit:          make(chan struct{}),
		drainCh:       make(chan struct{}),
		exited:        make(chan struct{}),
		commitSig:     make(chan struct{}, 1),
		lastDiscovery: cfg.Now(),
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

// commit asks the poller to store the offsets of checkpoint id for the
// client's commit to the group (called by the source actor).
func (p *poller) commit(id uint64, offsets map[int32]int64) {
	p.commitMu.Lock()
	if id >= p.commitID {
		p.commitID, p.commitOff = id, offsets
	}
	p.commitMu.Unlock()
	select {
	case p.commitSig <- struct{}{}:
	default:
	}
}

// storeCommit stores the offsets handed over by commit, if any.
func (p *poller) storeCommit() {
	p.commitMu.Lock()
	id, offs := p.commitID, p.commitOff
	p.commitOff = nil
	p.commitMu.Unlock()
	if offs == nil {
		return
	}
	p.store(offs, fmt.Sprintf("checkpoint %d", id))
}

// store stores offsets for the client's next commit; a failure is counted
// and logged, never fatal.
func (p *poller) store(offs map[int32]int64, what string) {
	topic := p.cfg.Topic
	tps := make([]kafka.TopicPartition, 0, len(offs))
	for part, o := range offs {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: part, Offset: kafka.Offset(o)})
	}
	if len(tps) == 0 {
		return
	}
	stored, err := p.cons.StoreOffsets(tps)
	if err == nil {
		for _, tp := range stored {
			if tp.Error != nil {
				err = fmt.Errorf("partition %d: %w", tp.Partition, tp.Error)
				break
			}
		}
	}
	if err != nil {
		p.cfg.Metrics.OffsetCommitFailures.Add(1)
		p.cfg.Log.Warn("source: offsets not stored for commit; the job goes on", "task", p.cfg.Task, "of", what, "err", err)
	}
}

func (p *poller) run() {
	defer func() {
		p.offs.admin.Close()
		p.rd.Close()
		p.cons.Close() // commits what is stored, with auto-commit on
		close(p.exited)
		if p.cfg.Done != nil {
			p.cfg.Done.Done()
		}
	}()
	var (
		draining bool
		targets  map[int32]int64 // partition -> end offset to stop at
	)
	if p.stop0 != nil {
		draining, targets = true, p.stop0
	}
	done := func() bool {
		for part, end := range targets {
			if n, ok := p.next[part]; !ok || n < end {
				return false
			}
		}
		return true
	}
	p.updateLag()
	for {
		select {
		case <-p.quit:
			return
		case <-p.commitSig:
			p.storeCommit()
			continue
		case <-p.tokens:
		}
		if !draining {
			select {
			case <-p.drainCh:
				draining = true
				t, err := p.offs.list(p.parts, kafka.LatestOffsetSpec)
				if err != nil {
					p.root.Send(p.self, &polled{err: fmt.Errorf("source %s: end offsets: %w", p.cfg.Task, err)})
					return
				}
				targets = t
				p.cfg.Log.Info("source draining", "task", p.cfg.Task, "end_offsets", t)
			default:
			}
		}
		if draining && done() {
			p.root.Send(p.self, &polled{done: true})
			p.park()
			return
		}
		var added []partProgress
		if !draining {
			var err error
			if added, err = p.discover(); err != nil {
				p.root.Send(p.self, &polled{err: err})
				return
			}
		}
		b, err := p.pollBatch(targets)
		if err != nil {
			p.root.Send(p.self, &polled{err: err})
			return
		}
		b.added = added
		if draining && done() {
			b.done = true
		}
		p.updateLag()
		if !p.cfg.Checkpoint.Enabled() && len(b.parts) > 0 {
			// Auto-commit mode: what is handed over may be committed.
			offs := make(map[int32]int64, len(b.parts))
			for _, pp := range b.parts {
				offs[pp.partition] = pp.next
			}
			p.store(offs, "auto-commit")
		}
		p.root.Send(p.self, b)
		if b.done {
			p.park()
			return
		}
	}
}

// park keeps the consumer after the end of the input, its partitions
// paused, so that offsets of checkpoints completing later are still stored
// and committed, until the source stops.
func (p *poller) park() {
	if len(p.parts) > 0 {
		topic := p.cfg.Topic
		tps := make([]kafka.TopicPartition, len(p.parts))
		for i, part := range p.parts {
			tps[i] = kafka.TopicPartition{Topic: &topic, Partition: part}
		}
		if err := p.cons.Pause(tps); err != nil {
			p.cfg.Log.Warn("source: pause partitions at the end of input", "task", p.cfg.Task, "err", err)
		}
	}
	tick := time.NewTicker(p.cfg.PollTimeout)
	defer tick.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-p.commitSig:
			p.storeCommit()
		case <-tick.C:
			for {
				es, _ := p.rd.Poll(0, 64, p.entries[:0])
				p.entries = es
				for _, e := range es {
					if e.Kind == rdk.Committed {
						p.committed(e)
					}
				}
				if len(es) < 64 {
					break
				}
			}
		}
	}
}

// discover looks for partitions added to the topic, at most once per
// DiscoveryInterval, and assigns the new ones this subtask owns from their
// earliest offset.
func (p *poller) discover() ([]partProgress, error) {
	c := p.cfg
	if c.DiscoveryInterval <= 0 || c.Now().Sub(p.lastDiscovery) < c.DiscoveryInterval {
		return nil, nil
	}
	p.lastDiscovery = c.Now()
	all, err := topicPartitions(p.cons, c.Topic, c.MetadataTimeout)
	if err != nil {
		// The topic may be briefly unavailable; try again next interval.
		c.Log.Warn("source: partition discovery failed", "task", c.Task, "err", err)
		return nil, nil
	}
	var fresh []int32
	for _, part := range all {
		if int(part)%c.Parallelism != c.Index {
			continue
		}
		if _, known := p.next[part]; !known {
			fresh = append(fresh, part)
		}
	}
	if len(fresh) == 0 {
		return nil, nil
	}
	lo, err := p.offs.list(fresh, kafka.EarliestOffsetSpec)
	if err != nil {
		c.Log.Warn("source: earliest offsets of new partitions", "task", c.Task, "partitions", fresh, "err", err)
		return nil, nil
	}
	topic := c.Topic
	tps := make([]kafka.TopicPartition, len(fresh))
	added := make([]partProgress, len(fresh))
	for i, part := range fresh {
		tps[i] = kafka.TopicPartition{Topic: &topic, Partition: part, Offset: kafka.Offset(lo[part])}
		added[i] = partProgress{partition: part, next: lo[part], maxTS: math.MinInt64}
	}
	if err := p.rd.Route(topic, fresh); err != nil {
		return nil, fmt.Errorf("source %s: new partitions %s: %w", c.Task, joinInts(fresh), err)
	}
	if err := p.cons.IncrementalAssign(tps); err != nil {
		return nil, fmt.Errorf("source %s: assign new partitions %s: %w", c.Task, joinInts(fresh), err)
	}
	for _, part := range fresh {
		p.next[part] = lo[part]
		p.parts = append(p.parts, part)
	}
	c.Metrics.PartitionsDiscovered.Add(int64(len(fresh)))
	c.Log.Info("source: new partitions assigned from their earliest offset", "task", c.Task, "partitions", fresh)
	return added, nil
}

// updateLag publishes, per partition, the end offset the client last saw
// minus the position.
func (p *poller) updateLag() {
	for _, part := range p.parts {
		_, hi, err := p.cons.GetWatermarkOffsets(p.cfg.Topic, part)
		n, ok := p.next[part]
		if !ok || n < 0 {
			n = -1
		}
		if err != nil || hi < 0 {
			hi = -1
		}
		stop := int64(-1)
		if end, ok := p.stop0[part]; ok {
			stop = end
		}
		p.cfg.Stats.SetPartition(PartitionStats{Partition: part, Offset: n, End: hi, Stop: stop})
		if hi < 0 || n < 0 {
			continue
		}
		p.cfg.Metrics.SetLag(part, max(hi-n, 0))
	}
}

// committed counts the result of one of the client's commits.
func (p *poller) committed(e rdk.Entry) {
	err := e.Err
	var ke kafka.Error
	if errors.As(err, &ke) && ke.Code() == kafka.ErrNoOffset {
		return // nothing new to commit
	}
	if err != nil {
		if e.Partition >= 0 {
			err = fmt.Errorf("partition %d: %w", e.Partition, err)
		}
		p.cfg.Metrics.OffsetCommitFailures.Add(1)
		p.cfg.Log.Warn("source: offset commit failed; the job goes on", "task", p.cfg.Task, "group", p.cfg.Group, "err", err)
		return
	}
	p.cfg.Metrics.OffsetCommits.Add(1)
}

func (p *poller) pollBatch(targets map[int32]int64) (*polled, error) {
	b := &polled{}
	defer func() { b.data, b.n = p.dec.Take() }()
	prog := map[int32]*partProgress{}
	progress := func(part int32) *partProgress {
		pp := prog[part]
		if pp == nil {
			pp = &partProgress{partition: part, maxTS: math.MinInt64}
			prog[part] = pp
		}
		return pp
	}
	next := p.next
	// Records come in runs of one partition: cur is the progress of the
	// run's partition, looked up once per run, and its targets end. While
	// dirty, cur.next is ahead of next[cur.partition]: it is written back
	// when the run ends and before anything else reads next.
	var (
		cur       *partProgress
		curEnd    int64
		curHasEnd bool
		dirty     bool
	)
	// The processing clock of this poll: a record whose event time is more
	// than MaxFuture ahead of it is refused (EventTime only).
	now := p.cfg.Now()
	limit := int64(math.MaxInt64)
	if p.cfg.EventTime && p.cfg.MaxFuture > 0 {
		limit = operator.AddSat(now.UnixMilli(), p.cfg.MaxFuture.Milliseconds())
	}
	timeout := p.cfg.PollTimeout
	decoded := 0
	for decoded < p.cfg.PollRecords {
		want := p.cfg.PollRecords - decoded
		es, err := p.rd.Poll(timeout, want, p.entries[:0])
		p.entries = es
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", p.cfg.Task, err)
		}
		timeout = 0
		for i := range es {
			e := &es[i]
			part := e.Partition
			if e.Kind != rdk.Record || cur == nil || part != cur.partition {
				if dirty {
					next[cur.partition] = cur.next
					dirty = false
				}
				if e.Kind == rdk.Record {
					cur = progress(part)
					curEnd, curHasEnd = targets[part]
				}
			}
			switch e.Kind {
			case rdk.Record:
				b.bytes += int64(len(e.Key) + len(e.Value))
				off := e.Offset
				if curHasEnd && off >= curEnd {
					// Past the end: the position is the end.
					if dirty {
						next[part] = cur.next
						dirty = false
					}
					if next[part] < curEnd {
						next[part] = curEnd
						cur.next = curEnd
					}
					continue
				}
				kts := int64(operator.NoTimestamp)
				if e.HasTimestamp {
					kts = e.Timestamp
				}
				ts, err := p.dec.Decode(e.Key, e.Value, kts, part, off)
				var bad error
				switch {
				case err != nil && p.cfg.DeadLetterTopic != "":
					bad = err
				case err != nil:
					hint := p.cfg.BadRecordHint
					if hint == "" {
						hint = "a record that cannot be decoded stops the job; fix the producer or the source's format"
					}
					bad = fmt.Errorf("%w (%s)", err, hint)
				case ts > limit:
					bad = p.aheadError(ts, now)
				}
				if bad != nil {
					if dirty {
						next[part] = cur.next
						dirty = false
					}
					if err := p.badRecord(part, off, bad); err != nil {
						return nil, err
					}
					b.dead = append(b.dead, p.deadLetter(e, bad))
					decoded++
					cur.next = off + 1
					next[part] = off + 1
					continue
				}
				p.dec.Keep()
				decoded++
				cur.next = off + 1
				dirty = true
				if ts > cur.maxTS {
					cur.maxTS = ts
				}
			case rdk.EOF:
				// The end of what this isolation level can read: with
				// read_committed the offset is past a final transaction
				// marker, which is never delivered as a record.
				eof := e.Offset
				if end, ok := targets[part]; ok && eof > end {
					eof = end
				}
				if eof > next[part] {
					next[part] = eof
				}
				pp := progress(part)
				if next[part] > pp.next {
					pp.next = next[part]
				}
			case rdk.Committed:
				p.committed(*e)
			case rdk.Error:
				var ke kafka.Error
				if errors.As(e.Err, &ke) && ke.Code() == kafka.ErrAutoOffsetReset {
					return nil, fmt.Errorf("source %s: %v: an offset is out of range and source.start.auto_offset_reset is none; set it to earliest or latest",
						p.cfg.Task, e.Err)
				}
				if errors.As(e.Err, &ke) && ke.IsFatal() {
					return nil, fmt.Errorf("source %s: fatal consumer error: %w", p.cfg.Task, e.Err)
				}
				// Transient errors (broker down, ...) are retried by librdkafka.
				p.cfg.Log.Warn("consumer error", "task", p.cfg.Task, "err", e.Err)
			}
		}
		if dirty {
			next[cur.partition] = cur.next
			dirty = false
		}
		if len(es) < want {
			break // nothing more is queued
		}
	}
	for _, pp := range prog {
		b.parts = append(b.parts, *pp)
	}
	return b, nil
}

// badRecord applies the bad-record policy to a record the source cannot
// take, why saying what is wrong with it and how to fix it: the one place
// that decides. The record is counted; with policy fail the error returned
// stops the job with one line naming the record; with a dead-letter topic
// it returns nil and the caller makes the record a dead letter (the
// decoder has not kept it).
func (p *poller) badRecord(part int32, off int64, why error) error {
	p.cfg.Metrics.BadRecords.Add(1)
	if p.cfg.DeadLetterTopic != "" {
		p.cfg.Metrics.DeadLettered.Add(1)
		return nil
	}
	return fmt.Errorf("source %s: bad record at %s/%d offset %d: %w", p.cfg.Task, p.cfg.Topic, part, off, why)
}

// The headers of a dead letter: where the record was read and why it
// could not be.
const (
	HeaderSourceTopic     = "weir.source.topic"
	HeaderSourcePartition = "weir.source.partition"
	HeaderSourceOffset    = "weir.source.offset"
	HeaderError           = "weir.error"
)

// deadLetter makes the record of e a dead letter: a copy of its key and
// value (the reader may reuse the poll's buffer, see InputCopier) for
// DeadLetterTopic, with headers naming where it was read and why.
func (p *poller) deadLetter(e *rdk.Entry, why error) RawRecord {
	return RawRecord{Key: bytes.Clone(e.Key), Value: bytes.Clone(e.Value), Topic: p.cfg.DeadLetterTopic, Headers: []txsink.Header{
		{Key: HeaderSourceTopic, Value: []byte(p.cfg.Topic)},
		{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(e.Partition), 10)},
		{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, e.Offset, 10)},
		{Key: HeaderError, Value: []byte(why.Error())},
	}}
}

// aheadError says that event time ts is beyond MaxFuture ahead of now.
func (p *poller) aheadError(ts int64, now time.Time) error {
	setting := p.cfg.MaxFutureSetting
	if setting == "" {
		setting = "the source's MaxFuture"
	}
	return fmt.Errorf("event time %d (%s) is %s ahead of the processing clock, beyond %s (%v); fix the producer's timestamps or raise %s",
		ts, time.UnixMilli(ts).UTC().Format(time.RFC3339Nano), aheadString(operator.SubSat(ts, now.UnixMilli())), setting, p.cfg.MaxFuture, setting)
}

// aheadString writes a span of milliseconds short: in years or days when
// it is that long (time.Duration ends at 292 years).
func aheadString(ms int64) string {
	const day = 24 * 60 * 60 * 1000
	const year = 365*day + day/4
	switch {
	case ms >= year:
		return fmt.Sprintf("%dy", ms/year)
	case ms >= 2*day:
		return fmt.Sprintf("%dd", ms/day)
	}
	return (time.Duration(ms) * time.Millisecond).Round(time.Second).String()
}
