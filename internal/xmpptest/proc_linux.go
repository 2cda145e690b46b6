//go:build linux

package xmpptest

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr makes the kernel kill the server if the process that started
// it dies, so a crashed test or demo does not leave a server behind, and
// puts the server in a process group of its own, so that killGroup reaches
// the helper programs it starts (ejabberd's erl_child_setup, memsup, eimp).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// killGroup sends SIGKILL to the process group led by p. Call it only while
// p has not been waited for: until then its id is still ours.
func killGroup(p *os.Process) {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		_ = p.Kill()
	}
}

// hasOpenFilesUnder reports whether process pid has a file open in one of
// dirs (absolute, clean paths).
func hasOpenFilesUnder(pid int, dirs ...string) (bool, error) {
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd"
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false, err
	}
	for _, fd := range fds {
		target, err := os.Readlink(fdDir + "/" + fd.Name())
		if err != nil {
			continue // closed meanwhile
		}
		for _, d := range dirs {
			if strings.HasPrefix(target, d+"/") {
				return true, nil
			}
		}
	}
	return false, nil
}
