// Command engine runs weir jobs. It is a thin binary: it parses flags and
// the job file, builds the job with the weir library and runs it; all
// engine logic lives in package weir and below.
//
// Commands:
//
//	engine run --config job.yaml [--from-savepoint DIR]   run the job described by a job file
//	           [--http ADDR]                              serving /metrics and /api/... (docs/rest.md)
//	engine validate --config job.yaml                     check the job file, brokers, topics, checkpoint.dir; write nothing
//	engine checkpoints --config job.yaml [--verify]       list the job's checkpoints and savepoints
//	engine savepoint --config job.yaml [--timeout 2m]     take a savepoint of the running job
//	engine status [--http ADDR] [--json]                  print the status of a running engine (engine run --http)
//	engine demo [--chaos]                                 run a self-checking demo on an in-process broker
//	engine help [command]                                 print help
//
// Exit codes: 0 when the command succeeded (for demo: the verdict is OK),
// 1 when it failed at run time or on an internal error, 2 for bad input
// (flags, job file, an unreachable broker, a missing source topic, a
// checkpoint.dir held by another engine, a refused --from-savepoint, a
// restore behind committed output without --allow-replay-committed, no
// running engine for engine savepoint). A panic is an internal error: main
// and every goroutine the binary starts itself (goSafe) recover it, print
// its stack and a last line "engine: internal error ...: panic: ..." and
// exit 1, never Go's 2.
//
// The package owns only the command line: flags, messages, exit codes, the
// status and progress lines, the signals of engine run, the engine.pid
// file, arming failpoints from the environment, and the wiring of the demo
// (in-process kfake broker bound to 127.0.0.1, live generator, exactly-once
// job with checkpoints in a temporary directory, the chaos workers,
// verdict). A user of `engine run`:
//
//  1. Writes a job file (docs/jobfile.md, examples/job.yaml) and creates the
//     source and sink topics. For savepoints, sets checkpoint.interval and
//     checkpoint.dir.
//  2. Runs `engine run --config job.yaml`; a bad job file (or a --config
//     that is not a regular file: a FIFO, device or directory), an
//     unreachable broker, a missing source topic or a checkpoint.dir in use
//     by another engine (named by its pid) is reported on one line with exit
//     code 2 before anything runs. With checkpoints on, the job restores the
//     newest complete checkpoint in checkpoint.dir, and run writes its pid
//     to <checkpoint.dir>/engine.pid until it exits.
//  3. Watches the status line (--status-interval: records in, results out,
//     late dropped, rate, the total lag of the source partitions and the
//     checkpoints completed) and the log on stderr.
//     With --http ADDR the engine serves the status page at http://ADDR/
//     (job graph with rates and backpressure, lag per partition, a
//     throughput chart, the checkpoint table; package internal/obs/ui),
//     the REST status under /api/ and /metrics; `engine status --http ADDR`
//     prints the same in a terminal (--json: the raw JSON), and exits 1 with
//     one line when nothing answers at ADDR.
//  4. Takes savepoints while it runs: `engine savepoint --config job.yaml`
//     (or SIGUSR1 to the engine, which prints "savepoint: DIR" on stdout)
//     prints the savepoint's chk-<N> directory; `engine checkpoints
//     --config job.yaml` lists every checkpoint with its state, read only
//     (the newest complete one verified in full, the others by metadata
//     and sizes; --verify checksums every one).
//  5. Stops the job with SIGTERM: with checkpoints on, it takes a savepoint
//     (bounded by checkpoint.timeout, at most 2 minutes), stops and prints
//     "engine: stopped with savepoint DIR", exit code 0; if that savepoint
//     fails the job is cancelled and the exit code is 1. SIGINT cancels
//     without a savepoint (exit code 0). A second SIGINT or SIGTERM kills
//     the process. A run-time failure ends the job with exit code 1 and one
//     line naming the cause.
//  6. Restarts from a given savepoint with `engine run --config job.yaml
//     --from-savepoint DIR`. Before the brokers are asked and before
//     anything is written (no checkpoint.dir, LOCK or engine.pid), the
//     directory is checked (weir's Job.CheckSavepoint): it must exist, be a
//     chk-<N> directory with complete, readable metadata, and belong to
//     this job and graph; else one line and exit code 2. The job then
//     verifies its files' checksums before any task starts: run tells a
//     corrupt one from a run-time failure by the job having no restored
//     checkpoint (Stats().RestoredFrom is 0), and exits 2. An exactly-once
//     job whose checkpoint (or, with none, whose fresh start) is older than
//     the newest epoch its progress topic shows committed is refused with
//     one line naming both, exit code 2, unless --allow-replay-committed.
//
// engine validate makes run's checks, in run's order and with its code (the
// job file, NewJob, checkpoint.dir with access(2) only, the brokers with
// weir.InspectBrokers) and prints a short summary; it creates no
// directory, file, topic or consumer group offset (docs/cli.md).
//
// Logs: --log-level and --log-format text|json (run and demo) choose the
// slog handler on stderr; the Kafka clients' own log goes through the same
// logger. Secret property values (weir.IsSecretProperty) never reach the
// output: run and validate write through weir.RedactingWriter. A bounded
// job whose stderr is a terminal gets a progress bar with the ETA
// (progress.go), kept below the log and status lines.
//
// Crash tests: with WEIR_FAILPOINT=NAME[@N] in its environment, engine run
// arms the failpoint NAME (one of weir.Failpoints: mid-epoch,
// after-snapshot-before-ack, between-data-and-marker,
// after-complete-before-commit, during-commit, after-commit): the N-th time
// (default 1) the job reaches that protocol step, the process prints
// "failpoint NAME hit (N): killing the process" on stderr and kills itself
// with SIGKILL. Running the same job file again restores the latest
// checkpoint and commits what the killed process had not; with
// source.bounded: latest it then reads to the end offsets, commits its last
// epoch and exits 0. A malformed value is one line and exit code 2.
//
// engine demo runs the window job with delivery: exactly-once, checkpoints
// every --checkpoint-interval in a temporary directory, and verifies the
// output with read_committed: every window exactly once. It serves the
// job's status page on --http (default 127.0.0.1:0, a free loopback port;
// "off" disables) and prints "status page: http://ADDR/" first; --hold
// keeps the page up after the verdict until SIGINT or SIGTERM (no page with
// --chaos). With --chaos the job runs as child processes of this binary
// (engine run on a generated job file against the demo's broker on
// 127.0.0.1), which the demo kills while
// the generator produces: each child gets a failpoint and hit count drawn
// from --seed, or a plain SIGKILL after a random delay, and every kill is
// printed ("chaos: killed at NAME@N (restart K)"). After the generator a
// last child with source.bounded: latest commits and exits, and the demo
// prints the kills, restarts and aborted result records (read_uncommitted)
// before the verdict.
//
// engine.pid is written while the job holds checkpoint.dir's lock (the
// flock on <checkpoint.dir>/LOCK; weir.WithOnLocked), so it always names
// the engine that holds the directory: of two engines started at the same
// instant on one directory exactly one runs, and the other exits 2 with
// one line naming the first one's pid. On exit the file is removed, under
// the lock, only if it still names this process. engine savepoint signals
// the pid only when that process is alive and the directory's lock is
// held, so a stale engine.pid (left by a killed engine) whose pid was
// reused is never signalled.
//
// Caveats: the job lets go of the lock between a failure and its restart,
// so another engine started then takes the directory and this one ends
// with the directory in use (exit 2). A panic on a goroutine of a library
// (Pebble's background work) exits 2, as Go does. In the chaos demo the
// throughput line's record counts add up the workers' last status lines,
// so a killed worker's last second is missing from them; the events per
// second are exact (events produced over the time to the last worker's
// exit).
package main
