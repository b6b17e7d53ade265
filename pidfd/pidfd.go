// Package pidfd holds a pidfd of a task's init process (a container's, or a
// pod's pause), so that a stop signals it without containerd and runc.
package pidfd

import (
	"errors"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Init is a pidfd of a task's init process (a container's, a pod's pause),
// held from its start by this daemon until its exit is recorded. A stop
// signals the init through it: a kill(2) on the process itself, where
// containerd's Tasks/Kill is a round trip to containerd and on to the shim,
// which runs `runc kill` (a process: 15-20 ms of CPU on a small node) for
// the same kill(2). A pidfd names one process for its lifetime, so a pid
// reused after the init's exit is never signalled. Without one (a task
// recovered after a restart, a kernel without pidfd_open, a signal to every
// process of a container) signals go through containerd. The zero value
// holds none.
type Init struct {
	mu sync.Mutex
	fd int // -1: none
}

// Open takes a pidfd of pid (the init, just started). Failures leave none.
func (p *Init) Open(pid uint32) {
	if pid == 0 {
		return
	}
	fd, err := unix.PidfdOpen(int(pid), unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd > 0 {
		_ = unix.Close(p.fd)
	}
	p.fd = fd
}

// Signal sends sig to the init through the pidfd. It reports false when it
// holds none or the kernel refused (the caller goes through containerd);
// an init that is gone already (ESRCH: exited and reaped) counts as
// signalled, its exit being on its way.
func (p *Init) Signal(sig syscall.Signal) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd <= 0 {
		return false
	}
	err := unix.PidfdSendSignal(p.fd, sig, nil, 0)
	return err == nil || errors.Is(err, unix.ESRCH)
}

// Close drops the pidfd (idempotent).
func (p *Init) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd > 0 {
		_ = unix.Close(p.fd)
	}
	p.fd = -1
}
