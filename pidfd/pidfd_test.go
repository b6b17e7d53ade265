package pidfd

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
)

// TestInitProcSignalsThroughPidfd: a stop's signal reaches the process the
// pidfd was opened on; once it has exited and been reaped the signal counts
// as sent (its exit is on its way), and after close the caller is sent to
// containerd.
func TestInitProcSignalsThroughPidfd(t *testing.T) {
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var p Init
	if p.Signal(syscall.SIGTERM) {
		t.Fatal("a handle with no pidfd reported a signal sent")
	}
	p.Open(uint32(cmd.Process.Pid))
	if !p.Signal(syscall.SIGTERM) {
		_ = cmd.Process.Kill()
		t.Fatal("the signal through the pidfd was not sent")
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("sleep ended with %v, want killed by SIGTERM", err)
	}
	if !p.Signal(syscall.SIGKILL) {
		t.Error("a signal to an init already reaped is not reported sent")
	}
	p.Close()
	p.Close()
	if p.Signal(syscall.SIGKILL) {
		t.Error("a closed handle reported a signal sent")
	}
}

// TestInitProcNotOpenedForNothing: no pid, or one that is not a process,
// leaves no pidfd.
func TestInitProcNotOpenedForNothing(t *testing.T) {
	var p Init
	p.Open(0)
	if p.Signal(syscall.SIGKILL) {
		t.Error("pid 0 opened a pidfd")
	}
	p.Open(1 << 30) // above any pid_max
	if p.Signal(syscall.SIGKILL) {
		t.Error("a pid that is no process opened a pidfd")
	}
}
