package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weirstream/weir/internal/obs"
)

const statusAbout = `Reads the REST status of a running engine (one started with
engine run --http ADDR, or engine demo, which prints its address) and prints
a summary: the job's state, uptime and restarts, its operators with their
rates and backpressure, the lag per source partition and the last
checkpoints. --json prints the raw JSON of /api/job and /api/checkpoints as
one object {"job": ..., "checkpoints": [...]}.

Exit codes: 0 printed, 1 nothing answers at --http (or the answer is not
weir's status), 2 bad flags.`

const (
	// statusCheckpoints is how many of the newest checkpoints are printed.
	statusCheckpoints = 5
	// statusBodyMax bounds an /api answer read by engine status.
	statusBodyMax = 16 << 20
)

func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := flagSet("status", statusAbout)
	addr := fs.String("http", "127.0.0.1:8081", "address of the engine's status listener (engine run --http): host:port, a bare port (127.0.0.1), or the http://host:port/ the demo prints")
	asJSON := fs.Bool("json", false, "print the raw JSON of /api/job and /api/checkpoints instead of the summary")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the engine's answers")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "engine status: --timeout %v: must be positive, e.g. 5s\n", *timeout)
		return exitBadInput
	}
	a, err := statusAddr(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "engine status: --http %v\n", err)
		return exitBadInput
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	job, err := statusGet(ctx, a, "/api/job")
	var cps []byte
	if err == nil {
		cps, err = statusGet(ctx, a, "/api/checkpoints")
	}
	if err != nil {
		fmt.Fprintf(stderr, "engine status: %s\n", oneLine(err.Error()))
		return exitFailed
	}
	if *asJSON {
		out, err := json.MarshalIndent(struct {
			Job         json.RawMessage `json:"job"`
			Checkpoints json.RawMessage `json:"checkpoints"`
		}{job, cps}, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "engine status: the engine at %s answered JSON that cannot be re-encoded: %v\n", a, err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "%s\n", out)
		return exitOK
	}
	var js obs.JobStatus
	var cs []obs.CheckpointStatus
	if err := json.Unmarshal(job, &js); err != nil {
		fmt.Fprintf(stderr, "engine status: http://%s/api/job is not weir's job status: %s\n", a, oneLine(err.Error()))
		return exitFailed
	}
	if err := json.Unmarshal(cps, &cs); err != nil {
		fmt.Fprintf(stderr, "engine status: http://%s/api/checkpoints is not weir's checkpoint list: %s\n", a, oneLine(err.Error()))
		return exitFailed
	}
	var buf bytes.Buffer
	printStatus(&buf, js, cs)
	// tabwriter pads empty last cells: no trailing blanks on any line.
	for _, l := range strings.SplitAfter(buf.String(), "\n") {
		if l != "" {
			fmt.Fprintln(stdout, strings.TrimRight(l, " \n"))
		}
	}
	return exitOK
}

// statusAddr accepts what --http of engine run takes, and the
// http://host:port/ URL the demo prints.
func statusAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "http://")
	s = strings.TrimSuffix(s, "/")
	return obs.ListenAddr(s)
}

// statusGet GETs path from the engine at addr and returns the body of a
// 200 JSON answer; its errors name the address and how to start an engine
// there.
func statusGet(ctx context.Context, addr, path string) ([]byte, error) {
	url := "http://" + addr + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var nerr net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
			return nil, fmt.Errorf("no answer from %s within the --timeout (GET %s); is a weir engine with --http %s running there?", addr, path, addr)
		}
		return nil, fmt.Errorf("nothing answers at %s (%v); start the engine with --http %s (engine run --config job.yaml --http %s) or give its address with --http", addr, rootCause(err), addr, addr)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, statusBodyMax+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: read the answer: %w", url, err)
	}
	if len(body) > statusBodyMax {
		return nil, fmt.Errorf("GET %s: the answer is larger than %d bytes; is this a weir engine?", url, statusBodyMax)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		snippet := strings.TrimSpace(string(body))
		if len(snippet) > 120 {
			snippet = snippet[:120] + "..."
		}
		return nil, fmt.Errorf("GET %s: HTTP %d %s, not weir's JSON status (%q); is %s a weir engine started with --http?", url, resp.StatusCode, resp.Header.Get("Content-Type"), snippet, addr)
	}
	return body, nil
}

// rootCause is the innermost error of a failed dial, e.g. "connect:
// connection refused", without the URL the caller names already.
func rootCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return fmt.Errorf("%s: %w", op.Op, op.Err)
	}
	return err
}

// printStatus writes the summary of engine status.
func printStatus(w io.Writer, j obs.JobStatus, cps []obs.CheckpointStatus) {
	fmt.Fprintf(w, "job %s: %s, up %v, %d restarts", j.Name, j.State,
		(time.Duration(j.UptimeSeconds * float64(time.Second))).Round(time.Second), j.Restarts)
	if j.Progress >= 0 {
		fmt.Fprintf(w, ", %.0f%% done", j.Progress*100)
	}
	fmt.Fprintln(w)
	if j.LastFailure != "" {
		fmt.Fprintf(w, "last failure: %s\n", oneLine(j.LastFailure))
	}

	fmt.Fprintln(w, "\noperators:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  id\tname\tkind\tparallelism\tin/s\tout/s\tbackpressure\trecords in\trecords out")
	for _, o := range j.Operators {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%.0f\t%.0f\t%.0f%%\t%d\t%d\n",
			o.ID, o.Name, o.Kind, o.Parallelism, o.RateIn, o.RateOut, o.Backpressure*100, o.RecordsIn, o.RecordsOut)
	}
	tw.Flush()
	for _, e := range j.Edges {
		fmt.Fprintf(w, "  %s -> %s (%s)\n", e.From, e.To, e.Ship)
	}

	fmt.Fprintln(w, "\nlag per source partition:")
	if len(j.Partitions) == 0 {
		fmt.Fprintln(w, "  none yet")
	} else {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  source\ttopic\tpartition\toffset\tend\tlag")
		var total int64
		known := true
		for _, p := range j.Partitions {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%s\n", p.Source, p.Topic, p.Partition, orUnknown(p.Offset), orUnknown(p.End), orUnknown(p.Lag))
			if p.Lag < 0 {
				known = false
			}
			total += max(p.Lag, 0)
		}
		tw.Flush()
		if known {
			fmt.Fprintf(w, "  total lag: %d\n", total)
		}
	}

	fmt.Fprintf(w, "\ncheckpoints (last %d of %d):\n", min(statusCheckpoints, len(cps)), len(cps))
	if len(cps) == 0 {
		fmt.Fprintln(w, "  none yet")
		return
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  id\ttime\tduration\tsize\tstate\tsavepoint")
	for i := len(cps) - 1; i >= 0 && i >= len(cps)-statusCheckpoints; i-- {
		c := cps[i]
		state := c.State
		if c.Error != "" {
			state += " (" + oneLine(c.Error) + ")"
		}
		sp := ""
		if c.Savepoint {
			sp = "savepoint"
		}
		size := "-"
		if c.State == "completed" {
			size = humanBytes(c.SizeBytes)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%v\t%s\t%s\t%s\n", c.ID, c.Time.Local().Format("15:04:05"),
			time.Duration(c.DurationMs)*time.Millisecond, size, state, sp)
	}
	tw.Flush()
}

// orUnknown prints n, or "-" for the model's -1 (unknown).
func orUnknown(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

// humanBytes prints n bytes with a binary unit.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[i-1])
}
