package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
)

// A minimal HTTP/1.1 client. net/http's client costs more CPU per request
// than the server under test spends on a trivial answer (header maps, a
// goroutine pair per connection, pooling), so with it the generator, not
// the server, would set the pace on a shared machine. Here
// a request is bytes built once, and a response is parsed just far enough
// to learn its status and where it ends. Both load engines share this.

var (
	errMalformed = errors.New("malformed response")
	errTooLarge  = errors.New("response larger than the read buffer")
)

// readBufferSize bounds a response: latchkey's are a few hundred bytes.
const readBufferSize = 64 << 10

// buildRequest returns the bytes of one complete HTTP/1.1 POST of a form.
// headers are "Name: value" lines.
func buildRequest(host, path, body string, headers ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: latchkey-bench\r\n", path, host)
	for _, h := range headers {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return []byte(b.String())
}

// parseResponse looks for one whole response at the start of b. It returns
// n == 0 and no error while b holds only part of it; eof says no more bytes
// will come. It understands what servers answer a POST with: a
// Content-Length, the chunked transfer coding, or a body that ends with the
// connection. keep is false when the connection cannot carry another
// request. It does not allocate: the engines call it once per response.
func parseResponse(b []byte, eof bool) (status int, keep bool, n int, err error) {
	off := 0
	for {
		end := bytes.Index(b[off:], []byte("\r\n\r\n"))
		if end < 0 {
			return 0, false, 0, incomplete(eof)
		}
		head := b[off : off+end+2]
		body := off + end + 4
		// "HTTP/1.1 200 OK\r\n"
		if len(head) < 14 || !bytes.HasPrefix(head, []byte("HTTP/1.")) || head[8] != ' ' {
			return 0, false, 0, errMalformed
		}
		status, ok := atoi3(head[9:12])
		if !ok {
			return 0, false, 0, errMalformed
		}
		keep = head[7] == '1' // HTTP/1.0 closes unless told otherwise; we never ask
		length, chunked := int64(-1), false
		line := head[bytes.IndexByte(head, '\n')+1:]
		for len(line) > 0 {
			eol := bytes.IndexByte(line, '\n')
			field := line[:eol]
			line = line[eol+1:]
			colon := bytes.IndexByte(field, ':')
			if colon < 0 {
				return 0, false, 0, errMalformed
			}
			name, value := field[:colon], bytes.TrimSpace(field[colon+1:])
			switch {
			case bytes.EqualFold(name, []byte("Content-Length")):
				if length, ok = parseInt(value, 10); !ok {
					return 0, false, 0, errMalformed
				}
			case bytes.EqualFold(name, []byte("Transfer-Encoding")):
				chunked = containsFold(value, "chunked")
			case bytes.EqualFold(name, []byte("Connection")):
				if bytes.EqualFold(value, []byte("close")) {
					keep = false
				}
			}
		}
		switch {
		case status/100 == 1:
			// An interim answer (we never send Expect: 100-continue, so
			// it is unexpected); the final one follows.
			off = body
			continue
		case status == 204 || status == 304:
			return status, keep, body, nil
		case chunked:
			n, err := chunkedEnd(b, body, eof)
			if n == 0 {
				return 0, false, 0, err
			}
			return status, keep, n, nil
		case length >= 0:
			if int64(len(b)-body) < length {
				return 0, false, 0, incomplete(eof)
			}
			return status, keep, body + int(length), nil
		case eof:
			return status, false, len(b), nil
		}
		return 0, false, 0, nil
	}
}

// chunkedEnd returns where a chunked body starting at b[off:] ends, or 0
// while it has not all arrived.
func chunkedEnd(b []byte, off int, eof bool) (int, error) {
	for {
		eol := bytes.IndexByte(b[off:], '\n')
		if eol < 0 {
			return 0, incomplete(eof)
		}
		size := bytes.TrimSpace(b[off : off+eol])
		if i := bytes.IndexByte(size, ';'); i >= 0 {
			size = size[:i]
		}
		n, ok := parseInt(size, 16)
		if !ok {
			return 0, errMalformed
		}
		off += eol + 1
		if n == 0 {
			// Trailers, if any, up to the empty line.
			for {
				eol := bytes.IndexByte(b[off:], '\n')
				if eol < 0 {
					return 0, incomplete(eof)
				}
				empty := eol == 0 || eol == 1 && b[off] == '\r'
				off += eol + 1
				if empty {
					return off, nil
				}
			}
		}
		if int64(len(b)-off) < n+2 {
			return 0, incomplete(eof)
		}
		off += int(n) + 2
	}
}

func incomplete(eof bool) error {
	if eof {
		return io.ErrUnexpectedEOF
	}
	return nil
}

func atoi3(b []byte) (int, bool) {
	n, ok := parseInt(b, 10)
	return int(n), ok && len(b) == 3
}

// parseInt parses a decimal or hexadecimal number of at most 15 digits
// without allocating, unlike strconv on a converted string.
func parseInt(b []byte, base int64) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		var d int64
		switch {
		case c >= '0' && c <= '9':
			d = int64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = int64(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = int64(c-'A') + 10
		default:
			return 0, false
		}
		n = n*base + d
	}
	return n, true
}

func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if bytes.EqualFold(b[i:i+len(s)], []byte(s)) {
			return true
		}
	}
	return false
}

// httpConn is one connection of the goroutine engine; it is not safe for
// concurrent use, except that Close may be called from another goroutine
// to abort a round trip.
type httpConn struct {
	nc  net.Conn
	buf []byte
	n   int // bytes of buf in use
}

func newHTTPConn(nc net.Conn) *httpConn {
	return &httpConn{nc: nc, buf: make([]byte, readBufferSize)}
}

// roundTrip sends req and reads the whole response. keep is false when the
// connection cannot carry another request; after an error it never can.
func (c *httpConn) roundTrip(req []byte) (status int, keep bool, err error) {
	if c.n > 0 {
		// Bytes nobody asked for: the connection is out of step.
		return 0, false, errMalformed
	}
	if _, err := c.nc.Write(req); err != nil {
		return 0, false, fmt.Errorf("write: %w", err)
	}
	for {
		m, rerr := c.nc.Read(c.buf[c.n:])
		c.n += m
		eof := errors.Is(rerr, io.EOF)
		if rerr != nil && !eof {
			return 0, false, fmt.Errorf("read: %w", rerr)
		}
		status, keep, used, err := parseResponse(c.buf[:c.n], eof)
		switch {
		case err != nil:
			return 0, false, err
		case used > 0:
			c.n = copy(c.buf, c.buf[used:c.n])
			return status, keep && !eof, nil
		case c.n == len(c.buf):
			return 0, false, errTooLarge
		}
	}
}
