package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
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

const slowUsage = `Usage: latchkey-bench slow -url URL -path PATH [flags]

Keeps -c uploads to PATH going for -d, as slow clients do: each declares a
body of -size bytes and sends it at -rate bytes a second. An upload the
server answers or cuts off is started again after -pause, on a new
connection, so the server faces -c uploads throughout. Prints how the
uploads ended: the server's answers by status (most answer before the body
is all sent), connections closed without an answer, uploads still running
at the end.

The body is a form (grant_type=client_credentials&pad=xxx...) or, with
-json-body, a JSON object ({"name":...,"description":"xxx..."}), so the
server parses it as it arrives. -header adds a request header, e.g.
"Authorization: Bearer lk_adm_...", to reach a handler that reads the body.

Flags:
`

const idleUsage = `Usage: latchkey-bench idle -url URL -c N [flags]

Opens -c connections, has one GET /healthz answered on each and keeps the
connection open and idle, as a client's connection pool does; then holds
them for -hold and reports how many were answered (by status), how many
failed (no connection, or no answer within -timeout), and how many of the
kept ones the server closed during the hold (evicted to make room, or idle
past its idle timeout). "opened" goes to stderr once every connection has
been tried, for a script waiting to probe the server while they are held.

One process holds at most what its open-file limit allows: split larger
numbers over several processes, each with its own -source.

Flags:
`

// resourceConfig holds what slow and idle share.
type resourceConfig struct {
	t       target
	source  net.IP
	conns   int
	timeout time.Duration
}

func parseResourceFlags(fs *flag.FlagSet, args []string, rawURL, source *string, c *resourceConfig) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	t, err := parseTarget(*rawURL)
	if err != nil {
		return usageError{fs.Name() + ": " + err.Error()}
	}
	c.t = t
	if c.source, err = parseSource(fs.Name(), *source); err != nil {
		return err
	}
	if c.conns < 1 {
		return usageError{fs.Name() + ": -c must be at least 1"}
	}
	return sameVersion(c.source, t.addr)
}

// ending tallies how connections ended: answers by status, failures by
// kind.
type ending struct {
	mu     sync.Mutex
	status map[string]int
	failed map[string]int
}

func newEnding() *ending { return &ending{status: map[string]int{}, failed: map[string]int{}} }

func (e *ending) answer(status int) {
	e.mu.Lock()
	e.status[strconv.Itoa(status)]++
	e.mu.Unlock()
}

func (e *ending) fail(kind string) {
	e.mu.Lock()
	e.failed[kind]++
	e.mu.Unlock()
}

// failKind names a transport error for the report.
func failKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	case strings.Contains(err.Error(), "reset"):
		return "reset"
	case strings.Contains(err.Error(), "refused"):
		return "refused"
	}
	return "other"
}

type slowReport struct {
	Uploads      int64          `json:"uploads"`
	BytesSent    int64          `json:"bytes_sent"`
	RunningAtEnd int64          `json:"running_at_end"`
	Status       map[string]int `json:"status"`
	Failed       map[string]int `json:"failed"`
}

func runSlow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c resourceConfig
	fs := flag.NewFlagSet("slow", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, slowUsage); fs.PrintDefaults() }
	rawURL := fs.String("url", "http://127.0.0.1:8080", "base URL of the server (http only)")
	path := fs.String("path", "/oauth2/token", "path the uploads are POSTed to")
	fs.IntVar(&c.conns, "c", 500, "uploads kept going at once")
	size := fs.Int("size", 1_000_000, "declared body size, bytes")
	rate := fs.Int("rate", 32<<10, "bytes a second each upload sends")
	d := fs.Duration("d", 40*time.Second, "how long to keep the uploads going")
	pause := fs.Duration("pause", time.Second, "wait before starting an upload again once it has ended")
	jsonBody := fs.Bool("json-body", false, "send a JSON body instead of a form")
	var headers headerList
	fs.Var(&headers, "header", `extra request header "Name: value" (repeatable)`)
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	source := fs.String("source", "", "local IP address the connections leave from")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "dial timeout")
	if err := parseResourceFlags(fs, args, rawURL, source, &c); err != nil {
		return err
	}
	if *size < 64 || *rate < 10 || *d <= 0 || *pause < 0 {
		return usageError{"slow: want -size at least 64, -rate at least 10, -d positive, -pause not negative"}
	}

	ctype, prefix := "application/x-www-form-urlencoded", "grant_type=client_credentials&pad="
	if *jsonBody {
		ctype, prefix = "application/json", `{"name":"slow-upload","description":"`
	}
	head := fmt.Sprintf("POST %s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n",
		c.t.prefix, *path, c.t.host, ctype, *size, headers.String())
	// Ten writes a second, each a tenth of -rate.
	const tick = 100 * time.Millisecond
	chunk := max(1, *rate/10)
	pad := []byte(strings.Repeat("x", chunk))
	body := func(sent int) []byte {
		if sent == 0 {
			b := append([]byte(prefix), pad...)
			return b[:chunk]
		}
		return pad
	}

	runCtx, cancel := context.WithTimeout(ctx, *d)
	defer cancel()
	dialer := sourceDialer(c.source, c.timeout)
	e := newEnding()
	var uploads, sent, running atomic.Int64
	upload := func() {
		nc, err := dialer.DialContext(runCtx, "tcp", c.t.addr)
		if err != nil {
			if runCtx.Err() == nil {
				e.fail("dial " + failKind(err))
			}
			return
		}
		defer nc.Close()
		uploads.Add(1)
		answer := make(chan error, 1)
		var status int
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			if err == nil {
				status = resp.StatusCode
			}
			answer <- err
		}()
		if _, err := io.WriteString(nc, head); err != nil {
			e.fail("write " + failKind(err))
			return
		}
		t := time.NewTicker(tick)
		defer t.Stop()
		done := 0
		for {
			var writeErr error
			if done < *size {
				b := body(done)
				b = b[:min(len(b), *size-done)]
				nc.SetWriteDeadline(time.Now().Add(c.timeout))
				n, err := nc.Write(b)
				done += n
				sent.Add(int64(n))
				writeErr = err
			}
			select {
			case err := <-answer:
				if err != nil {
					e.fail("no answer: " + failKind(err))
				} else {
					e.answer(status)
				}
				return
			case <-runCtx.Done():
				running.Add(1)
				return
			case <-t.C:
				if writeErr != nil {
					// The server stopped reading; its answer, if any,
					// is on the way.
					select {
					case err := <-answer:
						if err == nil {
							e.answer(status)
							return
						}
					case <-time.After(c.timeout):
					}
					e.fail("write " + failKind(writeErr))
					return
				}
			}
		}
	}
	var wg sync.WaitGroup
	for range c.conns {
		wg.Go(func() {
			for runCtx.Err() == nil {
				upload()
				select {
				case <-runCtx.Done():
				case <-time.After(*pause):
				}
			}
		})
	}
	wg.Wait()
	r := slowReport{Uploads: uploads.Load(), BytesSent: sent.Load(), RunningAtEnd: running.Load(), Status: e.status, Failed: e.failed}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(r)
	}
	fmt.Fprintf(stdout, "uploads started: %d, bytes sent: %d, still running at the end: %d\n", r.Uploads, r.BytesSent, r.RunningAtEnd)
	fmt.Fprintf(stdout, "answered: %s\nfailed: %s\n", countList(r.Status), countList(r.Failed))
	return nil
}

// headerList is a repeatable -header flag.
type headerList []string

func (h *headerList) String() string {
	var b strings.Builder
	for _, v := range *h {
		b.WriteString(v + "\r\n")
	}
	return b.String()
}

func (h *headerList) Set(v string) error {
	if !strings.Contains(v, ":") || strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("%q is not a header line \"Name: value\"", v)
	}
	*h = append(*h, v)
	return nil
}

type idleReport struct {
	Connections    int            `json:"connections"`
	Kept           int64          `json:"kept"`
	ClosedByServer int64          `json:"closed_by_server"`
	Status         map[string]int `json:"status"`
	Failed         map[string]int `json:"failed"`
}

func runIdle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c resourceConfig
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, idleUsage); fs.PrintDefaults() }
	rawURL := fs.String("url", "http://127.0.0.1:8080", "base URL of the server (http only)")
	fs.IntVar(&c.conns, "c", 1000, "connections to open")
	hold := fs.Duration("hold", 20*time.Second, "how long to hold the connections once all are tried")
	parallel := fs.Int("parallel", 64, "connections being opened at once")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	source := fs.String("source", "", "local IP address the connections leave from")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "dial timeout, and how long to wait for the answer")
	if err := parseResourceFlags(fs, args, rawURL, source, &c); err != nil {
		return err
	}
	if *hold < 0 || *parallel < 1 {
		return usageError{"idle: want -hold not negative and -parallel at least 1"}
	}
	req := "GET " + c.t.prefix + "/healthz HTTP/1.1\r\nHost: " + c.t.host + "\r\n\r\n"
	dialer := sourceDialer(c.source, c.timeout)
	e := newEnding()
	var kept, closed atomic.Int64
	holdCtx, release := context.WithCancel(ctx)
	defer release()

	var (
		mu    sync.Mutex
		conns []net.Conn
		held  sync.WaitGroup
		tried sync.WaitGroup
	)
	slots := make(chan struct{}, *parallel)
	open := func() {
		defer func() { <-slots }()
		nc, err := dialer.DialContext(ctx, "tcp", c.t.addr)
		if err != nil {
			e.fail("dial " + failKind(err))
			return
		}
		nc.SetDeadline(time.Now().Add(c.timeout))
		br := bufio.NewReader(nc)
		var resp *http.Response
		if _, err = io.WriteString(nc, req); err == nil {
			resp, err = http.ReadResponse(br, nil)
		}
		if err != nil {
			nc.Close()
			e.fail("no answer: " + failKind(err))
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		e.answer(resp.StatusCode)
		if resp.Close {
			nc.Close()
			return
		}
		kept.Add(1)
		nc.SetDeadline(time.Time{})
		mu.Lock()
		conns = append(conns, nc)
		mu.Unlock()
		held.Go(func() {
			// A read returns only when the server closes the connection,
			// or when the hold ends and the tool closes it.
			_, err := br.ReadByte()
			if err != nil && holdCtx.Err() == nil {
				closed.Add(1)
			}
		})
	}
	for range c.conns {
		slots <- struct{}{}
		tried.Go(open)
	}
	tried.Wait()
	fmt.Fprintf(stderr, "opened: %d connections tried, %d kept\n", c.conns, kept.Load())
	select {
	case <-ctx.Done():
	case <-time.After(*hold):
	}
	r := idleReport{Connections: c.conns, Kept: kept.Load(), ClosedByServer: closed.Load()}
	release()
	mu.Lock()
	for _, nc := range conns {
		nc.Close()
	}
	mu.Unlock()
	held.Wait()
	r.Status, r.Failed = e.status, e.failed
	if *asJSON {
		return json.NewEncoder(stdout).Encode(r)
	}
	fmt.Fprintf(stdout, "connections: %d, kept open: %d, closed by the server while held: %d\n", r.Connections, r.Kept, r.ClosedByServer)
	fmt.Fprintf(stdout, "answered: %s\nfailed: %s\n", countList(r.Status), countList(r.Failed))
	return nil
}
