//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

const defaultEngine = "epoll"

// The epoll engine runs wrk's design: each event loop owns a share of the
// connections, non-blocking sockets and one epoll set, and a request costs
// one write and one read, plus a share of an epoll_wait.
//
// It makes those calls with syscall.RawSyscall, which does not tell the Go
// scheduler. With ordinary system calls (and so with the netpoller and a
// goroutine per connection) the runtime's sysmon thread sees a call that
// lasts over 20µs, hands the processor to another thread, and then wakes
// every 20µs to look again: on one core that is tens of thousands of
// context switches a second and a sixth of the core, and a client that
// sleeps and wakes that often costs the server under test extra wake-ups
// too. The loop never blocks in a raw call: it polls without waiting, and
// when nothing is ready it parks on the netpoller, which watches the epoll
// set itself (an epoll descriptor is readable while it has events), so an
// idle loop holds no processor and the rest of the program runs.

// pollTimeout bounds how long a loop sleeps: how late it notices the end
// of the run, a stop, a timeout or a reconnection that is due.
const pollTimeout = 10 * time.Millisecond

type epollEngine struct {
	lr    *loadRun
	loops []*eloop
	done  chan struct{}
}

// eloop is one event loop: a goroutine, an epoll set and its connections.
type eloop struct {
	lr     *loadRun
	fig    *figures
	epfd   int
	sa     syscall.Sockaddr
	src    syscall.Sockaddr // -source, port 0; nil without it
	family int
	conns  []*econn
	events []syscall.EpollEvent

	// srcs is the -sources range (nil without it), and src4 the loop's
	// own Sockaddr to bind each new connection to its next address.
	srcs *sourceRange
	src4 *syscall.SockaddrInet4

	// The epoll set as the netpoller sees it, to sleep on; rc is nil
	// when it cannot be polled, and the loop then sleeps in epoll_wait.
	file     *os.File
	rc       syscall.RawConn
	poll     func(uintptr) bool // l.pollNow, bound once: Read must not allocate
	ready    int                // events the last poll found
	pollErr  syscall.Errno
	deadline time.Time // of the file; renewed before it can lapse
}

type connState int

const (
	closed     connState = iota // no socket: to connect at retryAt
	connecting                  // non-blocking connect in progress
	idle                        // connected, nothing in flight (the run is over)
	sending                     // a request partly written, waiting to write more
	waiting                     // a request written, its answer not all read
)

type econn struct {
	idx     int
	fd      int
	state   connState
	buf     []byte
	n       int // bytes of buf in use
	seq     int // position in the plan's sequence
	slot    int
	sent    int
	t0      time.Duration // when the request in flight was started
	retryAt time.Duration
}

func newEpollEngine(lr *loadRun) (engine, error) {
	a, err := net.ResolveTCPAddr("tcp", lr.addr)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := sameVersion(lr.c.source, a.String()); err != nil {
		return nil, err
	}
	if lr.c.sources != nil && a.IP.To4() == nil {
		return nil, usageError{fmt.Sprintf("load: -sources %s is IPv4 and the server's address %s is not", lr.c.sources, a.IP)}
	}
	e := &epollEngine{lr: lr, done: make(chan struct{})}
	for i := range lr.c.loops {
		l, err := newLoop(lr, a)
		if err != nil {
			e.closeAll()
			return nil, fmt.Errorf("load: epoll: %w", err)
		}
		for j := i; j < lr.c.conns; j += lr.c.loops {
			// Connections start at different points of the sequence so
			// that, in mixed mode, token requests do not all arrive at
			// once.
			l.conns = append(l.conns, &econn{idx: len(l.conns), fd: -1, buf: make([]byte, readBufferSize), seq: j * 7})
		}
		l.events = make([]syscall.EpollEvent, len(l.conns))
		e.loops = append(e.loops, l)
	}
	return e, nil
}

func newLoop(lr *loadRun, a *net.TCPAddr) (*eloop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	l := &eloop{lr: lr, fig: lr.newFigures(), epfd: epfd}
	// Sockaddrs of the loop's own: each loop is one goroutine, and
	// Connect and Bind write into them.
	l.sa, l.family = sockaddr(a.IP, a.Port)
	if lr.c.source != nil {
		l.src, _ = sockaddr(lr.c.source, 0)
	}
	if lr.c.sources != nil {
		l.srcs, l.src4 = lr.c.sources, &syscall.SockaddrInet4{}
	}
	l.poll = l.pollNow
	// Non-blocking, os.NewFile registers the descriptor with the
	// netpoller.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	l.file = os.NewFile(uintptr(epfd), "epoll")
	if rc, err := l.file.SyscallConn(); err == nil {
		l.rc = rc
	}
	return l, nil
}

// sockaddr returns a Sockaddr of its own for ip and port (syscall.Connect
// and syscall.Bind write into theirs) and its address family.
func sockaddr(ip net.IP, port int) (syscall.Sockaddr, int) {
	if ip4 := ip.To4(); ip4 != nil {
		sa := &syscall.SockaddrInet4{Port: port}
		copy(sa.Addr[:], ip4)
		return sa, syscall.AF_INET
	}
	sa := &syscall.SockaddrInet6{Port: port}
	copy(sa.Addr[:], ip.To16())
	return sa, syscall.AF_INET6
}

func (e *epollEngine) start() {
	remaining := make(chan struct{}, len(e.loops))
	for _, l := range e.loops {
		go func() {
			l.run()
			remaining <- struct{}{}
		}()
	}
	go func() {
		for range e.loops {
			<-remaining
		}
		close(e.done)
	}()
}

// watch has nothing to do: each loop keeps its own time.
func (e *epollEngine) watch(time.Duration) {}

func (e *epollEngine) stop() {
	<-e.done
	e.closeAll()
}

func (e *epollEngine) closeAll() {
	for _, l := range e.loops {
		l.file.Close()
	}
}

func (l *eloop) run() {
	lr := l.lr
	for _, c := range l.conns {
		l.connect(c)
	}
	var housekeeping time.Duration
	for !lr.stopped.Load() {
		now := lr.since()
		if now >= lr.end {
			break
		}
		if now >= housekeeping {
			l.housekeeping(now)
			housekeeping = now + pollTimeout
		}
		n := l.wait()
		for _, ev := range l.events[:n] {
			l.handle(l.conns[ev.Fd], ev.Events)
		}
	}
	now := lr.since()
	for _, c := range l.conns {
		if (c.state == sending || c.state == waiting) && now-c.t0 >= stallTime {
			lr.stalled.Add(1)
		}
		l.close(c)
	}
}

// wait returns the number of events in l.events, after sleeping until
// there are some, or for at most pollTimeout.
func (l *eloop) wait() int {
	if l.rc != nil {
		if now := time.Now(); l.deadline.Sub(now) < pollTimeout/2 {
			l.deadline = now.Add(pollTimeout)
			_ = l.file.SetReadDeadline(l.deadline)
		}
		l.ready, l.pollErr = 0, 0
		err := l.rc.Read(l.poll)
		switch {
		case err == nil && l.pollErr == 0:
			return l.ready
		case err == nil:
			l.fail(nil, "epoll: "+l.pollErr.Error())
			time.Sleep(pollTimeout)
			return 0
		case errors.Is(err, os.ErrDeadlineExceeded):
			return 0
		}
		// The netpoller cannot watch the epoll set: sleep in epoll_wait.
		l.rc = nil
	}
	n, errno := epollWait(l.epfd, l.events, pollTimeout)
	switch errno {
	case 0:
		if n == 0 {
			// This sleep held the processor; let the program use it.
			runtime.Gosched()
		}
		return n
	case syscall.EINTR: // the runtime preempting the loop
	default:
		l.fail(nil, "epoll: "+errno.Error())
		time.Sleep(pollTimeout)
	}
	return 0
}

// pollNow looks for events without waiting. Read calls it after it has
// cleared the descriptor's recorded readiness, so events that arrive
// after this look always wake the loop.
func (l *eloop) pollNow(uintptr) bool {
	n, errno := epollWait(l.epfd, l.events, 0)
	switch errno {
	case 0:
		l.ready = n
		return n > 0
	case syscall.EINTR:
		return false
	}
	l.pollErr = errno
	return true
}

// housekeeping aborts requests past the timeout and reconnects what is due.
func (l *eloop) housekeeping(now time.Duration) {
	for _, c := range l.conns {
		switch {
		case c.state == closed && now >= c.retryAt:
			l.connect(c)
		case (c.state == sending || c.state == waiting) && l.lr.c.timeout > 0 && now-c.t0 > l.lr.c.timeout:
			l.fail(c, "timeout")
		}
	}
}

func (l *eloop) handle(c *econn, events uint32) {
	switch c.state {
	case connecting:
		if soErr, err := syscall.GetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil || soErr != 0 {
			l.dialFailed(c)
			return
		}
		if l.ctl(c, syscall.EPOLL_CTL_MOD, syscall.EPOLLIN) {
			c.state = idle
			l.send(c)
		}
	case sending:
		if events&syscall.EPOLLOUT != 0 {
			l.write(c)
		} else if events&(syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
			l.fail(c, "write")
		}
	case idle, waiting:
		l.read(c)
	}
}

func (l *eloop) connect(c *econn) {
	fd, err := syscall.Socket(l.family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		l.dialFailed(c)
		return
	}
	c.fd, c.n = fd, 0
	// As Go's dialer does: a request is one write, and must not wait for
	// the acknowledgement of the previous one.
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	src := l.src
	if l.srcs != nil {
		l.src4.Addr = l.srcs.take()
		src = l.src4
	}
	if src != nil {
		// As Go's dialer does with a LocalAddr: bind, then connect.
		bindNoPort(fd)
		if err := syscall.Bind(fd, src); err != nil {
			l.dialFailed(c)
			return
		}
	}
	switch err := syscall.Connect(fd, l.sa); err {
	case nil:
		if l.ctl(c, syscall.EPOLL_CTL_ADD, syscall.EPOLLIN) {
			c.state = idle
			l.send(c)
		}
	case syscall.EINPROGRESS:
		if l.ctl(c, syscall.EPOLL_CTL_ADD, syscall.EPOLLOUT) {
			c.state = connecting
		}
	default:
		l.dialFailed(c)
	}
}

// dialFailed counts a failed connection attempt and schedules the next,
// a little later: a refused connection must not become a busy loop.
func (l *eloop) dialFailed(c *econn) {
	now := l.lr.since()
	if l.lr.counts(now) {
		l.fig.errs["connect"]++
	}
	l.close(c)
	c.retryAt = now + 10*time.Millisecond
}

func (l *eloop) ctl(c *econn, op int, events uint32) bool {
	ev := syscall.EpollEvent{Events: events, Fd: int32(c.idx)}
	if err := syscall.EpollCtl(l.epfd, op, c.fd, &ev); err != nil {
		l.fail(c, "epoll: "+err.Error())
		return false
	}
	return true
}

func (l *eloop) close(c *econn) {
	if c.fd >= 0 {
		if l.srcs != nil {
			abortOnClose(c.fd)
		}
		// Closing the only descriptor of the socket also takes it out of
		// the epoll set.
		syscall.Close(c.fd)
		c.fd = -1
	}
	c.state = closed
}

// fail counts a failure of c's request (if it falls in the measurement)
// and closes the connection; with c nil it counts a failure of the loop.
// The next housekeeping reconnects, not fail itself: a server that breaks
// every new connection must make neither a recursion nor a busy loop.
func (l *eloop) fail(c *econn, kind string) {
	now := l.lr.since()
	if l.lr.counts(now) {
		l.fig.errs[kind]++
	}
	if c != nil {
		l.close(c)
		c.retryAt = now
	}
}

// reconnect replaces c's connection with a new one, unless the run is over.
func (l *eloop) reconnect(c *econn) {
	l.close(c)
	if l.lr.since() < l.lr.end && !l.lr.stopped.Load() {
		l.connect(c)
	}
}

// send starts the next request on c, unless the run is over.
func (l *eloop) send(c *econn) {
	lr := l.lr
	now := lr.since()
	if now >= lr.end || lr.stopped.Load() {
		c.state = idle
		return
	}
	c.slot = lr.plan.seq[c.seq%len(lr.plan.seq)]
	c.seq++
	c.sent, c.t0 = 0, now
	c.state = waiting
	l.write(c)
}

func (l *eloop) write(c *econn) {
	req := l.lr.plan.reqs[c.slot]
	for c.sent < len(req) {
		n, errno := rawIO(syscall.SYS_WRITE, c.fd, req[c.sent:])
		switch errno {
		case 0:
			c.sent += n
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			// The send buffer is full (never, for a request this size on
			// an idle connection): wait until it can take more.
			if c.state != sending && l.ctl(c, syscall.EPOLL_CTL_MOD, syscall.EPOLLIN|syscall.EPOLLOUT) {
				c.state = sending
			}
			return
		case syscall.ECONNRESET, syscall.EPIPE:
			l.fail(c, "connection reset")
		default:
			l.fail(c, "write")
		}
		return
	}
	if c.state == sending && !l.ctl(c, syscall.EPOLL_CTL_MOD, syscall.EPOLLIN) {
		return
	}
	c.state = waiting
}

func (l *eloop) read(c *econn) {
	if c.n == len(c.buf) {
		l.fail(c, "malformed response")
		return
	}
	n, errno := rawIO(syscall.SYS_READ, c.fd, c.buf[c.n:])
	switch errno {
	case 0:
	case syscall.EINTR, syscall.EAGAIN:
		return // the poller reports the socket again while it is readable
	case syscall.ECONNRESET:
		l.fail(c, "connection reset")
		return
	default:
		l.fail(c, "read")
		return
	}
	eof := n == 0
	c.n += n
	status, keep, used, err := parseResponse(c.buf[:c.n], eof)
	switch {
	case err != nil && errors.Is(err, errMalformed):
		l.fail(c, "malformed response")
		return
	case err != nil:
		l.fail(c, "connection closed")
		return
	case used == 0:
		return // more to come
	case c.state != waiting:
		// An answer to no request: the connection is out of step.
		l.fail(c, "malformed response")
		return
	}
	t1 := l.lr.since()
	if l.lr.counts(t1) {
		l.fig.record(l.lr.plan.slotKind[c.slot], status, t1-c.t0)
	}
	c.n = copy(c.buf, c.buf[used:c.n])
	if !keep || eof || c.n > 0 || l.srcs != nil {
		l.reconnect(c)
		return
	}
	l.send(c)
}

// rawIO is read(2) or write(2) on fd, without telling the scheduler (see
// the top of the file); fd is non-blocking, so the call never waits.
func rawIO(trap uintptr, fd int, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), errno
}

// epollWait waits for events for at most timeout, holding the processor
// while it waits.
func epollWait(epfd int, events []syscall.EpollEvent, timeout time.Duration) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), uintptr(timeout.Milliseconds()), 0, 0)
	return int(n), errno
}
