package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/weirstream/weir"
)

const validateAbout = `Checks a job file (docs/jobfile.md) as engine run would before it starts,
and writes nothing: the file is parsed and its values checked; the brokers
are asked (with the file's kafka properties, so security settings are
tested) for the metadata of the source topic, which must exist, and of the
sink and progress topics; checkpoint.dir, with checkpoints on, must be a
directory this user can write, or creatable. No directory, file, topic or
consumer group offset is created, and no checkpoint is read or taken.

On success a short summary goes to stdout: the job, the source topic and
its partitions, the sink, the checkpoints. Otherwise one line on stderr
names what is wrong and how to fix it, and the exit code is 2.

Exit codes: 0 the job file and the brokers are fine, 2 bad input (the job
file, the brokers, a topic, checkpoint.dir), 1 an internal error.`

func validateCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("validate", validateAbout)
	config := fs.String("config", "", "the job file (YAML) to check; required")
	checkTimeout := fs.Duration("check-timeout", 10*time.Second, "how long to wait for the brokers to answer before giving up")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	stdout, stderr = weir.RedactingWriter(stdout), weir.RedactingWriter(stderr)
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "engine validate: "+format+"\n", a...)
		return exitBadInput
	}
	switch {
	case *config == "":
		return bad("--config is required: give the job file, e.g. --config job.yaml")
	case *checkTimeout <= 0:
		return bad("--check-timeout %v: must be positive, e.g. 10s", *checkTimeout)
	}

	// The same steps as engine run, in the same order, short of running.
	spec, err := weir.LoadJobFile(*config)
	if err != nil {
		return bad("%s", oneLine(err.Error()))
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	job, err := weir.NewJob(spec, weir.WithLogger(quiet))
	if err != nil {
		return bad("%s", oneLine(err.Error()))
	}
	spec = job.Spec()
	checkpoints := spec.Checkpoint.Interval > 0
	var dirNote string
	if checkpoints {
		root, err := checkpointRoot(spec)
		if err != nil {
			return bad("%s", oneLine(err.Error()))
		}
		if err := checkDirUsable(root); err != nil {
			return bad("checkpoint.dir %s: %s; fix its permissions or use another directory", root, oneLine(err.Error()))
		}
		if dirNote, err = describeCheckpointDir(root); err != nil {
			return bad("checkpoint.dir %s: %s", root, oneLine(err.Error()))
		}
	}

	ctx, stopped := signalContext()
	defer stopped.release()
	report, err := weir.InspectBrokers(ctx, spec, *checkTimeout)
	if err != nil {
		if sig := stopped.signal(); sig != "" {
			fmt.Fprintf(stderr, "engine validate: stopped by %s\n", sig)
			return exitOK
		}
		return bad("%s", oneLine(err.Error()))
	}
	for _, l := range validateSummary(spec, report, dirNote) {
		fmt.Fprintln(stdout, l)
	}
	return exitOK
}

// describeCheckpointDir says what checkpoint.dir root holds, reading only:
// "missing: created at start", "empty", or the checkpoints it holds and
// whether another engine runs on it.
func describeCheckpointDir(root string) (string, error) {
	entries, err := os.ReadDir(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "does not exist yet; run creates it", nil
	case err != nil:
		return "", errors.New(pathErrCause(err))
	}
	n := 0
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "chk-") {
			n++
		}
	}
	note := "no checkpoint yet"
	if n > 0 {
		note = fmt.Sprintf("%d checkpoint directories; run restores the newest complete one", n)
	}
	held, err := lockHeld(root)
	switch {
	case err != nil:
		return "", err
	case held:
		note += "; in use by a running engine (run would refuse it until that one stops)"
	}
	return note, nil
}

// validateSummary is validate's output: a few lines, secrets never shown
// (only names from spec; no properties).
func validateSummary(spec weir.JobSpec, r weir.BrokerReport, dirNote string) []string {
	plural := func(n int, what string) string {
		if n == 1 {
			return "1 " + what
		}
		return fmt.Sprintf("%d %ss", n, what)
	}
	ls := []string{fmt.Sprintf("ok: job %s (kind %s, parallelism %d, delivery %s) on %s (%s)",
		spec.Name, spec.Kind, spec.Parallelism, spec.Delivery, spec.Brokers, plural(r.Brokers, "broker"))}
	parts := make([]string, len(r.SourcePartitions))
	for i, p := range r.SourcePartitions {
		parts[i] = fmt.Sprint(p)
	}
	src := fmt.Sprintf("source: %s, %s [%s], start %s", spec.Source.Topic, plural(len(r.SourcePartitions), "partition"),
		strings.Join(parts, " "), spec.Source.Start.Mode)
	if spec.Source.Bounded != weir.Unbounded {
		src += ", bounded " + string(spec.Source.Bounded)
	}
	ls = append(ls, src)
	sink := "sink: " + spec.Sink.Topic + ", "
	if r.SinkPartitions > 0 {
		sink += plural(r.SinkPartitions, "partition")
	} else {
		sink += "does not exist yet: the brokers create it on the first write only if they allow it (auto.create.topics.enable); else create it"
	}
	if spec.Delivery == weir.ExactlyOnce {
		if r.ProgressPartitions > 0 {
			sink += "; progress topic " + spec.Sink.ProgressTopic + " exists"
		} else {
			sink += "; progress topic " + spec.Sink.ProgressTopic + " is created (compacted) at start"
		}
	}
	ls = append(ls, sink)
	if spec.Checkpoint.Interval > 0 {
		ls = append(ls, fmt.Sprintf("checkpoints: every %v (%s) in %s: %s", spec.Checkpoint.Interval, spec.Checkpoint.Mode,
			spec.Checkpoint.Dir, dirNote))
	} else {
		ls = append(ls, "checkpoints: off (checkpoint.interval not set)")
	}
	return ls
}
