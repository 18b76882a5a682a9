package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
)

// Exit codes.
const (
	exitOK       = 0 // the command succeeded
	exitFailed   = 1 // it failed at run time, or an internal error (a panic)
	exitBadInput = 2 // bad flags, job file, brokers or topic, a refused checkpoint.dir or savepoint
)

// command is one subcommand of the binary.
type command struct {
	name    string
	summary string                                            // one line for `engine help`
	run     func(args []string, stdout, stderr io.Writer) int // returns the exit code
}

func commands() []command {
	return []command{
		{"run", "run the job described by a job file (--config job.yaml) until SIGINT/SIGTERM or failure", runCmd},
		{"validate", "check a job file, its brokers, topics and checkpoint.dir (--config job.yaml); writes nothing", validateCmd},
		{"checkpoints", "list the checkpoints and savepoints in a job's checkpoint.dir (--config job.yaml)", checkpointsCmd},
		{"savepoint", "take a savepoint of the running job (--config job.yaml) and print its directory", savepointCmd},
		{"status", "print the status of a running engine (--http ADDR of engine run): operators, lag, checkpoints", statusCmd},
		{"demo", "run a self-checking demo: in-process Kafka, live generator, window job, verdict", demoCmd},
		{"help", "print this help, or a command's help (engine help run)", helpCmd},
	}
}

func main() {
	os.Exit(engine(os.Args[1:], os.Stdout, os.Stderr))
}

// engine runs the command line args and returns the exit code. A panic
// is an internal error: exit code 1, not Go's 2 (which means bad input
// here).
func engine(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			code = internalError(stderr, r)
		}
	}()
	if len(args) == 0 {
		usage(stderr)
		return exitBadInput
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "engine: unknown command %s; run 'engine help' for the commands\n", quoteArg(args[0]))
	return exitBadInput
}

// internalError reports the panic r on w: its stack, then one last line
// naming it. It returns the exit code of an internal error.
func internalError(w io.Writer, r any) int {
	fmt.Fprintf(w, "%s", debug.Stack())
	fmt.Fprintf(w, "engine: internal error (a bug; please report it with the log above): panic: %s\n", oneLine(fmt.Sprint(r)))
	return exitFailed
}

// goSafe runs f on a new goroutine. A panic in f is an internal error: it
// is reported on stderr and the process exits with code 1 (an unrecovered
// panic would exit with 2, the code for bad input). Every goroutine the
// binary starts itself goes through goSafe.
func goSafe(f func()) {
	go func() {
		defer func() {
			if r := recover(); r != nil {
				os.Exit(internalError(os.Stderr, r))
			}
		}()
		f()
	}()
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "engine runs weir stream processing jobs: Kafka in, event-time windows, Kafka out.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: engine <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'engine <command> --help' for a command's flags.")
	fmt.Fprintln(w, "Exit codes: 0 success, 1 run-time failure or internal error, 2 bad input.")
}

func helpCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return exitOK
	}
	if len(args) > 1 {
		fmt.Fprintf(stderr, "engine help: takes at most one command, got %d arguments\n", len(args))
		return exitBadInput
	}
	for _, c := range commands() {
		if c.name == args[0] && c.name != "help" {
			return c.run([]string{"--help"}, stdout, stderr)
		}
	}
	if args[0] == "help" {
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "engine help: unknown command %s; run 'engine help' for the commands\n", quoteArg(args[0]))
	return exitBadInput
}

// flagSet returns a FlagSet for a command whose errors are returned, not
// printed: parseFlags prints them on one line.
func flagSet(name, about string) *flag.FlagSet {
	fs := flag.NewFlagSet("engine "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: engine %s [flags]\n\n%s\n\nFlags:\n", name, about)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs. On -h/--help it prints the command's help
// to stdout; on an error it prints one line to stderr. done says the
// command must return code.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, done bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(io.Discard)
		return exitOK, true
	case err != nil:
		fmt.Fprintf(stderr, "%s: %s; run '%s --help' for the flags\n", fs.Name(), oneLine(err.Error()), fs.Name())
		return exitBadInput, true
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "%s: unexpected argument %s; flags only, run '%s --help'\n", fs.Name(), quoteArg(fs.Arg(0)), fs.Name())
		return exitBadInput, true
	}
	return 0, false
}

// logLevel parses a --log-level value.
func logLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %s: use debug, info, warn or error", quoteArg(s))
}

// oneLine joins the lines of s so that a message stays on one line.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r\n", " ")
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "\r", " ")
}

// quoteArg quotes a command-line argument for a message, cut short.
func quoteArg(s string) string {
	const max = 60
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "..."
	}
	return fmt.Sprintf("%q", s)
}
