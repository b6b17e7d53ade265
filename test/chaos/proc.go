package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Proc is a process the campaign started and may kill and restart with the
// same command line. Only processes started through Proc are ever killed.
type Proc struct {
	Name    string
	Path    string
	Args    []string
	Env     []string // added to the campaign's environment
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts the process (its own session; output appended to LogPath).
func (p *Proc) Start() error {
	if p.cmd != nil {
		return fmt.Errorf("%s already running (pid %d)", p.Name, p.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "\n==== %s chaos: starting %s %v\n", time.Now().Format(time.RFC3339Nano), p.Path, p.Args)
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: nothing outlives an interrupted campaign.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("starting %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

// Pid is the running process's pid (0: not running).
func (p *Proc) Pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exited reports whether the started process has exited by itself.
func (p *Proc) Exited() bool {
	if p.cmd == nil {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill9 sends SIGKILL to the process and reaps it.
func (p *Proc) Kill9() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// Stop sends SIGTERM, then SIGKILL after timeout. It reports whether the
// process stopped within the timeout.
func (p *Proc) Stop(timeout time.Duration) bool {
	if p.cmd == nil {
		return true
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	ok := true
	select {
	case <-p.done:
	case <-time.After(timeout):
		ok = false
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
	return ok
}
