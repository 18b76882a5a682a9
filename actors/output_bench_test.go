package actors

import (
	"io"
	"log/slog"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

// BenchmarkOutputBatch is the cost of one batch through an Output: emit
// it to a target (an actor that drops it) and take its credit back, the
// per-batch path the task figures (TaskStats) are counted on
// (go test -run '^$' -bench OutputBatch -benchmem ./actors/).
func BenchmarkOutputBatch(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	defer system.Shutdown()
	root := system.Root
	sink := root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	o := NewOutput([]*actor.PID{sink}, 0, sink, 4)
	data := make([]int, 1024)
	credit := &Credit{Out: 0, N: 1}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.EmitData(root, 0, data, len(data))
		o.OnCredit(root, credit)
	}
	if o.Blocked() || o.Sent() != int64(b.N)*int64(len(data)) {
		b.Fatalf("sent %d records, blocked %v", o.Sent(), o.Blocked())
	}
}
