package weir

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/weirstream/weir/actors"
	"github.com/weirstream/weir/operator"
)

// The graph a program builds on an Env: nodes (operators) joined by edges.
// At Run the graph becomes tasks: a head node (a source's relay, a keyed
// Process, a Union) with the stateless nodes chained behind it by forward
// edges (Flink's operator chaining), each task one actor per subtask.

// emitter receives the records of one output of an operator.
type emitter[T any] interface {
	Emit(r operator.Rec[T])
}

type emitFunc[T any] func(r operator.Rec[T])

func (f emitFunc[T]) Emit(r operator.Rec[T]) { f(r) }

// discard drops what it is given (an output nobody reads).
type discard[T any] struct{}

func (discard[T]) Emit(operator.Rec[T]) {}

// fanout hands every record to several emitters.
type fanout[T any] []emitter[T]

func (f fanout[T]) Emit(r operator.Rec[T]) {
	for _, e := range f {
		e.Emit(r)
	}
}

// exchange is an output edge to another task: it batches records per
// target subtask, by key group on a hash edge.
type exchange[T any] struct {
	send    func(t int, data any, n int)
	targets []int // indexes in the task's Output
	key     func(T) string
	hashed  bool // by key; key nil: by the key the records carry
	batch   int
	bufs    [][]operator.Rec[T]
	// weight, when not nil, is the input records a value stands for (a
	// combiner's partial): a batch counts those, not its values.
	weight  func(T) int
	weights []int
}

// recordKey on a hash edge partitions by the key the records already
// carry (set by the source's decoder).
type recordKey struct{}

func (x *exchange[T]) Emit(r operator.Rec[T]) {
	i := 0
	if x.hashed {
		if x.key != nil {
			r.Key = x.key(r.V)
		}
		i = operator.SubtaskForKeyGroup(operator.KeyGroup(r.Key), len(x.targets))
	}
	if x.bufs[i] == nil {
		x.bufs[i] = make([]operator.Rec[T], 0, x.batch)
	}
	x.bufs[i] = append(x.bufs[i], r)
	if x.weight != nil {
		x.weights[i] += x.weight(r.V)
	}
	if len(x.bufs[i]) >= x.batch {
		x.flushOne(i)
	}
}

func (x *exchange[T]) flushOne(i int) {
	if len(x.bufs[i]) == 0 {
		return
	}
	n := len(x.bufs[i])
	if x.weight != nil {
		n, x.weights[i] = x.weights[i], 0
	}
	x.send(x.targets[i], x.bufs[i], n)
	x.bufs[i] = nil
}

func (x *exchange[T]) flush() {
	for i := range x.bufs {
		x.flushOne(i)
	}
}

// port is one typed output of a node, with the factories that only the
// typed function that created it can make.
type port struct {
	typ       reflect.Type
	consumers []*edge
	// exchange builds the sending side of an edge to another task; key is
	// the edge's key function (func(T) string) or nil.
	exchange func(send func(int, any, int), targets []int, key any, batch int) (em any, flush func())
	// fanout joins the emitters of several consumers (none: discard).
	fanout func(ems []any) any
	// input turns em (an emitter of this port's type) into the handler of
	// a batch ([]operator.Rec[T]) arriving over an edge from this port.
	input func(em any) func(data any) error
}

func portFor[T any]() *port {
	return &port{
		typ: reflect.TypeFor[T](),
		exchange: func(send func(int, any, int), targets []int, key any, batch int) (any, func()) {
			x := &exchange[T]{send: send, targets: targets, batch: batch, bufs: make([][]operator.Rec[T], len(targets)), hashed: key != nil}
			if k, ok := key.(func(T) string); ok {
				x.key = k
			}
			if w, ok := any(partialRecords).(func(T) int); ok {
				x.weight, x.weights = w, make([]int, len(targets))
			}
			return x, x.flush
		},
		fanout: func(ems []any) any {
			if len(ems) == 0 {
				return discard[T]{}
			}
			f := make(fanout[T], len(ems))
			for i, e := range ems {
				f[i] = e.(emitter[T])
			}
			return f
		},
		input: func(em any) func(data any) error {
			e := em.(emitter[T])
			return func(data any) error {
				recs, ok := data.([]operator.Rec[T])
				if !ok {
					return fmt.Errorf("weir: a batch of %T reached an input of %v", data, reflect.TypeFor[T]())
				}
				for i := range recs {
					e.Emit(recs[i])
				}
				return nil
			}
		},
	}
}

// edge joins output port of from to input of to; key is set on a hash
// edge (a KeyedStream consumed by to).
type edge struct {
	from *node
	port int
	to   *node
	key  any
}

func (e *edge) hash() bool { return e.key != nil }

// lifecycle is what a stateful head node adds to the task's operator.
type lifecycle interface {
	Open(restored operator.Iter, opState []byte) error
	Watermark(ts int64) error
	ProcessingTime(now int64) error
	NextProcessingTimer() (int64, bool)
	EndOfInput() error
	Snapshot(id uint64) (operator.Capture, error)
}

type node struct {
	env    *Env
	id     int
	kind   string
	uid    string
	uidSet bool
	name   string
	ins    []*edge
	ports  []*port
	// sides maps an OutputTag id to its port (nil: no side outputs).
	sides map[string]int
	// joinLate names the side outputs of an interval join's late values
	// (left, right; "" for none).
	joinLate [2]string
	// fusable: a stateless one-input node that chains behind its upstream.
	fusable bool
	// stateful: keyed state or timers (the task's state is restored by
	// this node's uid); relay: the head behind a source.
	stateful, relay bool
	// build wires the node inside a task given an emitter per port and
	// returns the emitter its inputs feed and, for a stateful node, its
	// lifecycle.
	build  func(b *buildCtx, outs []any) (in any, life lifecycle, err error)
	source *sourceNode
	sink   *sinkNode
}

// connect adds an edge from s to n; key is a func(T) string for a hash
// edge.
func (n *node) connect(from interface{ at() (*node, int) }, key any) {
	fn, p := from.at()
	if fn == nil {
		n.env.fail(fmt.Errorf("weir: %s %s reads a stream that was never built (a zero Stream)", n.kind, n.uid))
		return
	}
	if fn.env != n.env {
		n.env.fail(fmt.Errorf("weir: %s %s reads a stream of another environment", n.kind, n.uid))
		return
	}
	e := &edge{from: fn, port: p, to: n, key: key}
	n.ins = append(n.ins, e)
	fn.ports[p].consumers = append(fn.ports[p].consumers, e)
}

func (s Stream[T]) at() (*node, int) { return s.n, s.port }

// addNode adds a node of kind with one output port (nil for a sink).
func (e *Env) addNode(kind string, opts []OpOption, out *port) *node {
	e.kinds[kind]++
	n := &node{env: e, id: len(e.nodes), kind: kind, uid: fmt.Sprintf("%s-%d", kind, e.kinds[kind])}
	if out != nil {
		n.ports = []*port{out}
	}
	for _, o := range opts {
		o(n)
	}
	e.nodes = append(e.nodes, n)
	return n
}

// buildCtx is shared by the nodes of one task subtask while it is wired
// and while it runs.
type buildCtx struct {
	index, parallelism int
	checkpoints        bool
	metrics            *actors.Metrics
	// wm is the task's combined watermark (math.MinInt64 before any).
	wm  int64
	now func() int64
	// err is the first error of a user function in the current call.
	err error
}

func (b *buildCtx) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *buildCtx) take() error {
	err := b.err
	b.err = nil
	return err
}

// task is a head node and the nodes chained behind it.
type task struct {
	head    *node
	members []*node
	in      map[*node]bool
	// out are the edges leaving the task, in order; each is one entry of
	// the stage's Downstream.
	out []*edge
}

// name is the task's stage name: the head's uid.
func (t *task) name() string { return t.head.uid }

// chainsBehind reports whether n chains into its upstream's task.
func chainsBehind(n *node) bool {
	return n.fusable && len(n.ins) == 1 && !n.ins[0].hash() && n.ins[0].from.source == nil
}

// validUID checks an operator id.
func validUID(id string) error {
	if id == "" {
		return fmt.Errorf("an empty id")
	}
	if len(id) > 100 {
		return fmt.Errorf("%q is longer than 100 characters", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%q has the character %q; use letters, digits, '.', '_' and '-'", id, r)
		}
	}
	return nil
}

// plan turns the graph into tasks, sources and sinks, checked.
type graphPlan struct {
	sources []*node
	sinks   []*node
	tasks   []*task
	taskOf  map[*node]*task
	// stageOf names the stage that receives an edge's records.
	order []string // stage names in data-flow order
	// dlSink writes the dead letters of the sources with a dead-letter
	// topic, each its own input of the sink: dlInput (1, 2, ...; the
	// results are input 0). nil: no source has one.
	dlSink  *node
	dlInput map[*node]int
}

// planDeadLetters picks the sink of the dead letters and checks the
// dead-letter topics.
func (g *graphPlan) planDeadLetters(job string) error {
	var marked []*node
	for _, n := range g.sinks {
		if n.sink.deadLetters {
			marked = append(marked, n)
		}
	}
	for _, n := range g.sources {
		dl := n.source.deadLetter
		if dl == "" {
			continue
		}
		if dl == n.source.spec.Topic {
			return fmt.Errorf("weir: source %s: the dead-letter topic %q is the topic it reads; name another topic in weir.DeadLetter", n.uid, dl)
		}
		if g.dlSink == nil {
			switch {
			case len(marked) > 1:
				return fmt.Errorf("weir: job %s: %d sinks are marked weir.DeadLetterSink (%s, %s); mark one", job, len(marked), marked[0].uid, marked[1].uid)
			case len(marked) == 1:
				g.dlSink = marked[0]
			case len(g.sinks) == 1:
				g.dlSink = g.sinks[0]
			default:
				return fmt.Errorf("weir: source %s has a dead-letter topic and job %s has %d sinks; mark the one that writes the dead letters with weir.DeadLetterSink()", n.uid, job, len(g.sinks))
			}
			g.dlInput = map[*node]int{}
		}
		for _, sk := range g.sinks {
			if dl == sk.sink.spec.Topic || dl == sk.sink.spec.ProgressTopic {
				return fmt.Errorf("weir: source %s: the dead-letter topic %q is the topic of sink %s; name another topic in weir.DeadLetter", n.uid, dl, sk.uid)
			}
		}
		g.dlInput[n] = len(g.dlInput) + 1
	}
	return nil
}

// deadLetterTopics returns the dead-letter topics sink n writes.
func (g *graphPlan) deadLetterTopics(n *node) []string {
	if g.dlSink != n {
		return nil
	}
	var out []string
	for _, src := range g.sources {
		if _, ok := g.dlInput[src]; ok && !slices.Contains(out, src.source.deadLetter) {
			out = append(out, src.source.deadLetter)
		}
	}
	return out
}

func (e *Env) plan() (*graphPlan, error) {
	if e.err != nil {
		return nil, e.err
	}
	g := &graphPlan{taskOf: map[*node]*task{}}
	seen := map[string]*node{}
	for _, n := range e.nodes {
		if err := validUID(n.uid); err != nil {
			return nil, fmt.Errorf("weir: UID of %s: %v", n.kind, err)
		}
		if o, dup := seen[n.uid]; dup {
			return nil, fmt.Errorf("weir: two operators have the id %q (a %s and a %s); give each its own weir.UID", n.uid, o.kind, n.kind)
		}
		seen[n.uid] = n
		if n.name == "" {
			n.name = n.uid
		}
	}
	for _, n := range e.nodes {
		switch {
		case n.source != nil:
			g.sources = append(g.sources, n)
		case n.sink != nil:
			g.sinks = append(g.sinks, n)
		case chainsBehind(n):
			t := g.taskOf[n.ins[0].from]
			t.members = append(t.members, n)
			t.in[n] = true
			g.taskOf[n] = t
		default:
			t := &task{head: n, members: []*node{n}, in: map[*node]bool{n: true}}
			g.tasks = append(g.tasks, t)
			g.taskOf[n] = t
		}
	}
	if len(g.sources) == 0 {
		return nil, fmt.Errorf("weir: job %s has no source; read a topic with weir.FromKafka", e.spec.Name)
	}
	if len(g.sinks) == 0 {
		return nil, fmt.Errorf("weir: job %s has no sink; write a stream with weir.ToKafka", e.spec.Name)
	}
	if err := g.planDeadLetters(e.spec.Name); err != nil {
		return nil, err
	}
	for _, t := range g.tasks {
		for _, m := range t.members {
			for _, p := range m.ports {
				for _, ce := range p.consumers {
					if !t.in[ce.to] {
						t.out = append(t.out, ce)
					}
				}
			}
		}
	}
	// Stages in data-flow order: by the id of their first node.
	type staged struct {
		id   int
		name string
	}
	var st []staged
	for _, n := range g.sources {
		st = append(st, staged{n.id, n.uid})
	}
	for _, n := range g.sinks {
		st = append(st, staged{n.id, n.uid})
	}
	for _, t := range g.tasks {
		if !t.head.relay { // runs inside its source's actor
			st = append(st, staged{t.head.id, t.name()})
		}
	}
	slices.SortFunc(st, func(a, b staged) int { return a.id - b.id })
	for _, s := range st {
		g.order = append(g.order, s.name)
	}
	return g, nil
}

// stageOf is the stage an edge's records go to.
func (g *graphPlan) stageOf(e *edge) string {
	if e.to.sink != nil {
		return e.to.uid
	}
	return g.taskOf[e.to].name()
}

// inputLayout is the input side of a stage that receives edges: the
// first input channel of each in-edge, and the logical input of each
// channel. A forward edge brings one channel, a hash edge one per
// upstream subtask.
func inputLayout(ins []*edge, p int) (base map[*edge]int, inputOf []int) {
	base = map[*edge]int{}
	for k, e := range ins {
		base[e] = len(inputOf)
		n := 1
		if e.hash() {
			n = p
		}
		for i := 0; i < n; i++ {
			inputOf = append(inputOf, k)
		}
	}
	return base, inputOf
}
