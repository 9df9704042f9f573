//go:build linux

package main

import "syscall"

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (4.2 and later),
// which the syscall package names on a few architectures only.
const ipBindAddressNoPort = 0x18

// bindNoPort asks the kernel to choose the local port of a socket bound to
// a -source address at connect, not at bind. Bound with port 0, a socket
// otherwise takes an ephemeral port for itself alone, whatever the
// destination, and a run that reconnects often (a server closing its
// connections) would run out of ports within a minute of TIME_WAIT.
// Failure is harmless: the bind then chooses the port, as it used to.
func bindNoPort(fd int) {
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
}

// abortOnClose makes closing the socket reset the connection (SO_LINGER
// 0) rather than end it in order. A many-address flood opens a connection
// per request; ended in order by the tool, each would then sit a minute in
// TIME_WAIT on the tool's side, and hundreds of thousands of them fill the
// kernel's table (tcp_max_tw_buckets), after which the kernel drops and
// warns rather than keeps them.
func abortOnClose(fd int) {
	_ = syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
}
