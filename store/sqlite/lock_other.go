//go:build !unix

package sqlite

import "context"

// Hold is a no-op where flock is not available.
func (db *DB) Hold(context.Context) (func(), error) { return func() {}, nil }
