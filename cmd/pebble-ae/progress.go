package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress is a one-line progress indicator on a terminal-ish writer. It
// redraws at most every 100ms.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	last  time.Time
	shown bool
}

func newProgress(w io.Writer, label string) *progress { return &progress{w: w, label: label} }

func (p *progress) set(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "\r%s: %-60s", p.label, msg)
	p.shown = true
}

// bar draws done/total as a bar.
func (p *progress) bar(done, total int, msg string) {
	const width = 30
	n := 0
	if total > 0 {
		n = done * width / total
	}
	p.set(fmt.Sprintf("[%s%s] %d/%d %s", strings.Repeat("#", n), strings.Repeat(".", width-n), done, total, msg))
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", len(p.label)+64))
	}
}
