//go:build linux

package xmpptest

import "syscall"

// sysProcAttr makes the kernel kill prosody if the process that started it
// dies, so a crashed test or demo does not leave a server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
