package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
)

// sourceDialer returns a dialer whose connections leave from the address
// source (any port), or from the address the system chooses when source
// is nil. The goroutine engine and the setup's HTTP client use it; the
// epoll engine binds its sockets itself, alike.
func sourceDialer(source net.IP, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if source == nil {
		return d
	}
	d.LocalAddr = &net.TCPAddr{IP: source}
	// Control runs after the socket is made and before it is bound.
	d.Control = func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { bindNoPort(int(fd)) })
	}
	return d
}

// freshDialer is sourceDialer for a many-address flood: its connections
// are also reset when closed (see abortOnClose), from the start, so that
// even one the dialer itself closes, when the run ends in the middle of
// its connect, leaves nothing in TIME_WAIT.
func freshDialer(source net.IP, timeout time.Duration) *net.Dialer {
	d := sourceDialer(source, timeout)
	d.Control = func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			bindNoPort(int(fd))
			abortOnClose(int(fd))
		})
	}
	return d
}

// parseSource reads command's -source flag (empty: the system's choice,
// nil) and makes sure it is an address of this machine.
func parseSource(command, flag string) (net.IP, error) {
	if flag == "" {
		return nil, nil
	}
	source := net.ParseIP(flag)
	if source == nil {
		return nil, usageError{fmt.Sprintf("%s: -source %q is not an IP address", command, flag)}
	}
	if err := checkSource(source); err != nil {
		return nil, fmt.Errorf("%s: -source %s is not an address of this machine: %w", command, source, err)
	}
	return source, nil
}

// checkSource makes sure source is an address of this machine, so that a
// mistake fails the run at once rather than every connection attempt.
func checkSource(source net.IP) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(source.String(), "0"))
	if err != nil {
		return err
	}
	return ln.Close()
}

// sourceRange hands out the addresses of an IPv4 range in turn, round and
// round, to the connections of a many-address flood: each request leaves
// from an address the server has not seen for a while, as when a botnet or
// a pool of rented addresses attacks, so a limit per address never bites.
// It is safe for concurrent use.
type sourceRange struct {
	prefix netip.Prefix
	first  uint32
	size   uint64
	next   atomic.Uint64
}

// parseSourceRange parses a CIDR range such as 127.64.0.0/10. Below /31
// the range's first and last addresses (network and broadcast) are left
// out, as on a real network.
func parseSourceRange(s string) (*sourceRange, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, err
	}
	if !p.Addr().Is4() {
		return nil, fmt.Errorf("%s is not an IPv4 range (IPv6 has a single loopback address)", s)
	}
	p = p.Masked()
	a := p.Addr().As4()
	r := &sourceRange{prefix: p, first: binary.BigEndian.Uint32(a[:]), size: 1 << (32 - p.Bits())}
	if p.Bits() < 31 {
		r.first++
		r.size -= 2
	}
	return r, nil
}

// at returns the i-th address of the range, modulo its size.
func (r *sourceRange) at(i uint64) [4]byte {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], r.first+uint32(i%r.size))
	return a
}

// take returns the next address.
func (r *sourceRange) take() [4]byte { return r.at(r.next.Add(1) - 1) }

func (r *sourceRange) String() string { return r.prefix.String() }

// check makes sure the range's first and last addresses are of this
// machine, so that a mistake fails the run at once.
func (r *sourceRange) check() error {
	for _, i := range []uint64{0, r.size - 1} {
		a := r.at(i)
		if err := checkSource(net.IP(a[:])); err != nil {
			return err
		}
	}
	return nil
}
