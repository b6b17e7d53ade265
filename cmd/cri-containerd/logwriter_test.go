package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cri-containerd/cri-containerd/shimlog/logwriter"
)

func TestLogWriterArgs(t *testing.T) {
	for _, tc := range []struct {
		argv0 string
		args  []string
		want  []string
		ok    bool
	}{
		{"/usr/bin/cri-containerd", []string{"--socket-path", "x"}, nil, false},
		{"/usr/bin/cri-containerd", []string{"log-writer", "--control", "c"}, []string{"--control", "c"}, true},
		{"/run/x/" + logwriter.BinaryName, []string{"--control", "c"}, []string{"--control", "c"}, true},
		{"/usr/bin/cri-containerd", nil, nil, false},
	} {
		got, ok := logWriterArgs(tc.argv0, tc.args)
		if ok != tc.ok || strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("logWriterArgs(%q, %q) = %q, %v", tc.argv0, tc.args, got, ok)
		}
	}
}

func TestLogWriterOptions(t *testing.T) {
	// The shim passes the URI query as pairs in any order.
	o, err := logWriterOptions([]string{"--tty", "true", "--max-line-size", "16384", "--control", "/s", "--log-path", "/l"})
	if err != nil {
		t.Fatal(err)
	}
	if !o.TTY || o.MaxLineSize != 16384 || o.ControlPath != "/s" || o.LogPath != "/l" || o.DrainTimeout != logwriter.DefaultDrainTimeout {
		t.Fatalf("options %+v", o)
	}
	for _, bad := range [][]string{
		{"--log-path", "/l"},                   // no control
		{"--control", "/s", "--tty", "maybe"},  // bad bool
		{"--control", "/s", "extra"},           // positional
		{"--control", "/s", "--unknown", "x"},  // unknown flag
		{"--control", "/s", "--max-line-size"}, // missing value
	} {
		if _, err := logWriterOptions(bad); err == nil {
			t.Errorf("logWriterOptions(%q) succeeded", bad)
		}
	}
}

// TestLogWriterProcess runs the log writer the way containerd-shim-runc-v2
// does: output pipes as fds 3 and 4, a ready pipe as fd 5, SIGTERM at the end.
func TestLogWriterProcess(t *testing.T) {
	if os.Getenv("SHIMLOG_TEST_CHILD") == "1" {
		return
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	ctlPath := filepath.Join(dir, "c.sock")
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	readyR, readyW, _ := os.Pipe()
	cmd := exec.Command(os.Args[0], "-test.run=TestLogWriterChild", "--", "--control", ctlPath, "--log-path", logPath, "--tty", "false")
	cmd.Env = append(os.Environ(), "SHIMLOG_TEST_CHILD=1", "CONTAINER_ID=c1", "CONTAINER_NAMESPACE=ns")
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outR.Close()
	errR.Close()
	readyW.Close()
	b := make([]byte, 1)
	if n, _ := readyR.Read(b); n != 1 {
		_ = cmd.Wait()
		t.Fatalf("log writer not ready")
	}
	if _, err := outW.WriteString("hello\npart"); err != nil {
		t.Fatal(err)
	}
	if _, err := errW.WriteString("oops\n"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := logwriter.Client{Path: ctlPath}.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pid != cmd.Process.Pid {
		t.Fatalf("status pid %d, want %d", st.Pid, cmd.Process.Pid)
	}
	// As the shim does on task delete: close the pipes, then SIGTERM.
	outW.Close()
	errW.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("log writer exit: %v", err)
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{" stdout F hello\n", " stdout P part\n", " stderr F oops\n"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if _, err := os.Stat(ctlPath); !os.IsNotExist(err) {
		t.Errorf("control socket left: %v", err)
	}
	_, _ = io.Copy(io.Discard, readyR)
}

// TestLogWriterChild is the child process of TestLogWriterProcess.
func TestLogWriterChild(t *testing.T) {
	if os.Getenv("SHIMLOG_TEST_CHILD") != "1" {
		t.Skip("child of TestLogWriterProcess")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	if err := runLogWriter(args); err != nil {
		t.Fatal(err)
	}
	os.Exit(0)
}
