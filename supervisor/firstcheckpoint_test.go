package supervisor

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/actors"
)

// trace records, in order, what the fake tasks of a job saw.
type trace struct {
	mu     sync.Mutex
	events []string
	first  chan struct{} // closed at the first trigger a task gets
	once   sync.Once
}

func (t *trace) add(e string) {
	t.mu.Lock()
	t.events = append(t.events, e)
	t.mu.Unlock()
}

// fakeTask notes the checkpoints triggered on it and the StartOutput it
// gets. A sink or a source reports ready; with hold set, only once release
// is closed, or after holdFor (bounded), as a slow start (a sink fencing
// and replaying, a source's metadata requests) would.
type fakeTask struct {
	name    string
	sink    bool
	hold    bool
	tr      *trace
	release <-chan struct{}
	holdFor time.Duration
}

func (f *fakeTask) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		if f.hold {
			select {
			case <-f.release:
			case <-time.After(f.holdFor):
			}
		}
		f.tr.add("ready " + f.name)
		if f.sink {
			ctx.Send(ctx.Parent(), &actors.SinkReady{Task: f.name})
		} else {
			ctx.Send(ctx.Parent(), &actors.SourceReady{Task: f.name})
		}
	case *actors.TriggerCheckpoint:
		f.tr.add("trigger " + f.name)
		f.tr.once.Do(func() { close(f.tr.first) })
	case *actors.StartOutput:
		f.tr.add("start " + f.name)
		f.tr.once.Do(func() { close(f.tr.first) })
	}
}

// runUntilFirst runs plan until tr's first event (a trigger or a release),
// failing with what after a minute, and stops it.
func runUntilFirst(t *testing.T, system *actor.ActorSystem, plan Plan, tr *trace, what string) {
	t.Helper()
	h, err := Start(system, plan, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-tr.first:
	case <-time.After(time.Minute):
		t.Fatalf("%s within a minute", what)
	}
	h.Stop(errors.New("test over"))
	select {
	case <-h.Done():
	case <-time.After(time.Minute):
		t.Fatal("the job did not stop within a minute")
	}
}

// TestFirstCheckpointWaitsForSinks: no checkpoint is triggered while a sink
// still starts (its barrier would wait behind the start-up and the
// checkpoint would count it); the first comes once every sink is ready.
// The sink holds its start until a task sees a trigger (what the old
// supervisor did after one interval), or at most 30 intervals.
func TestFirstCheckpointWaitsForSinks(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	tr := &trace{first: make(chan struct{})}
	const interval = 10 * time.Millisecond
	task := func(name string, sink bool) func(int, []*actor.PID) actor.Producer {
		return func(i int, _ []*actor.PID) actor.Producer {
			return func() actor.Actor {
				return &fakeTask{name: TaskName(name, i), sink: sink, hold: sink, tr: tr, release: tr.first, holdFor: 30 * interval}
			}
		}
	}
	plan := Plan{Name: "first", Stages: []Stage{
		{Name: "source", Parallelism: 1, Source: true, Producer: task("source", false)},
		{Name: "sink", Parallelism: 1, Sink: true, Producer: task("sink", true)},
	}, Checkpoint: &CheckpointPlan{Interval: interval, Timeout: time.Minute, MaxConcurrent: 1,
		FS: vfs.NewMem(), Root: "/ck", JobName: "first", Fingerprint: "fp", Retain: 1}}
	runUntilFirst(t, system, plan, tr, "no checkpoint was triggered")
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.events) < 3 || !slices.Contains(tr.events[:2], "ready sink-0") || !slices.Contains(tr.events[:2], "ready source-0") {
		t.Fatalf("events %q: want the sink and the source ready before the first trigger", tr.events)
	}
}

// TestSourcesReadOnceAllStarted: no source is released (StartOutput) while
// another source subtask still starts, even with every sink ready: a
// partition created meanwhile would be read by its owner from the start
// position rather than discovered. Source subtask 1 holds its start until a
// task gets StartOutput (what the old supervisor sent once the sinks were
// ready), or at most a second.
func TestSourcesReadOnceAllStarted(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	tr := &trace{first: make(chan struct{})}
	plan := Plan{Name: "release", Stages: []Stage{
		{Name: "source", Parallelism: 2, Source: true, Producer: func(i int, _ []*actor.PID) actor.Producer {
			return func() actor.Actor {
				return &fakeTask{name: TaskName("source", i), hold: i == 1, tr: tr, release: tr.first, holdFor: time.Second}
			}
		}},
		{Name: "sink", Parallelism: 2, Sink: true, Producer: func(i int, _ []*actor.PID) actor.Producer {
			return func() actor.Actor { return &fakeTask{name: TaskName("sink", i), sink: true, tr: tr} }
		}},
	}}
	runUntilFirst(t, system, plan, tr, "no source was released")
	tr.mu.Lock()
	defer tr.mu.Unlock()
	ready := slices.Index(tr.events, "ready source-1")
	start := slices.IndexFunc(tr.events, func(e string) bool { return strings.HasPrefix(e, "start ") })
	if ready < 0 || start < ready {
		t.Fatalf("events %q: want source-1 ready before any source is released", tr.events)
	}
}
