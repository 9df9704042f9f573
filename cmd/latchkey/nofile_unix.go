//go:build unix

package main

import "syscall"

// openFileLimit is the process's limit on open file descriptors (Go
// raises the soft limit to the hard one at start), or 0 when unknown.
func openFileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return uint64(r.Cur)
}
