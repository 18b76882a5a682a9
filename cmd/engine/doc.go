// Command engine runs weir jobs. It is a thin binary: it parses flags and
// the job file, builds the job with the weir library and runs it; all
// engine logic lives in package weir and below.
//
// Commands:
//
//	engine run --config job.yaml   run the job described by a job file
//	engine demo                    run a self-checking demo on an in-process broker
//	engine help [command]          print help
//
// Exit codes: 0 when the command succeeded (for demo: the verdict is OK),
// 1 when it failed at run time, 2 for bad input (flags, job file, an
// unreachable broker or a missing source topic).
//
// The package owns only the command line: flags, messages, exit codes, the
// status and progress lines, and the wiring of the demo (in-process kfake
// broker bound to 127.0.0.1, live generator, verdict). A user of `engine run`:
//
//  1. Writes a job file (docs/jobfile.md, examples/job.yaml) and creates the
//     source and sink topics.
//  2. Runs `engine run --config job.yaml`; a bad job file, an unreachable
//     broker or a missing source topic is reported on one line with exit
//     code 2 before anything runs.
//  3. Watches the status line (--status-interval) and the log on stderr.
//  4. Stops the job with SIGINT or SIGTERM; a run-time failure ends it with
//     exit code 1 and one line naming the cause.
package main
