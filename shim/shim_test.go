package shim

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestProcStartTime: a process's start time comes from /proc/<pid>/stat
// and boot time, not from the /proc inode (made when first looked at).
func TestProcStartTime(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	before := time.Now().Add(-2 * time.Second)
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	got := Proc{}.startTime(cmd.Process.Pid)
	if got.Before(before) || got.After(time.Now().Add(2*time.Second)) {
		t.Errorf("start time of a fresh process: %v, want about %v", got, time.Now())
	}
	if init := (Proc{}).startTime(1); init.IsZero() || time.Since(init) < 0 {
		t.Errorf("start time of pid 1: %v", init)
	}
	if ppid, ok := (Proc{}).ppid(cmd.Process.Pid); !ok || ppid != os.Getpid() {
		t.Errorf("ppid = %d, %v; want %d", ppid, ok, os.Getpid())
	}
}

// TestMain lets the test binary play a shim: run with FAKE_SHIM=1 it waits
// (its argv, chosen by the test, looks like containerd-shim-runc-v2's).
func TestMain(m *testing.M) {
	if os.Getenv("FAKE_SHIM") == "1" {
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startFakeShim starts a process whose command line is that of a runc v2
// shim serving id in namespace; it ends with the test.
func startFakeShim(t *testing.T, namespace, id string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{
		Path: self,
		Args: []string{filepath.Join(t.TempDir(), "containerd-shim-runc-v2"), "-namespace", namespace, "-id", id, "-address", "/run/x.sock"},
		Env:  append(os.Environ(), "FAKE_SHIM=1"),
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return cmd
}

func TestListFindsShims(t *testing.T) {
	cmd := startFakeShim(t, "ns-list", "id-list")
	deadline := time.Now().Add(5 * time.Second)
	for {
		shims, err := Proc{}.List()
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(shims, func(s Process) bool { return s.Pid == cmd.Process.Pid })
		if i >= 0 {
			s := shims[i]
			if s.Namespace != "ns-list" || s.ID != "id-list" || s.Address != "/run/x.sock" || s.Started.IsZero() {
				t.Errorf("shim = %+v", s)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake shim %d not listed", cmd.Process.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReapKillsOnlyTheShimsOfTheID: the shims of (namespace, id) are killed
// with their children and runc's state removed; shims of another ID or
// namespace are left alone.
func TestReapKillsOnlyTheShimsOfTheID(t *testing.T) {
	target := startFakeShim(t, "ns-reap", "victim")
	other := startFakeShim(t, "ns-reap", "bystander")
	otherNS := startFakeShim(t, "ns-other", "victim")
	var deleted []string
	r := &Reaper{Kill: killPid, RuncDelete: func(root, id string) error {
		deleted = append(deleted, root+"/"+id)
		return nil
	}}
	n, err := r.Reap("ns-reap", "victim", "/run/runc/ns-reap")
	if err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1 shim", n, err)
	}
	st, err := target.Process.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.Success() {
		t.Error("the victim's shim was not killed")
	}
	for _, c := range []*exec.Cmd{other, otherNS} {
		if b, err := os.ReadFile(filepath.Join("/proc", itoa(c.Process.Pid), "cmdline")); err != nil || len(b) == 0 {
			t.Errorf("shim %d of another object was killed", c.Process.Pid)
		}
	}
	if !slices.Equal(deleted, []string{"/run/runc/ns-reap/victim"}) {
		t.Errorf("runc deletes = %v", deleted)
	}
	// Nothing left to reap: no runc call either.
	if n, err := r.Reap("ns-reap", "victim", "/run/runc/ns-reap"); n != 0 || err != nil || len(deleted) != 1 {
		t.Errorf("second Reap = %d, %v (runc deletes %v)", n, err, deleted)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
