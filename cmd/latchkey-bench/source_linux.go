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
