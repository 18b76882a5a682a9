package weir

import (
	"fmt"

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
		src.decoder = func() actors.Decoder { return &extractDecoder{extract: extract} }
		in := addSource[float64](e, src)
		size := spec.Window.Size.Milliseconds()
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
	buf     []operator.Rec[float64]
	next    operator.Rec[float64] // decoded, not kept yet
}

func (d *extractDecoder) Decode(_, value []byte, _ int64, _ int32, _ int64) (int64, error) {
	key, ts, v, err := d.extract(value)
	if err != nil {
		return 0, err
	}
	d.next = operator.Rec[float64]{TS: ts, Key: string(key), V: v}
	return ts, nil
}

func (d *extractDecoder) Keep() {
	if d.buf == nil {
		d.buf = make([]operator.Rec[float64], 0, 256)
	}
	d.buf = append(d.buf, d.next)
	d.next = operator.Rec[float64]{}
}

func (d *extractDecoder) Take() (any, int) {
	b := d.buf
	d.buf = nil
	return b, len(b)
}

// resultFormat writes a window result as the window job's JSON, keyed by
// the key.
type resultFormat struct{ sizeMillis int64 }

func (f resultFormat) Encode(r window.Result) ([]byte, []byte, error) {
	return []byte(r.Key), window.AppendResultJSON(make([]byte, 0, 96), r, f.sizeMillis), nil
}

func (f resultFormat) Decode(_, _ []byte) (window.Result, error) {
	return window.Result{}, fmt.Errorf("weir: window results are written, not read")
}

// countSumWindow counts and sums the values of s, keyed by the key its
// records carry, in event-time tumbling windows of sizeMillis: the window
// job's operator.
func countSumWindow(s Stream[float64], sizeMillis int64, opts ...OpOption) Stream[window.Result] {
	n := s.n.env.addNode("window", opts, portFor[window.Result]())
	n.connect(s, recordKey{})
	n.stateful = true
	n.build = func(b *buildCtx, outs []any) (any, lifecycle, error) {
		op := &windowOp{w: window.NewTumbling(sizeMillis, b.checkpoints), out: outs[0].(emitter[window.Result]), metrics: b.metrics, uid: n.uid}
		return emitFunc[float64](op.element), op, nil
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

func (o *windowOp) element(r operator.Rec[float64]) {
	if !o.w.Add(r.Key, r.TS, r.V) && o.metrics != nil {
		o.metrics.LateDropped.Add(1)
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
