// Package weir is a stream processing engine: Flink's DataStream model
// (typed streams, keyed state, timers, event time, checkpoints,
// exactly-once Kafka sinks) as a Go library and one small binary. Every
// operator runs as a protoactor-go actor; records travel between actors in
// batches under credit-based flow control.
//
// A program builds a job as a graph of typed streams on an Env and runs it:
//
//	env := weir.NewEnv("fraud", weir.Brokers("127.0.0.1:9092"),
//		weir.Checkpoints(time.Second, "/var/lib/fraud"), weir.Guarantee(weir.ExactlyOnce))
//	tx := weir.FromKafka(env, "payments", weir.JSON[Payment](), weir.FromEarliest(),
//		weir.EventTime(func(p Payment) int64 { return p.TS }, 500*time.Millisecond))
//	big := weir.Filter(tx, func(p Payment) bool { return p.Amount > 0 })
//	alerts := weir.Process(weir.KeyBy(big, func(p Payment) string { return p.Account }),
//		&FraudRule{}, weir.UID("fraud-rule"))
//	weir.ToKafka(alerts, "alerts", weir.JSON[Alert]())
//	err := env.Run(ctx)
//
// The pieces:
//
//  1. Sources and sinks: FromKafka reads a topic with a Format (JSON,
//     KeyedJSON, String, Raw, or your own), from any Flink start position
//     (FromEarliest, FromLatest, FromTimestamp, FromGroupOffsets,
//     FromOffsets), optionally bounded (BoundedAtLatest) and with event time
//     (EventTime, IdleTimeout). ToKafka writes a stream; a job has any
//     number of each.
//  2. Operators: Map, Filter, FlatMap and Transform (stateless, chained into
//     the task before them, as Flink chains operators), KeyBy, Process (a
//     KeyedProcessFunction with ValueState, MapState, ListState, TTL and
//     event- and processing-time timers), Union, and side outputs
//     (OutputTag, SideOutput).
//  3. Operator ids: UID, SourceUID and SinkUID name an operator's state in
//     checkpoints and savepoints, so a changed program still restores; a
//     checkpoint holding state of an operator the program lacks is refused
//     unless AllowNonRestoredState.
//  4. Running: Env.Run builds and runs the job; Env.Build returns the Job
//     for Stats, Savepoint, StopWithSavepoint and Drain while it runs.
//     Failures restart the job from the latest complete checkpoint as the
//     Restart strategy says.
//
// docs/api.md explains the model for Flink users. The job file of `engine
// run` (JobSpec, LoadJobFile, NewJob) describes two built-in graphs, the
// tumbling window job and the passthrough job, which are built with this
// same API. The engine binary, cmd/engine, is a thin layer over this
// package.
package weir
