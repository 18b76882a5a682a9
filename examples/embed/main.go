// Command embed shows weir used as a library inside a Go program: it builds
// the window job with the Go API (the same API `engine run` builds from its
// job file), runs it until interrupted, and prints the job's counters.
//
//	go run ./examples/embed -brokers 127.0.0.1:9092 -in clicks -out clicks-per-user
//
// Send SIGINT to stop with drain: the sources read up to the current end of
// their partitions, every open window fires, and the program exits 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/weirstream/weir"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka bootstrap servers")
	in := flag.String("in", "clicks", "topic to read JSON events from")
	out := flag.String("out", "clicks-per-user", "topic to write window results to")
	flag.Parse()

	job, err := weir.NewJob(weir.JobSpec{
		Name:           "clicks-per-user",
		Brokers:        *brokers,
		Source:         weir.SourceSpec{Topic: *in, Start: weir.StartSpec{Mode: weir.StartEarliest}},
		KeyField:       "user",
		TimestampField: "ts",
		Window:         weir.WindowSpec{Size: 10 * time.Second, OutOfOrderness: 2 * time.Second},
		Aggregate:      weir.AggregateSpec{ValueField: "amount"},
		Sink:           weir.SinkSpec{Topic: *out},
		Parallelism:    2,
	}, weir.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	if err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	if err := weir.CheckBrokers(ctx, job.Spec(), 10*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(2)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	go func() {
		<-sig
		job.Drain()
	}()
	if err := job.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
	st := job.Stats()
	fmt.Printf("records in %d, results out %d, late %d\n", st.RecordsIn, st.ResultsOut, st.LateDropped)
}
