// Command engine runs weir jobs. It is a thin binary: it parses flags and
// the job file, builds the job with the weir library and runs it; all
// engine logic lives in package weir and below.
//
// Commands:
//
//	engine run --config job.yaml [--from-savepoint DIR]   run the job described by a job file
//	engine checkpoints --config job.yaml [--verify]       list the job's checkpoints and savepoints
//	engine savepoint --config job.yaml [--timeout 2m]     take a savepoint of the running job
//	engine demo [--chaos]                                 run a self-checking demo on an in-process broker
//	engine help [command]                                 print help
//
// Exit codes: 0 when the command succeeded (for demo: the verdict is OK),
// 1 when it failed at run time, 2 for bad input (flags, job file, an
// unreachable broker, a missing source topic, a checkpoint.dir held by
// another engine, a refused --from-savepoint, no running engine for
// engine savepoint).
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
//  2. Runs `engine run --config job.yaml`; a bad job file, an unreachable
//     broker, a missing source topic or a checkpoint.dir in use by another
//     engine is reported on one line with exit code 2 before anything runs.
//     With checkpoints on, the job restores the newest complete checkpoint
//     in checkpoint.dir, and run writes its pid to
//     <checkpoint.dir>/engine.pid until it exits.
//  3. Watches the status line (--status-interval: records in, results out,
//     late dropped, rate, the total lag of the source partitions and the
//     checkpoints completed) and the log on stderr.
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
//     --from-savepoint DIR`. The directory is checked to exist before
//     anything runs; the job then refuses one that is not a chk-<N>
//     directory, belongs to another job or graph, or is corrupt, before any
//     task starts: run tells that from a run-time failure by the job having
//     no restored checkpoint (Stats().RestoredFrom is 0), and exits 2.
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
// output with read_committed: every window exactly once. With --chaos the
// job runs as child processes of this binary (engine run on a generated job
// file against the demo's broker on 127.0.0.1), which the demo kills while
// the generator produces: each child gets a failpoint and hit count drawn
// from --seed, or a plain SIGKILL after a random delay, and every kill is
// printed ("chaos: killed at NAME@N (restart K)"). After the generator a
// last child with source.bounded: latest commits and exits, and the demo
// prints the kills, restarts and aborted result records (read_uncommitted)
// before the verdict.
//
// Caveats: engine.pid is written only after checking that no engine holds
// checkpoint.dir's lock, and removed on exit only if it still names this
// process; two engines started at the same instant on one directory can
// still race between that check and the job's own lock (the loser fails
// with the checkpoint.dir in use, exit 2, but may have replaced the
// winner's engine.pid). engine savepoint signals the pid only when that
// process is alive and the directory's lock is held, so a stale engine.pid
// whose pid was reused is never signalled. In the chaos demo the
// throughput line's record counts add up the workers' last status lines, so
// a killed worker's last second is missing from them; the events per second
// are exact (events produced over the time to the last worker's exit).
package main
