//go:build !unix

package main

// lockDB is a no-op where flock is not available.
func lockDB(string) (func(), error) { return func() {}, nil }
