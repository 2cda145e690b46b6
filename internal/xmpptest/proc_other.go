//go:build !linux

package xmpptest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
