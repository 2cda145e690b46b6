//go:build linux

package xmpptest

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
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

// listensOn reports whether process pid has a listening TCP socket bound to
// 127.0.0.1 on each of ports. A listener on another address (0.0.0.0, say)
// does not count: the servers must listen on loopback only.
func listensOn(pid int, ports []int) (bool, error) {
	inodes, err := loopbackListeners()
	if err != nil {
		return false, err
	}
	mine, err := socketInodes(pid)
	if err != nil {
		return false, err
	}
	for _, port := range ports {
		if !slices.ContainsFunc(inodes[port], func(ino string) bool { return mine[ino] }) {
			return false, nil
		}
	}
	return true, nil
}

// listenerOwner describes who listens on 127.0.0.1:port, for errors.
func listenerOwner(pid int, port int) string {
	inodes, err := loopbackListeners()
	if err != nil {
		return err.Error()
	}
	if len(inodes[port]) == 0 {
		return "nobody"
	}
	mine, err := socketInodes(pid)
	if err != nil {
		return fmt.Sprintf("someone (%v)", err)
	}
	for _, ino := range inodes[port] {
		if mine[ino] {
			return "the server"
		}
	}
	return "another process"
}

// loopbackListeners returns the inodes of the listening IPv4 TCP sockets
// bound to 127.0.0.1, by port.
func loopbackListeners() (map[int][]string, error) {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, err
	}
	// 127.0.0.1 as the kernel prints it: the address bytes (network
	// order) read as a host integer.
	loHex := fmt.Sprintf("%08X", binary.NativeEndian.Uint32([]byte{127, 0, 0, 1}))
	const listen = "0A"
	out := map[int][]string{}
	lines := strings.Split(string(data), "\n")
	for _, line := range lines[1:] { // after the header
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != listen {
			continue
		}
		addr, portHex, ok := strings.Cut(f[1], ":")
		if !ok || addr != loHex {
			continue
		}
		port, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil {
			continue
		}
		out[int(port)] = append(out[int(port)], f[9])
	}
	return out, nil
}

// socketInodes returns the inodes of the sockets process pid has open.
func socketInodes(pid int) (map[string]bool, error) {
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd"
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(fdDir + "/" + fd.Name())
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			out[strings.TrimSuffix(ino, "]")] = true
		}
	}
	return out, nil
}
