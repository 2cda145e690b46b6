//go:build unix && !linux

package ldaptest

import (
	"os"
	"syscall"
	"time"
)

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func killGroup(p *os.Process) {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		_ = p.Kill()
	}
}

// waitStopped cannot tell here: SIGSTOP is taken as delivered.
func waitStopped(int, time.Duration) error { return nil }
