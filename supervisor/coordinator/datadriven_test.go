package coordinator

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// epoch is t=0 in the scripts; times are written as durations after it.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// TestDataDriven runs the golden scripts in testdata/. Commands:
//
//	new interval=1s timeout=10s min-pause=0 max-concurrent=1 tolerable=0 tasks=(a,b) [last=5] [t=0]
//	tick t=1s
//	trigger-now t=1s [savepoint=true]
//	ack t=1s task=a ckpt=1 handle=h1
//	decline t=1s task=a ckpt=1 reason=disk-full
//	written t=1s ckpt=1
//	write-failed t=1s ckpt=1 err=enospc
//	suspend t=1s reason=restart
//	resume t=1s
//	stop t=1s
//	state
//
// Every input command prints the actions it returned, one per line, or
// "(no actions)". state prints the accessors.
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var c *Core
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd == "new" {
				cfg, last, now := parseNew(t, d)
				var err error
				c, err = New(cfg, last, now)
				if err != nil {
					c = nil
					return "error: " + err.Error()
				}
				return "ok"
			}
			if c == nil {
				d.Fatalf(t, "%s before a successful new", d.Cmd)
			}
			var acts []Action
			switch d.Cmd {
			case "tick":
				acts = c.Tick(argTime(t, d))
			case "trigger-now":
				var sp bool
				d.MaybeScanArgs(t, "savepoint", &sp)
				acts = c.TriggerNow(argTime(t, d), sp)
			case "ack":
				acts = c.Ack(argTime(t, d), argTask(t, d), argCkpt(t, d), argString(t, d, "handle"))
			case "decline":
				acts = c.Decline(argTime(t, d), argTask(t, d), argCkpt(t, d), argString(t, d, "reason"))
			case "written":
				acts = c.MetadataWritten(argTime(t, d), argCkpt(t, d))
			case "write-failed":
				acts = c.MetadataFailed(argTime(t, d), argCkpt(t, d), argString(t, d, "err"))
			case "suspend":
				acts = c.Suspend(argTime(t, d), argString(t, d, "reason"))
			case "resume":
				acts = c.Resume(argTime(t, d))
			case "stop":
				acts = c.Stop(argTime(t, d))
			case "state":
				return stateString(c)
			default:
				d.Fatalf(t, "unknown command %q", d.Cmd)
			}
			return actionsString(acts)
		})
	})
}

func parseNew(t *testing.T, d *datadriven.TestData) (Config, CheckpointID, time.Time) {
	var cfg Config
	cfg.Interval = argDuration(t, d, "interval")
	cfg.Timeout = argDuration(t, d, "timeout")
	cfg.MinPause = argDuration(t, d, "min-pause")
	d.ScanArgs(t, "max-concurrent", &cfg.MaxConcurrent)
	d.ScanArgs(t, "tolerable", &cfg.TolerableFailures)
	if arg, ok := d.Arg("tasks"); ok {
		for _, v := range arg.Vals {
			cfg.Tasks = append(cfg.Tasks, TaskID(v))
		}
	}
	var last uint64
	d.MaybeScanArgs(t, "last", &last)
	now := epoch
	if d.HasArg("t") {
		now = argTime(t, d)
	}
	return cfg, CheckpointID(last), now
}

func argDuration(t *testing.T, d *datadriven.TestData, key string) time.Duration {
	s := argString(t, d, key)
	v, err := time.ParseDuration(s)
	if err != nil {
		d.Fatalf(t, "%s=%s: %v", key, s, err)
	}
	return v
}

func argTime(t *testing.T, d *datadriven.TestData) time.Time {
	return epoch.Add(argDuration(t, d, "t"))
}

func argTask(t *testing.T, d *datadriven.TestData) TaskID {
	return TaskID(argString(t, d, "task"))
}

func argCkpt(t *testing.T, d *datadriven.TestData) CheckpointID {
	var id uint64
	d.ScanArgs(t, "ckpt", &id)
	return CheckpointID(id)
}

func argString(t *testing.T, d *datadriven.TestData, key string) string {
	var s string
	d.ScanArgs(t, key, &s)
	return s
}

func actionsString(acts []Action) string {
	if len(acts) == 0 {
		return "(no actions)"
	}
	var b strings.Builder
	for _, a := range acts {
		b.WriteString(a.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func stateString(c *Core) string {
	at := func(x time.Time) string {
		if x.IsZero() {
			return "never"
		}
		return x.Sub(epoch).String()
	}
	return fmt.Sprintf("last-completed=%d pending=%v failures=%d suspended=%t\nnext-trigger-at=%s next-tick-at=%s\n",
		c.LastCompleted(), c.Pending(), c.Failures(), c.Suspended(), at(c.NextTriggerAt()), at(c.NextTickAt()))
}
