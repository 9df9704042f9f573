//go:build !linux

package main

// bindNoPort does nothing outside Linux (see source_linux.go).
func bindNoPort(int) {}

// abortOnClose does nothing outside Linux (see source_linux.go).
func abortOnClose(int) {}
