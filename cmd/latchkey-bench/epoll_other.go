//go:build !linux

package main

// Only Linux has the epoll engine; elsewhere every connection gets a
// goroutine.
const defaultEngine = "goroutines"

func newEpollEngine(*loadRun) (engine, error) {
	return nil, usageError{"load: the epoll engine needs Linux; use -engine goroutines"}
}
