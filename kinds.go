package weir

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/operator"
	"github.com/weirstream/weir/operator/window"
)

// The job file's kinds are graphs built with the dataflow API. Their
// operator ids ("source", "window", "sink") name their tasks in
// checkpoints as they always have, so their checkpoints stay readable.

// kindGraph builds the graph of a job-file kind from spec (defaults
// filled in, validated).
func kindGraph(spec JobSpec) (*graphPlan, error) {
	e := &Env{spec: spec, kinds: map[string]int{}}
	src := &sourceNode{spec: spec.Source, opts: []OpOption{UID("source")}}
	sk := &sinkNode{spec: spec.Sink, opts: []OpOption{UID("sink")}}
	if spec.BadRecords == BadRecordsDeadLetter {
		src.deadLetter = spec.DeadLetter.Topic
	}
	if spec.Sink.Kind == SinkPostgres {
		sk.pg = windowPostgres(spec)
	}
	switch spec.Kind {
	case KindPassthrough:
		src.decoder = func() actors.Decoder { return &decoder[Record]{format: rawFormat{}} }
		addSink(addSource[Record](e, src), sk, Format[Record](rawFormat{}))
	case KindWindow:
		extract := actors.Extractor(spec.Extract)
		if extract == nil {
			extract = actors.JSONExtractor(spec.KeyField, spec.TimestampField, spec.Aggregate.ValueField)
		}
		src.eventTime, src.bound, src.idle = true, spec.Window.OutOfOrderness, spec.Window.IdleTimeout
		src.maxFuture, src.maxFutureSetting = spec.Window.MaxFuture, "window.max_future"
		src.badHint = "bad_records: fail stops the job; fix the producer or the field names"
		if !fastWindow(spec) {
			windowGraph(e, spec, src, sk, extract)
			break
		}
		size := spec.Window.Size.Milliseconds()
		src.decoder = func() actors.Decoder { return newCombineDecoder(extract, size) }
		in := addSource[partial](e, src)
		results := countSumWindow(in, size, UID("window"))
		addSink(results, sk, Format[window.Result](resultFormat{sizeMillis: size}))
	default:
		return nil, fmt.Errorf("weir: kind %q has no graph", spec.Kind)
	}
	return e.plan()
}

// extractDecoder reads a window job's records with its Extractor: the key
// and event time go into the record, the value to sum is the value.
type extractDecoder struct {
	extract actors.Extractor
	keys    keyCache
	buf     []operator.Rec[float64]
	last    int                   // records of the previous batch: the next one's capacity
	next    operator.Rec[float64] // decoded, not kept yet
}

func (d *extractDecoder) Decode(_, value []byte, _ int64, _ int32, _ int64) (int64, error) {
	key, ts, v, err := d.extract(value)
	if err != nil {
		return 0, err
	}
	d.next = operator.Rec[float64]{TS: ts, Key: d.keys.get(key), V: v}
	return ts, nil
}

// CopiesInput: the key goes through the key cache (a copy), the rest
// into numbers (actors.InputCopier).
func (d *extractDecoder) CopiesInput() bool { return true }

func (d *extractDecoder) Keep() {
	if d.buf == nil {
		d.buf = make([]operator.Rec[float64], 0, max(256, d.last))
	}
	d.buf = append(d.buf, d.next)
	d.next = operator.Rec[float64]{}
}

func (d *extractDecoder) Take() (any, int) {
	b := d.buf
	d.buf, d.last = nil, len(b)
	return b, len(b)
}

// keyCache turns key bytes into strings, allocating each distinct key once
// while it stays in the cache: keys repeat (that is what keying is for),
// and a string per record is an allocation per record. The cache is a
// fixed table of keyCacheSlots strings indexed by the key's hash: a key
// replaces whatever held its slot, so with many more distinct keys than
// slots (Q1 at 10^6 keys) a miss costs one hash and one compare besides
// the string, and nothing grows.
type keyCache struct {
	seed  maphash.Seed
	slots []string
}

const keyCacheSlots = 1 << 16

func (c *keyCache) get(b []byte) string {
	return c.getHashed(b, c.hash(b))
}

// hash is the cache's hash of b (getHashed takes it).
func (c *keyCache) hash(b []byte) uint64 {
	if c.slots == nil {
		c.seed, c.slots = maphash.MakeSeed(), make([]string, keyCacheSlots)
	}
	return maphash.Bytes(c.seed, b)
}

// getHashed is get of b whose c.hash is h: a caller that hashes the key
// anyway hashes it once.
func (c *keyCache) getHashed(b []byte, h uint64) string {
	slot := &c.slots[h&(keyCacheSlots-1)]
	if *slot == string(b) { // no allocation for the compare
		return *slot
	}
	*slot = string(b)
	return *slot
}

// resultFormat writes a window result as the window job's JSON, keyed by
// the key.
type resultFormat struct{ sizeMillis int64 }

func (f resultFormat) Encode(r window.Result) ([]byte, []byte, error) {
	return []byte(r.Key), window.AppendResultJSON(make([]byte, 0, 96), r, f.sizeMillis), nil
}

// AppendEncode is Encode into one buffer (appendEncoder).
func (f resultFormat) AppendEncode(dst []byte, r window.Result) ([]byte, int, int, error) {
	n := len(dst)
	dst = append(dst, r.Key...)
	k := len(dst) - n
	dst = window.AppendResultJSON(dst, r, f.sizeMillis)
	return dst, k, len(dst) - n - k, nil
}

func (f resultFormat) Decode(_, _ []byte) (window.Result, error) {
	return window.Result{}, fmt.Errorf("weir: window results are written, not read")
}

// countSumWindow counts and sums the partials of s (see combineDecoder),
// keyed by the key its records carry, in event-time tumbling windows of
// sizeMillis: the window job's operator.
func countSumWindow(s Stream[partial], sizeMillis int64, opts ...OpOption) Stream[window.Result] {
	n := s.n.env.addNode("window", opts, portFor[window.Result]())
	n.connect(s, recordKey{})
	n.stateful = true
	n.build = func(b *buildCtx, outs []any) (any, lifecycle, error) {
		op := &windowOp{w: window.NewTumbling(sizeMillis, b.checkpoints), out: outs[0].(emitter[window.Result]), metrics: b.metrics, uid: n.uid}
		return emitFunc[partial](op.element), op, nil
	}
	return Stream[window.Result]{n: n}
}

// windowOp runs window.Tumbling as the head of a task.
type windowOp struct {
	w       *window.Tumbling
	out     emitter[window.Result]
	metrics *actors.Metrics
	uid     string
}

func (o *windowOp) element(r operator.Rec[partial]) {
	if !o.w.AddN(r.Key, r.TS, r.V.n, r.V.sum) && o.metrics != nil {
		o.metrics.LateDropped.Add(r.V.n)
	}
}

func (o *windowOp) emit(r window.Result) {
	o.out.Emit(operator.Rec[window.Result]{TS: r.Start, Key: r.Key, V: r})
}

func (o *windowOp) Open(restored operator.Iter, opState []byte) error {
	if restored == nil || opState == nil {
		return nil
	}
	if _, err := o.w.Restore(restored, opState); err != nil {
		return fmt.Errorf("%s: %w", o.uid, err)
	}
	return nil
}

func (o *windowOp) Watermark(ts int64) error {
	o.w.Fire(ts, o.emit)
	return nil
}

func (o *windowOp) ProcessingTime(int64) error         { return nil }
func (o *windowOp) NextProcessingTimer() (int64, bool) { return 0, false }
func (o *windowOp) EndOfInput() error                  { return nil }

func (o *windowOp) Snapshot(uint64) (operator.Capture, error) {
	entries, op := o.w.Capture()
	return operator.Capture{Entries: entries, OpState: op}, nil
}

// fastWindow reports whether the window job is the tumbling count and sum
// with nothing else: window.Tumbling runs it (fast, and its checkpoints
// are those of every weir before window kinds).
func fastWindow(spec JobSpec) bool {
	w := spec.Window
	f := spec.Aggregate.Functions
	return w.Kind == WindowTumbling && w.Offset == 0 && w.AllowedLateness == 0 && w.LateTopic == "" &&
		(f == nil || slices.Equal(f, []string{"count", "sum"}))
}

// assignerOf is the window assigner of a job file's window.
func assignerOf(w WindowSpec) WindowAssigner {
	switch w.Kind {
	case WindowSliding:
		return SlidingWindows(w.Size, w.Slide).WithOffset(w.Offset)
	case WindowSession:
		return SessionWindows(w.Gap)
	}
	return TumblingWindows(w.Size).WithOffset(w.Offset)
}

// lateRec is a window job's record with the bytes it was read as, kept for
// the late topic.
type lateRec struct {
	V          float64
	Key, Value []byte
}

// windowGraph is the window job on the general window operator
// (operator/window.Keyed): any window kind, offsets, allowed lateness, a
// late topic, the aggregates of aggregate.functions.
func windowGraph(e *Env, spec JobSpec, src *sourceNode, sk *sinkNode, extract actors.Extractor) {
	funcs := spec.Aggregate.Functions
	if funcs == nil {
		funcs = []string{"count", "sum"}
	}
	results := resultsFormat{funcs: funcs}
	if spec.Window.LateTopic == "" {
		src.decoder = func() actors.Decoder { return &extractDecoder{extract: extract} }
		in := addSource[float64](e, src)
		ks := KeyedStream[float64]{s: in}
		ws := Window(ks, assignerOf(spec.Window)).AllowedLateness(spec.Window.AllowedLateness)
		addSink(Aggregate(ws, SummaryOf(func(v float64) float64 { return v }), UID("window")), sk, Format[WindowResult[Summary]](results))
		return
	}
	src.decoder = func() actors.Decoder { return &lateDecoder{extract: extract} }
	in := addSource[lateRec](e, src)
	late := NewOutputTag[lateRec]("late")
	ks := KeyedStream[lateRec]{s: in}
	ws := Window(ks, assignerOf(spec.Window)).AllowedLateness(spec.Window.AllowedLateness).SideOutputLateData(late)
	out := Aggregate(ws, SummaryOf(func(r lateRec) float64 { return r.V }), UID("window"))
	addSink(out, sk, Format[WindowResult[Summary]](results))
	lateSink := &sinkNode{spec: SinkSpec{Topic: spec.Window.LateTopic, ProgressTopic: spec.Window.LateTopic + ".weir-progress",
		TransactionalIDPrefix: spec.Sink.TransactionalIDPrefix, TransactionTimeout: spec.Sink.TransactionTimeout,
		Properties: spec.Sink.Properties}, opts: []OpOption{UID("late-sink")}}
	addSink(SideOutput(out, late), lateSink, Format[lateRec](lateFormat{}))
}

// lateDecoder is extractDecoder keeping each record's bytes.
type lateDecoder struct {
	extract actors.Extractor
	keys    keyCache
	buf     []operator.Rec[lateRec]
	next    operator.Rec[lateRec]
}

func (d *lateDecoder) Decode(key, value []byte, _ int64, _ int32, _ int64) (int64, error) {
	k, ts, v, err := d.extract(value)
	if err != nil {
		return 0, err
	}
	d.next = operator.Rec[lateRec]{TS: ts, Key: d.keys.get(k), V: lateRec{V: v, Key: key, Value: value}}
	return ts, nil
}

func (d *lateDecoder) Keep() {
	if d.buf == nil {
		d.buf = make([]operator.Rec[lateRec], 0, 256)
	}
	d.buf = append(d.buf, d.next)
}

func (d *lateDecoder) Take() (any, int) {
	b := d.buf
	d.buf = nil
	return b, len(b)
}

// lateFormat writes a late record as it was read.
type lateFormat struct{}

func (lateFormat) Encode(r lateRec) ([]byte, []byte, error) { return r.Key, r.Value, nil }

func (lateFormat) Decode(_, _ []byte) (lateRec, error) {
	return lateRec{}, fmt.Errorf("weir: late records are written, not read")
}

// resultsFormat writes a window result as the window job's JSON with the
// aggregates of aggregate.functions, keyed by the key:
// {"key":"u1","window_start":0,"window_end":10000,"count":3,"sum":7.5}.
type resultsFormat struct{ funcs []string }

func (f resultsFormat) Encode(r WindowResult[Summary]) ([]byte, []byte, error) {
	return []byte(r.Key), f.appendValue(make([]byte, 0, 128), r), nil
}

// AppendEncode is Encode into one buffer (appendEncoder).
func (f resultsFormat) AppendEncode(dst []byte, r WindowResult[Summary]) ([]byte, int, int, error) {
	n := len(dst)
	dst = append(dst, r.Key...)
	k := len(dst) - n
	dst = f.appendValue(dst, r)
	return dst, k, len(dst) - n - k, nil
}

func (f resultsFormat) appendValue(b []byte, r WindowResult[Summary]) []byte {
	b = append(b, `{"key":`...)
	b = window.AppendJSONString(b, r.Key)
	b = append(b, `,"window_start":`...)
	b = strconv.AppendInt(b, r.Start, 10)
	b = append(b, `,"window_end":`...)
	b = strconv.AppendInt(b, r.End, 10)
	for _, fn := range f.funcs {
		b = append(b, ',', '"')
		b = append(b, fn...)
		b = append(b, '"', ':')
		switch fn {
		case "count":
			b = strconv.AppendInt(b, r.Value.Count, 10)
		case "sum":
			b = strconv.AppendFloat(b, r.Value.Sum, 'f', -1, 64)
		case "min":
			b = strconv.AppendFloat(b, r.Value.Min, 'f', -1, 64)
		case "max":
			b = strconv.AppendFloat(b, r.Value.Max, 'f', -1, 64)
		case "avg":
			b = strconv.AppendFloat(b, r.Value.Avg, 'f', -1, 64)
		}
	}
	return append(b, '}')
}

func (resultsFormat) Decode(_, _ []byte) (WindowResult[Summary], error) {
	return WindowResult[Summary]{}, fmt.Errorf("weir: window results are written, not read")
}
