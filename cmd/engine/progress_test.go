package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/integration/verify"
)

func TestBarLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    progress
		want string
	}{
		{"part way", progress{read: 3000, remaining: 7000, rate: 1500},
			"[#########---------------------]  30.0% 3000/10000 records  1500/s  ETA 0:05"},
		{"no rate yet", progress{read: 0, remaining: 500, rate: 0},
			"[------------------------------]   0.0% 0/500 records  0/s  ETA --:--"},
		{"total unknown", progress{read: 42, remaining: -1, rate: 10},
			"[------------------------------]   ?.?% 42/? records  10/s  ETA --:--"},
		{"nothing to read", progress{read: 0, remaining: 0},
			"[------------------------------]   ?.?% 0/? records  0/s  ETA --:--"},
		{"all read, not ended", progress{read: 800, remaining: 0, rate: 100},
			"[##############################] 100.0% 800/800 records  100/s  ETA 0:00"},
		{"all read, rate 0", progress{read: 800, remaining: 0, rate: 0},
			"[##############################] 100.0% 800/800 records  0/s  ETA 0:00"},
		{"done", progress{read: 10000, remaining: 0, rate: 2000, elapsed: 5*time.Second + 100*time.Millisecond, done: true},
			"[##############################] 100.0% 10000 records  2000/s  done in 0:06"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := barLine(tc.p); got != tc.want {
				t.Errorf("barLine(%+v) =\n%q, want\n%q", tc.p, got, tc.want)
			}
		})
	}
}

func TestFormatETA(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0:00", -time.Second: "0:00", 59200 * time.Millisecond: "1:00", 61 * time.Second: "1:01",
		3725 * time.Second: "1:02:05", 99*time.Hour + 59*time.Minute: "99:59:00", 100 * time.Hour: "--:--",
	} {
		if got := formatETA(d); got != want {
			t.Errorf("formatETA(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestWantProgress: the bar is drawn for a bounded job on a terminal only.
func TestWantProgress(t *testing.T) {
	tty := func(io.Writer) bool { return true }
	notTTY := func(io.Writer) bool { return false }
	bounded := weir.JobSpec{Source: weir.SourceSpec{Bounded: weir.BoundLatest}}
	if !wantProgress(bounded, os.Stderr, tty) {
		t.Error("no bar for a bounded job on a terminal")
	}
	if wantProgress(bounded, os.Stderr, notTTY) {
		t.Error("a bar for a bounded job without a terminal")
	}
	if wantProgress(weir.JobSpec{}, os.Stderr, tty) {
		t.Error("a bar for an unbounded job")
	}
	// The real check: a buffer, a pipe and a file are not terminals.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, x := range []io.Writer{&bytes.Buffer{}, w, f} {
		if isTerminal(x) {
			t.Errorf("isTerminal(%T) = true", x)
		}
	}
}

// TestProgressBarKeepsBelow: output written while the bar is shown clears
// its line first and redraws it after.
func TestProgressBarKeepsBelow(t *testing.T) {
	var term, out bytes.Buffer
	b := &progressBar{term: &term}
	w := b.writer(&term)
	io.WriteString(w, "before\n")
	b.draw("[bar 1]")
	b.draw("[bar 2]")
	io.WriteString(w, "log line\n")
	io.WriteString(b.writer(&out), "status\n")
	b.finish("[bar done]")
	io.WriteString(w, "after\n")
	want := "before\n\r\x1b[K[bar 1]\r\x1b[K[bar 2]\r\x1b[Klog line\n[bar 2]\r\x1b[K[bar 2]\r\x1b[K[bar done]\nafter\n"
	if term.String() != want {
		t.Errorf("terminal got\n%q, want\n%q", term.String(), want)
	}
	if out.String() != "status\n" {
		t.Errorf("stdout got %q", out.String())
	}
}

func TestProgressSampler(t *testing.T) {
	start := time.Unix(1000, 0)
	s := &progressSampler{start: start, last: start}
	if p := s.sample(weir.Stats{RecordsIn: 0}, start.Add(time.Second), false); p.remaining != -1 {
		t.Errorf("no lag reported yet: remaining %d, want -1 (unknown)", p.remaining)
	}
	p := s.sample(weir.Stats{RecordsIn: 400, Lag: map[int32]int64{0: 100, 1: 500}}, start.Add(3*time.Second), false)
	if p.read != 400 || p.remaining != 600 || p.rate != 200 || p.elapsed != 3*time.Second {
		t.Errorf("sample = %+v, want read 400, remaining 600, rate 200/s, elapsed 3s", p)
	}
	p = s.sample(weir.Stats{RecordsIn: 1000, Lag: map[int32]int64{0: 0, 1: 0}}, start.Add(4*time.Second), true)
	if !p.done || p.rate != 250 {
		t.Errorf("done sample = %+v, want done at the whole run's rate 250/s", p)
	}
}

// openPTY opens a pseudo-terminal: the master end to read, the slave end
// to give a child as its stderr.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	return m, s
}

// TestRunProgressBarOnTerminal runs a bounded job with stderr on a
// pseudo-terminal: the bar is drawn with \r and ends full and done.
func TestRunProgressBarOnTerminal(t *testing.T) {
	brokers := startKfake(t)
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	events, err := verify.Generate(verify.GenConfig{Seed: 4, Keys: 10, Partitions: 2, Events: 2000,
		Start: 1_700_000_000_000, Step: 10 * time.Millisecond, OutOfOrderness: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify.Produce(ctx, brokers, "in", events, 2); err != nil {
		t.Fatal(err)
	}
	job := boundedJobFile(t, brokers, "")
	master, slave := openPTY(t)
	defer master.Close()
	cmd := exec.CommandContext(ctx, engineBin, "run", "--config", job, "--status-interval", "0", "--log-level", "warn")
	cmd.Stderr = slave
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	read := make(chan string, 1)
	go func() { // ends with EIO once the child has exited
		b, _ := io.ReadAll(master)
		read <- string(b)
	}()
	err = cmd.Wait()
	var term string
	select {
	case term = <-read:
	case <-ctx.Done():
		t.Fatal("the terminal was not closed")
	}
	if err != nil {
		t.Fatalf("run: %v; terminal:\n%q", err, term)
	}
	if !strings.Contains(term, "\r\x1b[K[##############################] 100.0% 2000 records ") || !strings.Contains(term, " done in ") {
		t.Errorf("no finished progress bar on the terminal:\n%q", term)
	}
	if !strings.Contains(term, "engine: job t ended; records in=2000 ") {
		t.Errorf("no end line on the terminal:\n%q", term)
	}
}
