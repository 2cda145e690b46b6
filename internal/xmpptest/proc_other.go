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
