// Package verify generates the input of weir's reference job and checks its
// output: the event generator, the expected results, the comparison that
// gives the verdict, and the Kafka I/O to produce the input and read the
// output back. It is used by `engine demo`, by the integration tests against
// a real Kafka broker, by the crash tests and by the benchmarks.
//
// The reference job reads JSON events {"user":"u17","ts":...,"amount":17,"seq":42},
// keys them by user, assigns them to event-time tumbling windows
// [start, start+size) with start = ts - ts mod size, and writes one JSON
// result {"key":...,"window_start":...,"window_end":...,"count":...,"sum":...}
// per key and window, with the key as the record key.
//
// The package owns the event and result wire formats as the verifier sees
// them, the generator (deterministic from a seed, out of order within a
// bound per partition), the event-to-partition mapping, and the verdict. It
// does not run the job, create topics or start brokers.
//
// A caller:
//
//  1. Creates the input topic with at least GenConfig.Partitions partitions
//     and the output topic (the package does not create topics).
//  2. Generates the input with Generate (or a Generator, for live
//     generation at a rate), keeping GenConfig.OutOfOrderness at or below
//     the job's out-of-orderness bound, so that no event is late.
//  3. Writes it with Produce, which puts each event on Partition(e,
//     partitions) in order; or, with a Generator, produces batches of Next
//     itself to the same partitions.
//  4. Runs the job until it has closed every window: Expected counts every
//     window, so the input must end with events (or idleness) that move
//     the watermark past the last window, or the caller keeps only the
//     closed windows with ExpectedBefore.
//  5. Reads the output with ReadResults; read_committed for exactly-once
//     output. Every wait is bounded by the context (DefaultTimeout without
//     a deadline).
//  6. Checks it with Compare (exactly-once) or CompareLatest (at-least-once
//     after crashes), and prints the Verdict; Report adds examples. The
//     output of a session-window job with allowed lateness and a late
//     topic is checked with CheckSessions instead, which holds for any
//     single execution whatever came late.
package verify
