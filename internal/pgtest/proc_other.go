//go:build unix && !linux

package pgtest

import (
	"os"
	"syscall"
)

func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}

func killGroup(p *os.Process) {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		_ = p.Kill()
	}
}

// childrenOf cannot tell here; the backends exit by themselves once they
// see the postmaster gone.
func childrenOf(int) []int { return nil }
