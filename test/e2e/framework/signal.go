package framework

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// SignalDaemon sends sig to the daemon and waits up to timeout for it to
// exit. It reports the exit state and whether the process exited; a process
// still running after timeout is left as is (the test's cleanup kills it).
// After an exit, d.Start starts the daemon again.
func SignalDaemon(t testing.TB, d *Daemon, sig syscall.Signal, timeout time.Duration) (*os.ProcessState, bool) {
	t.Helper()
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		t.Fatal("SignalDaemon: daemon not running")
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("SignalDaemon: %v", err)
	}
	select {
	case <-done:
	case <-time.After(timeout):
		return nil, false
	}
	d.mu.Lock()
	if d.conn != nil {
		_ = d.conn.Close()
		d.conn = nil
	}
	d.cmd = nil
	d.mu.Unlock()
	return cmd.ProcessState, true
}
