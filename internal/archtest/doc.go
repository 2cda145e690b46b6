// Package archtest holds the tests that keep rostergate's package graph as
// docs/architecture.md draws it: who may import whom, which packages may
// link a store driver, and that every package says what it is.
package archtest
