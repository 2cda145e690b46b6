//go:build unix

package postgres

import (
	"crypto/tls"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// unsolicited reports whether an idle connection has something to read:
// the server sent it, unasked, a message (say the FATAL of a terminated
// backend, or of a server shutting down) or closed it. One poll(2) with
// no wait; false where it cannot tell.
func unsolicited(c net.Conn) bool {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	readable := false
	_ = raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		readable = err == nil && n > 0 && fds[0].Revents != 0
	})
	return readable
}
