//go:build !unix

package postgres

import "net"

// unsolicited cannot tell here: pgxpool's ping after a second idle does.
func unsolicited(net.Conn) bool { return false }
