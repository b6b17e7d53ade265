package doctor

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestLinuxHostStartTime: a process's start time comes from /proc/<pid>/stat
// and boot time, not from the /proc inode (made when first looked at).
func TestLinuxHostStartTime(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	before := time.Now().Add(-2 * time.Second)
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	got := LinuxHost{}.startTime(cmd.Process.Pid)
	if got.Before(before) || got.After(time.Now().Add(2*time.Second)) {
		t.Errorf("start time of a fresh process: %v, want about %v", got, time.Now())
	}
	if init := (LinuxHost{}).startTime(1); init.IsZero() || time.Since(init) < 0 {
		t.Errorf("start time of pid 1: %v", init)
	}
	if ppid, ok := (LinuxHost{}).ppid(cmd.Process.Pid); !ok || ppid != os.Getpid() {
		t.Errorf("ppid = %d, %v; want %d", ppid, ok, os.Getpid())
	}
}
