package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weirstream/weir"
)

// progressEvery is how often the progress bar is redrawn.
const progressEvery = 250 * time.Millisecond

// progressWidth is the width of the bar itself, in characters.
const progressWidth = 30

// progress is what the bar shows of a bounded job at one moment.
type progress struct {
	read      int64         // records read so far (Stats.RecordsIn)
	remaining int64         // records left to read (the sum of the partitions' lag); < 0: not known yet
	rate      float64       // records read per second, recently
	elapsed   time.Duration // since the job started
	done      bool          // the job has ended
}

// barLine formats p as the bar's line (without \r):
//
//	[#########---------------------]  30.0% 3000/10000 records  1500/s  ETA 0:05
//
// The total is read + remaining; while it is not known the bar is empty and
// the line says so. The ETA is remaining / rate, "--:--" at rate 0 with
// records left. Once
// done it is full with the time taken.
func barLine(p progress) string {
	total := p.read + p.remaining
	switch {
	case p.done:
		return fmt.Sprintf("[%s] 100.0%% %d records  %s  done in %s",
			strings.Repeat("#", progressWidth), p.read, formatRate(p.rate), formatETA(p.elapsed))
	case p.remaining < 0 || total <= 0:
		return fmt.Sprintf("[%s]   ?.?%% %d/? records  %s  ETA --:--",
			strings.Repeat("-", progressWidth), p.read, formatRate(p.rate))
	}
	frac := float64(p.read) / float64(total)
	filled := int(frac * progressWidth)
	eta := "--:--"
	switch {
	case p.remaining == 0:
		eta = formatETA(0)
	case p.rate > 0:
		eta = formatETA(time.Duration(float64(p.remaining) / p.rate * float64(time.Second)))
	}
	return fmt.Sprintf("[%s%s] %5.1f%% %d/%d records  %s  ETA %s",
		strings.Repeat("#", filled), strings.Repeat("-", progressWidth-filled), frac*100, p.read, total, formatRate(p.rate), eta)
}

// formatRate formats records per second.
func formatRate(r float64) string {
	return fmt.Sprintf("%.0f/s", max(r, 0))
}

// formatETA formats a duration as m:ss, or h:mm:ss from an hour on,
// rounded up to the second; "--:--" from 100 hours on.
func formatETA(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64((d + time.Second - 1) / time.Second)
	if s >= 100*3600 {
		return "--:--"
	}
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// isTerminal reports whether w is a terminal (an *os.File on a tty).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// stderrIsTerminal is the check run makes of its stderr.
var stderrIsTerminal = isTerminal

// progressInterval is the bar's redraw interval; 0 (never) without a bar.
func progressInterval(show bool) time.Duration {
	if !show {
		return 0
	}
	return progressEvery
}

// wantProgress says whether run draws the progress bar: for a bounded
// job, when stderr is a terminal (isTTY, injectable for tests).
func wantProgress(spec weir.JobSpec, stderr io.Writer, isTTY func(io.Writer) bool) bool {
	return spec.Source.Bounded != weir.Unbounded && isTTY(stderr)
}

// progressBar draws a line redrawn in place (\r) on a terminal, and keeps
// it at the bottom: a write through one of its writers (the log, the
// status lines) first clears the line, then redraws it.
type progressBar struct {
	mu   sync.Mutex
	term io.Writer // stderr, the terminal
	line string    // the bar as last drawn; "" when none
}

// draw draws line in place of the bar.
func (b *progressBar) draw(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.line = line
	_, _ = io.WriteString(b.term, "\r\x1b[K"+line)
}

// finish draws line and ends it: later output goes below it.
func (b *progressBar) finish(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, _ = io.WriteString(b.term, "\r\x1b[K"+line+"\n")
	b.line = ""
}

// writer returns a writer to w that clears the bar before each write and
// redraws it after.
func (b *progressBar) writer(w io.Writer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.line != "" {
			_, _ = io.WriteString(b.term, "\r\x1b[K")
		}
		n, err := w.Write(p)
		if b.line != "" {
			_, _ = io.WriteString(b.term, b.line)
		}
		return n, err
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// progressSampler turns successive job.Stats into progress: the rate is
// taken over the last sample interval.
type progressSampler struct {
	start    time.Time
	last     time.Time
	lastRead int64
	rate     float64
}

func (s *progressSampler) sample(st weir.Stats, now time.Time, done bool) progress {
	if d := now.Sub(s.last); d > 0 {
		s.rate = float64(st.RecordsIn-s.lastRead) / d.Seconds()
	}
	if done {
		s.rate = float64(st.RecordsIn) / max(now.Sub(s.start).Seconds(), 1e-9)
	}
	s.last, s.lastRead = now, st.RecordsIn
	remaining := int64(-1)
	if len(st.Lag) > 0 {
		remaining = totalLag(st.Lag)
	}
	return progress{read: st.RecordsIn, remaining: remaining, rate: s.rate, elapsed: now.Sub(s.start), done: done}
}
