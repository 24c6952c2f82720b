package main

import (
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows how far a long operation is, with rate and ETA, on stderr
// when stderr is a terminal and --quiet is not set. Otherwise every method
// is a no-op, so nothing decorative reaches a pipe or a log file. It is safe
// for concurrent use (the core may report from several goroutines).
type progress struct {
	mu  sync.Mutex
	bar *progressbar.ProgressBar
	// phaseName and phaseTotal are the current phase's description and
	// total (phase).
	phaseName  string
	phaseTotal int64
}

// stderrIsTerminal reports whether the CLI's stderr is a terminal.
func (a *app) stderrIsTerminal() bool {
	f, ok := a.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newProgress starts a progress bar counting bytes (or items when bytes is
// false). total may be -1 when unknown (a spinner with a rate) and set
// later with setTotal.
func (a *app) newProgress(description string, total int64, bytes bool) *progress {
	if a.quiet || !a.stderrIsTerminal() {
		return &progress{}
	}
	opts := a.barOptions(description)
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true), progressbar.OptionUseIECUnits(true))
	} else {
		opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString("files"))
	}
	return &progress{bar: progressbar.NewOptions64(total, opts...)}
}

// barOptions are the options every progress bar shares: drawn on stderr,
// throttled, with count, ETA and elapsed time, cleared when done.
func (a *app) barOptions(description string) []progressbar.Option {
	return []progressbar.Option{
		progressbar.OptionSetWriter(a.stderr),
		progressbar.OptionSetDescription(description),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionFullWidth(),
		// No spinner goroutine: the bar redraws when the core reports
		// (several times a second), and nothing draws after done.
		progressbar.OptionSetSpinnerChangeInterval(0),
	}
}

// newPhaseProgress starts a bar counting items for an operation that goes
// through phases, each with its own count and total (gc): phase switches it
// to the next one. On a terminal only, like newProgress.
func (a *app) newPhaseProgress(description string) *progress {
	if a.quiet || !a.stderrIsTerminal() {
		return &progress{}
	}
	bar := progressbar.NewOptions64(-1, a.barOptions(description)...)
	_ = bar.RenderBlank()
	return &progress{bar: bar}
}

// phase starts a new phase named description, counting from 0 towards
// total (unknown when total <= 0), with its own rate and ETA. Calling it
// again with the current description changes only the total.
func (p *progress) phase(description string, total int64) {
	if p == nil || p.bar == nil {
		return
	}
	if total <= 0 {
		total = -1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if description == p.phaseName && total == p.phaseTotal {
		return
	}
	p.phaseTotal = total
	if description == p.phaseName {
		p.bar.ChangeMax64(total)
		return
	}
	p.phaseName = description
	p.bar.Reset()
	p.bar.Describe(description)
	p.bar.ChangeMax64(total)
	// Drawn now, not after the throttle: a phase may report nothing more
	// for seconds (a value-log rewrite).
	_ = p.bar.RenderBlank()
}

// setTotal sets or changes the expected total.
func (p *progress) setTotal(n int64) {
	if p == nil || p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n != p.bar.GetMax64() {
		p.bar.ChangeMax64(n)
	}
}

// set reports the amount done so far.
func (p *progress) set(n int64) {
	if p == nil || p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.bar.Set64(n)
}

// add reports n more done.
func (p *progress) add(n int64) {
	if p == nil || p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.bar.Add64(n)
}

// done removes the bar from the terminal, so the result printed next stands
// alone.
func (p *progress) done() {
	if p == nil || p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.bar.Exit()
	_ = p.bar.Clear()
}
