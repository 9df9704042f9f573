package main

import (
	"net"
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

// checkSource makes sure source is an address of this machine, so that a
// mistake fails the run at once rather than every connection attempt.
func checkSource(source net.IP) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(source.String(), "0"))
	if err != nil {
		return err
	}
	return ln.Close()
}
