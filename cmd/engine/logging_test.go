package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// boundedJobFile writes a job file whose source stops at the end offsets
// it finds at start (source.bounded: latest), so the job ends by itself.
func boundedJobFile(t *testing.T, brokers, extra string) string {
	t.Helper()
	path := writeJobFile(t, brokers, extra)
	body := strings.Replace(mustRead(t, path), "  start:\n", "  bounded: latest\n  start:\n", 1)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLogFormatBad(t *testing.T) {
	valid := writeJobFile(t, "127.0.0.1:9092", "")
	for _, args := range [][]string{
		{"run", "--config", valid, "--log-format", "xml"},
		{"demo", "--log-format", "xml"},
		{"demo", "--log-format", ""},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			wantBadInput(t, runEngine(t, args...), "engine "+args[0]+": --log-format", "use text or json")
		})
	}
}

// TestRunLogFormat runs a bounded job to its end with each --log-format at
// debug level: with json every log line is a JSON object with time, level
// and msg; with text they are key=value lines. The command's own last line
// (engine: job t ended; ...) is not a log record and stays as it is.
func TestRunLogFormat(t *testing.T) {
	brokers := startKfake(t)
	job := boundedJobFile(t, brokers, "")
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			r := runEngine(t, "run", "--config", job, "--status-interval", "0", "--log-level", "debug", "--log-format", format)
			if r.code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
			}
			if strings.Contains(r.stderr, "\r") {
				t.Errorf("a progress bar (\\r) on a stderr that is not a terminal:\n%q", r.stderr)
			}
			ls := lines(r.stderr)
			records := 0
			for _, l := range ls {
				if strings.HasPrefix(l, "engine: ") {
					continue
				}
				records++
				switch format {
				case "json":
					var rec map[string]any
					if err := json.Unmarshal([]byte(l), &rec); err != nil {
						t.Fatalf("log line is not JSON (%v): %s", err, l)
					}
					for _, k := range []string{"time", "level", "msg"} {
						if _, ok := rec[k]; !ok {
							t.Errorf("JSON log line without %q: %s", k, l)
						}
					}
				case "text":
					if !strings.HasPrefix(l, "time=") || !strings.Contains(l, " level=") || !strings.Contains(l, " msg=") {
						t.Errorf("text log line not key=value: %s", l)
					}
				}
			}
			if records == 0 || !strings.Contains(r.stderr, "job starting") || !strings.HasPrefix(ls[len(ls)-1], "engine: job t ended") {
				t.Errorf("%d log records, want the job's log and the end line; stderr:\n%s", records, r.stderr)
			}
		})
	}
}
