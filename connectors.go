package weir

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/internal/fastjson"
	"github.com/weirstream/weir/operator"
)

// Format turns Kafka records into values of T and back.
type Format[T any] interface {
	// Decode reads a record's key and value. An error stops the job with
	// the record's topic, partition and offset (nothing is skipped).
	Decode(key, value []byte) (T, error)
	// Encode writes v as a record's key (nil for none) and value.
	Encode(v T) (key, value []byte, err error)
}

// JSON is the format of records whose value is v encoded by encoding/json
// (no key). Decoding gives encoding/json.Unmarshal's value and error; for
// a struct of strings, bools, numbers and such structs (see
// internal/fastjson) it gets them without encoding/json's cost, and a
// source reuses the strings that repeat (ids, names) instead of
// allocating them per record. Encoding gives encoding/json.Marshal's bytes
// and error; for such a struct a sink encodes it without encoding/json's
// cost, into a buffer shared by a batch of records.
func JSON[T any]() Format[T] { return jsonFormat[T]{enc: fastjson.NewEncoder[T]()} }

type jsonFormat[T any] struct {
	enc *fastjson.Encoder[T] // T's plan, cached per type
}

func (jsonFormat[T]) Decode(_, value []byte) (T, error) {
	v, err := fastjson.Unmarshal[T](value)
	if err != nil {
		return v, fmt.Errorf("JSON of %T: %w", v, err)
	}
	return v, nil
}

// newDecodeFunc is Decode with a cache of the strings decoded, for one
// source subtask (decodeFuncMaker).
func (jsonFormat[T]) newDecodeFunc() func(key, value []byte) (T, error) {
	d := fastjson.NewDecoder[T]()
	return func(_, value []byte) (T, error) {
		v, err := d.Decode(value)
		if err != nil {
			return v, fmt.Errorf("JSON of %T: %w", v, err)
		}
		return v, nil
	}
}

// Encode is one allocation for the value, of its size.
func (f jsonFormat[T]) Encode(v T) ([]byte, []byte, error) {
	b, err := f.enc.Marshal(v)
	return nil, b, err
}

// AppendEncode is Encode into one buffer (appendEncoder): no key.
func (f jsonFormat[T]) AppendEncode(dst []byte, v T) ([]byte, int, int, error) {
	n := len(dst)
	dst, err := f.enc.AppendJSON(dst, v)
	if err != nil {
		return dst, 0, 0, err
	}
	return dst, 0, len(dst) - n, nil
}

// KeyedJSON is JSON with a record key: key(v) is written as the key.
func KeyedJSON[T any](key func(T) string) Format[T] {
	return keyedJSON[T]{jsonFormat: jsonFormat[T]{enc: fastjson.NewEncoder[T]()}, key: key}
}

type keyedJSON[T any] struct {
	jsonFormat[T]
	key func(T) string
}

func (f keyedJSON[T]) Encode(v T) ([]byte, []byte, error) {
	_, b, err := f.jsonFormat.Encode(v)
	return []byte(f.key(v)), b, err
}

// AppendEncode is Encode into one buffer (appendEncoder).
func (f keyedJSON[T]) AppendEncode(dst []byte, v T) ([]byte, int, int, error) {
	n := len(dst)
	dst = append(dst, f.key(v)...)
	k := len(dst) - n
	dst, err := f.enc.AppendJSON(dst, v)
	if err != nil {
		return dst, 0, 0, err
	}
	return dst, k, len(dst) - n - k, nil
}

// Record is a Kafka record as bytes: the value of the Raw format.
type Record struct {
	Key, Value []byte
}

// Raw is the format that hands records over as they are.
func Raw() Format[Record] { return rawFormat{} }

type rawFormat struct{}

func (rawFormat) Decode(key, value []byte) (Record, error) {
	return Record{Key: key, Value: value}, nil
}
func (rawFormat) Encode(r Record) ([]byte, []byte, error) { return r.Key, r.Value, nil }

// String is the format of UTF-8 text values (no key).
func String() Format[string] { return stringFormat{} }

type stringFormat struct{}

func (stringFormat) Decode(_, value []byte) (string, error)  { return string(value), nil }
func (stringFormat) Encode(s string) ([]byte, []byte, error) { return nil, []byte(s), nil }

// SourceOption configures FromKafka.
type SourceOption func(*sourceNode)

type sourceNode struct {
	spec      SourceSpec
	eventTime bool
	bound     time.Duration
	idle      time.Duration
	opts      []OpOption
	badHint   string // how to fix a record that cannot be decoded
	tsFunc    any    // func(T) int64
	decoder   func() actors.Decoder

	// maxFuture bounds event time ahead of the processing clock (0: the
	// default, NoMaxFuture: none); maxFutureSetting names what raises it.
	maxFuture        time.Duration
	maxFutureSetting string
	// deadLetter is the dead-letter topic ("": bad records fail the job).
	deadLetter string
}

// DeadLetter makes a record of this source that cannot be read (its
// format's Decode fails, or its event time is beyond MaxFuture) go to
// topic instead of stopping the job (the job file's bad_records:
// dead-letter with dead_letter.topic): with its original key and value and
// the headers weir.source.topic, weir.source.partition, weir.source.offset
// and weir.error (what is wrong with it). It is counted in
// Stats().BadRecords and Stats().DeadLettered, and the job goes on. The
// dead letters are written by the job's sink (the one marked
// DeadLetterSink when the job has several): with exactly-once delivery in
// the same Kafka transactions as the results of their epoch, so each is
// written exactly once; with at-least-once by its producer. The topic must
// exist (checked at start) and be neither the source's nor the sink's
// topic.
func DeadLetter(topic string) SourceOption { return func(s *sourceNode) { s.deadLetter = topic } }

// Dead-letter record headers (see DeadLetter).
const (
	HeaderSourceTopic     = actors.HeaderSourceTopic
	HeaderSourcePartition = actors.HeaderSourcePartition
	HeaderSourceOffset    = actors.HeaderSourceOffset
	HeaderError           = actors.HeaderError
)

// FromEarliest reads every partition from its first offset.
func FromEarliest() SourceOption {
	return func(s *sourceNode) { s.spec.Start.Mode = StartEarliest }
}

// FromLatest reads only records written after the start.
func FromLatest() SourceOption { return func(s *sourceNode) { s.spec.Start.Mode = StartLatest } }

// FromTimestamp reads from the first record with a timestamp at or
// after t (else from the end).
func FromTimestamp(t time.Time) SourceOption {
	return func(s *sourceNode) { s.spec.Start.Mode, s.spec.Start.Timestamp = StartTimestamp, t }
}

// FromGroupOffsets reads from the consumer group's committed offsets, and
// partitions without one from reset ("earliest", "latest" or "none": an
// error). It is the default, with "earliest".
func FromGroupOffsets(reset string) SourceOption {
	return func(s *sourceNode) { s.spec.Start.Mode, s.spec.Start.AutoOffsetReset = StartGroup, reset }
}

// FromOffsets reads each listed partition from its offset; the others
// start as with FromGroupOffsets.
func FromOffsets(offsets map[int32]int64) SourceOption {
	return func(s *sourceNode) { s.spec.Start.Mode, s.spec.Start.Offsets = StartOffsets, offsets }
}

// Group sets the consumer group id (default "weir-<job>-<source uid>").
// It is used for the group start position and for committing offsets for
// monitoring, never for assigning partitions.
func Group(id string) SourceOption { return func(s *sourceNode) { s.spec.Group = id } }

// BoundedAtLatest makes the source stop at the end its partitions have at
// the start: the job ends once every record before it is processed.
func BoundedAtLatest() SourceOption { return func(s *sourceNode) { s.spec.Bounded = BoundLatest } }

// EventTime takes each value's event time (milliseconds) from ts and
// emits watermarks per partition that trail the newest event time by
// outOfOrderness (Flink's forBoundedOutOfOrderness). Without it a value's
// timestamp is its Kafka record's and no watermarks flow, so event-time
// timers fire only at the end of a bounded input.
func EventTime[T any](ts func(T) int64, outOfOrderness time.Duration) SourceOption {
	return func(s *sourceNode) {
		s.eventTime, s.bound, s.tsFunc = true, outOfOrderness, ts
	}
}

// IdleTimeout lets a partition that has had no records for d stop holding
// back the watermark (Flink's withIdleness).
func IdleTimeout(d time.Duration) SourceOption { return func(s *sourceNode) { s.idle = d } }

// MaxFuture bounds how far a value's event time (EventTime) may be ahead
// of the processing clock, the wall clock when the source reads the
// record. A record beyond it stops the job with one line naming its
// topic, partition and offset, and is counted in Stats().BadRecords,
// before its time can move the watermark: one record from the year 2500
// would otherwise make every later record late, also after a restore,
// since the watermark is checkpointed. Default DefaultMaxFuture (1h);
// NoMaxFuture turns the bound off. Without EventTime there is no
// watermark to protect and no bound.
func MaxFuture(d time.Duration) SourceOption {
	return func(s *sourceNode) { s.maxFuture = d }
}

// maxFutureBound is the source's bound for actors.SourceConfig.MaxFuture
// (0: none).
func (s *sourceNode) maxFutureBound() time.Duration {
	switch {
	case s.maxFuture == 0:
		return DefaultMaxFuture
	case s.maxFuture < 0:
		return 0
	}
	return s.maxFuture
}

// ConsumerProperties are librdkafka consumer properties for this source,
// applied after the Env's Kafka properties.
func ConsumerProperties(p map[string]string) SourceOption {
	return func(s *sourceNode) { s.spec.Properties = p }
}

// WithIsolation sets the consumer's isolation level (default
// ReadCommitted: only committed transactional records are read).
func WithIsolation(i Isolation) SourceOption {
	return func(s *sourceNode) { s.spec.Isolation = i }
}

// SourceUID sets the source's stable id (see UID); default "source-N".
func SourceUID(id string) SourceOption {
	return func(s *sourceNode) { s.opts = append(s.opts, UID(id)) }
}

// decodeFuncMaker is a Format that decodes faster with state of its own
// (the JSON formats: a string cache): each source subtask's decoder asks
// it for a decoding function of its own, which it calls from one
// goroutine.
type decodeFuncMaker[T any] interface {
	newDecodeFunc() func(key, value []byte) (T, error)
}

// decoder decodes one source subtask's records into typed batches.
type decoder[T any] struct {
	format Format[T]
	ts     func(T) int64
	decode func(key, value []byte) (T, error) // the subtask's; set by the first Decode
	buf    []operator.Rec[T]
	last   int             // records of the previous batch: the next one's capacity
	next   operator.Rec[T] // decoded, not kept yet
}

func (d *decoder[T]) Decode(key, value []byte, kafkaTS int64, _ int32, _ int64) (int64, error) {
	if d.decode == nil {
		d.decode = d.format.Decode
		if m, ok := d.format.(decodeFuncMaker[T]); ok {
			d.decode = m.newDecodeFunc()
		}
	}
	v, err := d.decode(key, value)
	if err != nil {
		return 0, err
	}
	ts := kafkaTS
	if d.ts != nil {
		ts = d.ts(v)
	}
	d.next = operator.Rec[T]{TS: ts, V: v}
	return ts, nil
}

func (d *decoder[T]) Keep() {
	if d.buf == nil {
		d.buf = make([]operator.Rec[T], 0, max(256, d.last))
	}
	d.buf = append(d.buf, d.next)
	d.next = operator.Rec[T]{}
}

func (d *decoder[T]) Take() (any, int) {
	b := d.buf
	d.buf, d.last = nil, len(b)
	return b, len(b)
}

// FromKafka reads topic, decoding every record with format: a source with
// one subtask per Env parallelism, partitions assigned by the engine. Its
// position is part of every checkpoint; on a restore it resumes from
// there, whatever the start option says (as in Flink).
func FromKafka[T any](env *Env, topic string, format Format[T], opts ...SourceOption) Stream[T] {
	src := &sourceNode{spec: SourceSpec{Topic: topic}, maxFutureSetting: "weir.MaxFuture"}
	for _, o := range opts {
		o(src)
	}
	ts, _ := src.tsFunc.(func(T) int64)
	if src.tsFunc != nil && ts == nil {
		env.fail(fmt.Errorf("weir: FromKafka(%q): EventTime is for another type than the format's %T", topic, *new(T)))
	}
	src.decoder = func() actors.Decoder { return &decoder[T]{format: format, ts: ts} }
	return addSource[T](env, src)
}

// addSource adds a source node and the relay its records go through.
func addSource[T any](env *Env, src *sourceNode) Stream[T] {
	n := env.addNode("source", src.opts, portFor[T]())
	n.source = src
	// The relay heads the task that the source feeds: the records' first
	// operators chain behind it (and run in the source's actor).
	relay := env.addNode("relay", nil, portFor[T]())
	relay.uid = n.uid + ".out"
	relay.connect(Stream[T]{n: n}, nil)
	relay.build = func(b *buildCtx, outs []any) (any, lifecycle, error) {
		return outs[0].(emitter[T]), nil, nil
	}
	relay.relay = true
	return Stream[T]{n: relay}
}

// SinkOption configures ToKafka.
type SinkOption func(*sinkNode)

type sinkNode struct {
	spec SinkSpec
	opts []OpOption
	// deadLetters: this sink writes the dead letters of the sources with
	// DeadLetter (DeadLetterSink).
	deadLetters bool
	// pg is set for a PostgreSQL sink (spec.Kind SinkPostgres).
	pg *pgSink
	// writer builds the exchange that encodes records for the sink.
	writer func(send func(int, any, int), target int, onErr func(error)) (em any, flush func())
}

// ProducerProperties are librdkafka producer properties for this sink,
// applied after the Env's Kafka properties.
func ProducerProperties(p map[string]string) SinkOption {
	return func(s *sinkNode) { s.spec.Properties = p }
}

// ProgressTopic names the topic of this sink's exactly-once progress
// markers (default "<topic>.weir-progress"; created compacted if missing).
func ProgressTopic(t string) SinkOption { return func(s *sinkNode) { s.spec.ProgressTopic = t } }

// TransactionalIDPrefix prefixes the sink's transactional ids (default
// "weir"): <prefix>-<job>-<sink uid>-<subtask>-<slot>.
func TransactionalIDPrefix(p string) SinkOption {
	return func(s *sinkNode) { s.spec.TransactionalIDPrefix = p }
}

// TransactionTimeout sets transaction.timeout.ms of the sink's
// exactly-once producers (default: chosen from the checkpoint settings
// and the broker's maximum).
func TransactionTimeout(d time.Duration) SinkOption {
	return func(s *sinkNode) { s.spec.TransactionTimeout = d }
}

// MaxPendingBytes bounds, per sink subtask, the records an exactly-once
// sink holds for its uncommitted epochs, which every checkpoint saves (the
// job file's sink.max_pending_bytes; see SinkSpec.MaxPendingBytes):
// between MinPendingBytes and MaxPendingBytesLimit, default
// DefaultMaxPendingBytes. A larger epoch fails the job with an error
// naming the limit; raise it or checkpoint more often.
func MaxPendingBytes(n int64) SinkOption { return func(s *sinkNode) { s.spec.MaxPendingBytes = n } }

// DeadLetterSink makes this sink write the dead letters of the job's
// sources with DeadLetter, in its transactions; needed only when the job
// has several sinks (with one, it writes them).
func DeadLetterSink() SinkOption { return func(s *sinkNode) { s.deadLetters = true } }

// SinkUID sets the sink's stable id (see UID); default "sink-N". With
// exactly-once delivery it is part of the transactional ids.
func SinkUID(id string) SinkOption { return func(s *sinkNode) { s.opts = append(s.opts, UID(id)) } }

// rawBatch encodes records for a sink.
type rawBatch[T any] struct {
	format Format[T]
	app    appendEncoder[T] // format's, when it has one
	send   func(int, any, int)
	target int
	batch  int
	onErr  func(error)
	buf    []actors.RawRecord
	// arena holds the encoded records of the batch being filled (with
	// app): one allocation for many records. It is never written again
	// once its records are sent.
	arena []byte
}

func newRawBatch[T any](format Format[T], send func(int, any, int), target, batch int, onErr func(error)) *rawBatch[T] {
	w := &rawBatch[T]{format: format, send: send, target: target, batch: batch, onErr: onErr}
	w.app, _ = format.(appendEncoder[T])
	return w
}

// appendEncoder is a Format that encodes a value's key and value by
// appending them to a buffer (the built-in result formats): the sink then
// needs no allocation per record.
type appendEncoder[T any] interface {
	// AppendEncode appends v's key and then its value to dst and returns
	// the extended buffer and the two lengths.
	AppendEncode(dst []byte, v T) (out []byte, keyLen, valueLen int, err error)
}

// arenaSize is the size of a rawBatch arena.
const arenaSize = 64 << 10

func (w *rawBatch[T]) encode(v T) (key, value []byte, err error) {
	if w.app == nil {
		return w.format.Encode(v)
	}
	if cap(w.arena)-len(w.arena) < 512 {
		w.arena = make([]byte, 0, arenaSize)
	}
	start := len(w.arena)
	out, kl, vl, err := w.app.AppendEncode(w.arena, v)
	if err != nil {
		return nil, nil, err
	}
	// A record larger than the room left moved out to a new array (the
	// records before it keep the old one): go on in the new one.
	w.arena = out
	k, end := start+kl, start+kl+vl
	return out[start:k:k], out[k:end:end], nil
}

func (w *rawBatch[T]) Emit(r operator.Rec[T]) {
	k, v, err := w.encode(r.V)
	if err != nil {
		w.onErr(err)
		return
	}
	if w.buf == nil {
		w.buf = make([]actors.RawRecord, 0, w.batch)
	}
	w.buf = append(w.buf, actors.RawRecord{Key: k, Value: v})
	if len(w.buf) >= w.batch {
		w.flush()
	}
}

func (w *rawBatch[T]) flush() {
	if len(w.buf) > 0 {
		w.send(w.target, w.buf, len(w.buf))
		w.buf = nil
		w.arena = nil // its records are sent: the next batch gets its own
	}
}

// ToKafka writes s to topic, encoding every value with format: a sink with
// one subtask per Env parallelism. With exactly-once delivery (the Env's
// ExactlyOnce) its records are written in Kafka transactions committed
// when a checkpoint completes, with every sink of the job on the same
// checkpoints.
func ToKafka[T any](s Stream[T], topic string, format Format[T], opts ...SinkOption) {
	sk := &sinkNode{spec: SinkSpec{Topic: topic}}
	for _, o := range opts {
		o(sk)
	}
	if s.n == nil {
		return
	}
	addSink(s, sk, format)
}

func addSink[T any](s Stream[T], sk *sinkNode, format Format[T]) {
	n := s.n.env.addNode("sink", sk.opts, nil)
	n.sink = sk
	n.connect(s, nil)
	sk.writer = func(send func(int, any, int), target int, onErr func(error)) (any, func()) {
		w := newRawBatch(format, send, target, 1024, onErr)
		return w, w.flush
	}
}
