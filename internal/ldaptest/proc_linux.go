//go:build linux

package ldaptest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// sysProcAttr runs slapd in a process group of its own, and has the kernel
// kill it if the test binary dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends SIGKILL to the process group led by p.
func killGroup(p *os.Process) {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		_ = p.Kill()
	}
}

// waitStopped waits, at most d, until every thread of pid is stopped (state
// T in /proc/PID/task/*/stat).
func waitStopped(pid int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		stats, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/stat")
		stopped := len(stats) > 0
		for _, p := range stats {
			b, err := os.ReadFile(p)
			// pid (comm) state ...: comm may hold spaces and parentheses.
			i := bytes.LastIndexByte(b, ')')
			if err == nil && (i < 0 || i+2 >= len(b) || b[i+2] != 'T') {
				stopped = false
				break
			}
		}
		if stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("slapd (pid %d) not stopped within %v of SIGSTOP", pid, d)
		}
		time.Sleep(time.Millisecond)
	}
}
