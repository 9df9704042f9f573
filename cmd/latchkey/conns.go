package main

import (
	"bufio"
	"bytes"
	"container/list"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// defaultMaxConnections is the public listener's cap when the
	// open-file limit allows it. An open connection costs the process
	// its goroutine and buffers and the kernel its socket buffers; past
	// this many, a replica spends more on waiting clients than on
	// answering them, and more clients belong behind a load balancer or
	// on more replicas.
	defaultMaxConnections = 10000
	// fdReserve is how many file descriptors the public listener's cap
	// leaves for everything else: the database pool (each SQLite
	// connection holds the database and its WAL file open, each
	// PostgreSQL one a socket; a few dozen by default), the admin
	// listener's adminMaxConnections, shedSlots connections being
	// answered 503, the listening sockets, the log and the TLS files.
	fdReserve = 1024
	// adminMaxConnections caps the admin listener, whose clients are a
	// few operators, scripts and a metrics scraper. It is a cap of its
	// own so that a crowd on the public listener never locks them out.
	adminMaxConnections = 256

	// shedSlots bounds how many refused connections are answered at
	// once; past it a refused connection is closed without an answer,
	// so that refusing costs little however fast connections arrive.
	shedSlots = 64
	// shedTimeout bounds the whole life of a refused connection: reading
	// its request head, answering, and waiting for the client to close.
	shedTimeout = time.Second
	// shedReadLimit bounds a refused connection's request head; only the
	// request line matters.
	shedReadLimit = 4 << 10
	// shedRetryAfter is the Retry-After of a refused connection, in
	// seconds: room is made as soon as any connection goes idle or
	// closes, and a connection waiting for its request head is cut off
	// after the read-header timeout.
	shedRetryAfter = 1
)

// connectionCap resolves max_connections against the open-file limit
// nofile (0: unknown). Zero means min(defaultMaxConnections, what nofile
// leaves after fdReserve); an explicit value that would eat into the
// reserve stops start-up, since the process could then run out of
// descriptors for its database while serving clients.
func connectionCap(setting int, nofile uint64) (int, error) {
	avail := uint64(1 << 31)
	if nofile > 0 {
		avail = nofile - min(fdReserve, nofile/2)
	}
	if setting == 0 {
		return int(min(defaultMaxConnections, avail)), nil
	}
	if uint64(setting) > avail {
		return 0, fmt.Errorf("max_connections: %d is more than the open-file limit (%d) leaves after the %d kept for the database, the admin listener and logs; accepted values: 0 (sized from the limit: %d here) or a whole number up to %d here, or raise the limit (ulimit -n)",
			setting, nofile, nofile-avail, min(defaultMaxConnections, avail), avail)
	}
	return setting, nil
}

// connLimiter is a listener that keeps at most max connections open, so
// that no number of clients, however slow or idle, exhausts the
// process's file descriptors. At the cap, a new connection takes the
// place of the keep-alive connection that has been idle longest (closing
// it costs its client a reconnect; a request sent at that very moment is
// lost, as with any idle timeout); when no connection is idle, the new
// one is refused. Its http.Server must report
// connection states to connState.
//
// A refused connection is answered, not just closed: its request head is
// read and a health check (GET /healthz, /readyz) is served as usual, so
// that a load balancer or kubelet probing on fresh connections still
// learns the process is alive, while anything else gets 503 with
// Retry-After and Connection: close, which clients and load balancers
// take for "busy, come back" rather than for a network failure. Reading
// a request head and writing a fixed answer is cheap, and at most
// shedSlots refused connections are answered at once, each for at most
// shedTimeout. A TLS listener closes refused connections at once
// instead: answering would first cost a handshake, the most expensive
// thing a connection does.
type connLimiter struct {
	net.Listener
	max int
	// probe serves the health checks of refused connections; nil closes
	// them unanswered.
	probe http.Handler

	mu   sync.Mutex
	open int
	idle list.List // of *limitedConn, the longest idle in front

	shed, evicted atomic.Uint64
	shedding      chan struct{}
	answering     sync.WaitGroup
}

func newConnLimiter(ln net.Listener, max int, probe http.Handler) *connLimiter {
	return &connLimiter{Listener: ln, max: max, probe: probe, shedding: make(chan struct{}, shedSlots)}
}

// limitedConn is a connection counted against its listener's cap until
// it is closed, by whoever closes it.
type limitedConn struct {
	net.Conn
	l *connLimiter
	// Guarded by l.mu: gone once the connection no longer counts; elem
	// is its place in l.idle while it is idle.
	gone bool
	elem *list.Element
}

func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	c.l.forget(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// forget stops counting c; l.mu is held.
func (l *connLimiter) forget(c *limitedConn) {
	if c.gone {
		return
	}
	c.gone = true
	l.open--
	if c.elem != nil {
		l.idle.Remove(c.elem)
		c.elem = nil
	}
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &limitedConn{Conn: nc, l: l}
		var victim *limitedConn
		l.mu.Lock()
		if l.open >= l.max {
			if e := l.idle.Front(); e != nil {
				victim = e.Value.(*limitedConn)
				l.forget(victim)
			}
		}
		admit := l.open < l.max
		if admit {
			l.open++
		}
		l.mu.Unlock()
		if victim != nil {
			l.evicted.Add(1)
			// Its server goroutine sees the read fail and lets go.
			victim.Conn.Close()
		}
		if admit {
			return c, nil
		}
		l.shed.Add(1)
		l.refuse(nc)
	}
}

// connState keeps l.idle up to date; it is the http.Server's ConnState.
func (l *connLimiter) connState(nc net.Conn, st http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case c.gone:
	case st == http.StateIdle:
		if c.elem == nil {
			c.elem = l.idle.PushBack(c)
		}
	case c.elem != nil:
		l.idle.Remove(c.elem)
		c.elem = nil
	}
}

// Open, Idle, Shed and Evicted are the figures /metrics publishes.
func (l *connLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *connLimiter) Idle() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.idle.Len()
}

func (l *connLimiter) Shed() uint64    { return l.shed.Load() }
func (l *connLimiter) Evicted() uint64 { return l.evicted.Load() }

// wait returns once no refused connection is being answered any more, so
// that none outlives the server's shutdown (and its database).
func (l *connLimiter) wait() { l.answering.Wait() }

func (l *connLimiter) refuse(nc net.Conn) {
	if l.probe == nil {
		nc.Close()
		return
	}
	select {
	case l.shedding <- struct{}{}:
	default:
		nc.Close()
		return
	}
	l.answering.Go(func() {
		defer func() { <-l.shedding }()
		l.answer(nc)
	})
}

// answer reads the request on a refused connection, answers it and
// closes the connection.
func (l *connLimiter) answer(nc net.Conn) {
	defer nc.Close()
	deadline := time.Now().Add(shedTimeout)
	nc.SetDeadline(deadline)
	var resp *http.Response
	req, err := http.ReadRequest(bufio.NewReaderSize(io.LimitReader(nc, shedReadLimit), shedReadLimit))
	if err == nil && (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.URL.Path == "/healthz" || req.URL.Path == "/readyz") {
		req.RemoteAddr = nc.RemoteAddr().String()
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		resp = serveOne(l.probe, req.WithContext(ctx))
	} else {
		resp = refusal(req)
	}
	if resp.Write(nc) != nil {
		return
	}
	// Close our side first and let the client close its own: closing
	// with its request body unread would reset the connection, and the
	// reset can destroy the answer before the client reads it.
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	io.Copy(io.Discard, nc)
}

// refusal is the 503 of a refused connection.
func refusal(req *http.Request) *http.Response {
	body := fmt.Sprintf(`{"error":"temporarily_unavailable","error_description":"too many connections; try again in %d s"}`+"\n", shedRetryAfter)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", strconv.Itoa(shedRetryAfter))
	return &http.Response{
		StatusCode: http.StatusServiceUnavailable, ProtoMajor: 1, ProtoMinor: 1, Request: req,
		Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Close: true,
	}
}

// serveOne runs h for one request and returns its answer, to be written
// on a connection that then closes.
func serveOne(h http.Handler, req *http.Request) *http.Response {
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, req)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	return &http.Response{
		StatusCode: rec.code, ProtoMajor: 1, ProtoMinor: 1, Request: req, Header: rec.header,
		Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Close: true,
	}
}

// recorder is the http.ResponseWriter of serveOne.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}
