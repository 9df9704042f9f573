package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// loadRun is one measurement. Times are durations since base, read from
// the monotonic clock: a request counts when its answer arrives between
// start (the end of the warm-up) and end.
type loadRun struct {
	c       loadConfig
	addr    string
	plan    *plan
	base    time.Time
	start   time.Duration
	end     time.Duration
	stopped atomic.Bool
	stalled atomic.Uint64
	figs    []*figures
}

// figures are what one goroutine recorded. Each recording goroutine owns
// its own, so recording needs no synchronisation; they are merged at the
// end.
type figures struct {
	hists  []*hist
	status [][]uint64 // [kind][code]; codes outside 0..599 count as 0
	errs   map[string]uint64
}

// An engine drives the connections of a run.
type engine interface {
	// start starts the connections; they stop by themselves at lr.end,
	// or soon after lr.stopped is set.
	start()
	// watch runs every few milliseconds in the run's own goroutine.
	watch(now time.Duration)
	// stop waits for the connections to stop.
	stop()
}

func newLoadRun(c loadConfig, addr string, p *plan) *loadRun {
	return &loadRun{c: c, addr: addr, plan: p}
}

func (lr *loadRun) since() time.Duration { return time.Since(lr.base) }

// newFigures returns figures for one more recording goroutine; call it
// before the run starts.
func (lr *loadRun) newFigures() *figures {
	f := &figures{errs: map[string]uint64{}}
	for range lr.plan.kinds {
		f.hists = append(f.hists, newHist())
		f.status = append(f.status, make([]uint64, 600))
	}
	lr.figs = append(lr.figs, f)
	return f
}

func (f *figures) record(kind, status int, d time.Duration) {
	f.hists[kind].record(d)
	if status < 0 || status >= len(f.status[kind]) {
		status = 0
	}
	f.status[kind][status]++
}

// counts reports whether something that happened at t is measured.
func (lr *loadRun) counts(t time.Duration) bool {
	return t >= lr.start && t <= lr.end && !lr.stopped.Load()
}

func (lr *loadRun) run(ctx context.Context) (*report, error) {
	lr.start = lr.c.warmup
	lr.end = lr.c.warmup + lr.c.duration
	var e engine
	switch lr.c.engine {
	case "goroutines":
		e = newGoroutineEngine(lr)
	case "epoll":
		var err error
		if e, err = newEpollEngine(lr); err != nil {
			return nil, err
		}
	default:
		return nil, usageError{fmt.Sprintf("load: unknown engine %q", lr.c.engine)}
	}
	lr.base = time.Now()
	e.start()
	cpu0, measureFrom := cpuTime(), lr.start
	if lr.wait(ctx, lr.start, e) {
		cpu0 = cpuTime()
		lr.wait(ctx, lr.end, e)
	}
	measured := min(lr.since(), lr.end) - measureFrom
	cpu := cpuTime() - cpu0
	lr.stopped.Store(true)
	e.stop()
	r := lr.report(max(measured, 0), cpu)
	r.Stalled = lr.stalled.Load()
	return r, nil
}

// wait returns when the run reaches until, or false at once when ctx ends.
func (lr *loadRun) wait(ctx context.Context, until time.Duration, e engine) bool {
	tick := 100 * time.Millisecond
	if lr.c.timeout > 0 {
		tick = min(tick, max(lr.c.timeout/10, time.Millisecond))
	}
	for {
		now := lr.since()
		if now >= until {
			return true
		}
		t := time.NewTimer(min(until-now, tick))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		e.watch(lr.since())
	}
}

// stallTime is how long a request must have waited at the end of the run
// to count as stalled: not just in flight, but stuck in the server. Without
// this count a run in which nothing was answered would report nothing.
const stallTime = time.Second

// goroutineEngine gives each connection a goroutine doing blocking I/O
// through Go's netpoller. It works everywhere; on Linux the epoll engine
// is cheaper (see epoll_linux.go).
type goroutineEngine struct {
	lr      *loadRun
	workers []*worker
	dialer  *net.Dialer
	dialCtx context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// worker drives one connection. Only its own goroutine touches its
// figures; mu guards the connection against watch, which closes it to
// abort a request that timed out or outlived the run.
type worker struct {
	id  int
	fig *figures

	mu       sync.Mutex
	conn     *httpConn
	killed   bool
	inflight atomic.Int64 // start of the request in flight (+1), 0 when idle
	timedOut atomic.Bool
}

func newGoroutineEngine(lr *loadRun) *goroutineEngine {
	e := &goroutineEngine{lr: lr, dialer: sourceDialer(lr.c.source, 5*time.Second)}
	e.dialCtx, e.cancel = context.WithCancel(context.Background())
	for i := range lr.c.conns {
		e.workers = append(e.workers, &worker{id: i, fig: lr.newFigures()})
	}
	return e
}

func (e *goroutineEngine) start() {
	for _, w := range e.workers {
		e.wg.Go(func() { e.work(w) })
	}
}

func (e *goroutineEngine) watch(now time.Duration) {
	if e.lr.c.timeout <= 0 {
		return
	}
	for _, w := range e.workers {
		if s := w.inflight.Load(); s != 0 && now-time.Duration(s-1) > e.lr.c.timeout {
			w.kill(true)
		}
	}
}

func (e *goroutineEngine) stop() {
	now := e.lr.since()
	for _, w := range e.workers {
		if s := w.inflight.Load(); s != 0 && now-time.Duration(s-1) >= stallTime {
			e.lr.stalled.Add(1)
		}
	}
	e.cancel()
	for _, w := range e.workers {
		w.kill(false)
	}
	e.wg.Wait()
}

// kill closes the worker's connection; with timedOut its current request
// counts as a timeout, else the run is over and it may not dial again.
func (w *worker) kill(timedOut bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if timedOut {
		w.timedOut.Store(true)
	} else {
		w.killed = true
	}
	if w.conn != nil {
		w.conn.nc.Close()
	}
}

func (w *worker) drop() {
	w.mu.Lock()
	if w.conn != nil {
		w.conn.nc.Close()
		w.conn = nil
	}
	w.mu.Unlock()
}

func (e *goroutineEngine) dial(w *worker) bool {
	d := e.dialer
	if srcs := e.lr.c.sources; srcs != nil {
		a := srcs.take()
		d = freshDialer(net.IP(a[:]), d.Timeout)
	}
	nc, err := d.DialContext(e.dialCtx, "tcp", e.lr.addr)
	if err != nil {
		if e.lr.counts(e.lr.since()) {
			w.fig.errs["connect"]++
		}
		// A refused connection must not become a busy loop stealing the
		// CPU the other connections need.
		time.Sleep(10 * time.Millisecond)
		return false
	}
	if e.lr.c.sources != nil {
		// Where freshDialer cannot ask for a reset on close before the
		// connection is made, ask now.
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.killed {
		nc.Close()
		return false
	}
	w.conn = newHTTPConn(nc)
	return true
}

func (e *goroutineEngine) work(w *worker) {
	lr, p := e.lr, e.lr.plan
	// Connections start at different points of the sequence so that, in
	// mixed mode, token requests do not all arrive at once.
	i := w.id * 7
	for !lr.stopped.Load() {
		if w.conn == nil && !e.dial(w) {
			continue
		}
		slot := p.seq[i%len(p.seq)]
		i++
		t0 := lr.since()
		if t0 >= lr.end {
			return
		}
		w.inflight.Store(int64(t0) + 1)
		status, keep, err := w.conn.roundTrip(p.reqs[slot])
		t1 := lr.since()
		w.inflight.Store(0)
		timedOut := err != nil && w.timedOut.Swap(false)
		if err != nil || !keep || lr.c.sources != nil {
			w.drop()
		}
		if t1 > lr.end || err != nil && lr.stopped.Load() {
			return
		}
		if t1 < lr.start {
			continue
		}
		if err != nil {
			w.fig.errs[errKind(err, timedOut)]++
			continue
		}
		w.fig.record(p.slotKind[slot], status, t1-t0)
	}
}

func errKind(err error, timedOut bool) string {
	var ne net.Error
	switch {
	case timedOut || errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, errMalformed), errors.Is(err, errTooLarge):
		return "malformed response"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case strings.HasPrefix(err.Error(), "write"):
		return "write"
	}
	return "read"
}
