//go:build !unix

package main

// openFileLimit is unknown outside Unix: max_connections then defaults
// to defaultMaxConnections.
func openFileLimit() uint64 { return 0 }
