//go:build !linux

package xmpptest

import (
	"errors"
	"os"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func killGroup(p *os.Process) { _ = p.Kill() }

// hasOpenFilesUnder cannot tell here: Stop waits for the exit instead.
func hasOpenFilesUnder(int, ...string) (bool, error) {
	return false, errors.ErrUnsupported
}

// listensOn cannot tell here: waitReady relies on the servers' own reports.
func listensOn(int, []int) (bool, error) { return false, errors.ErrUnsupported }

func listenerOwner(int, int) string { return "unknown" }
