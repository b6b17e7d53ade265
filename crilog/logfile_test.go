package crilog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cri-containerd/cri-containerd/crilog/crilogtest"
)

func TestOpenLogFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenLogFile(filepath.Join(dir, "missing", "c.log")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing parent: %v, want ErrNotExist", err)
	}

	path := filepath.Join(dir, "c.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lf, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lf.Write([]byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if got := crilogtest.ReadFile(t, path); got != "old\nnew\n" {
		t.Fatalf("appending: %q", got)
	}
	if err := lf.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lf.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := lf.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := lf.Reopen(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reopen after Close: %v", err)
	}

	// New file: mode 0640 at most (umask may clear more).
	p2 := filepath.Join(dir, "new.log")
	lf2, err := OpenLogFile(p2)
	if err != nil {
		t.Fatal(err)
	}
	defer lf2.Close()
	fi, err := os.Stat(p2)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&^LogFileMode != 0 {
		t.Fatalf("mode %v exceeds %v", fi.Mode().Perm(), LogFileMode)
	}

	// Symbolic links are refused.
	link := filepath.Join(dir, "link.log")
	if err := os.Symlink(p2, link); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLogFile(link); err == nil {
		t.Fatal("opening a symlink succeeded")
	}
}

func TestLogFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	lf, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := NewCRILogger(lf, Stdout, -1)
	_, _ = l.Write([]byte("one\ntw"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	_, _ = l.Write([]byte("o\n")) // still the old file: not reopened yet
	if err := lf.Reopen(); err != nil {
		t.Fatal(err)
	}
	_, _ = l.Write([]byte("three\n"))
	_ = l.Close()
	_ = lf.Close()

	old := crilogtest.Reassemble(crilogtest.Parse(t, crilogtest.ReadFile(t, path+".1")))["stdout"]
	cur := crilogtest.Reassemble(crilogtest.Parse(t, crilogtest.ReadFile(t, path)))["stdout"]
	if strings.Join(old, ",") != "one,two" || strings.Join(cur, ",") != "three" {
		t.Fatalf("rotated %q, current %q", old, cur)
	}
}

func TestLogFileReopenFailureKeepsFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	lf, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil { // a directory where the log should be
		t.Fatal(err)
	}
	if err := lf.Reopen(); err == nil {
		t.Fatal("Reopen onto a directory succeeded")
	}
	if _, err := lf.Write([]byte("kept\n")); err != nil {
		t.Fatal(err)
	}
	if got := crilogtest.ReadFile(t, path+".1"); got != "kept\n" {
		t.Fatalf("old file has %q", got)
	}
}

// TestLogFileReopenConcurrent rotates the log repeatedly while two streams
// write numbered lines: every line must be in exactly one file, in order.
func TestLogFileReopenConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	lf, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	counts := map[string]int{}
	var cmu sync.Mutex
	for _, stream := range []Stream{Stdout, Stderr} {
		wg.Go(func() {
			l := NewCRILogger(lf, stream, 8)
			i := 0
			for ; !stop.Load() || i < 2000; i++ {
				_, _ = l.Write([]byte(strconv.Itoa(i) + " some text\n"))
			}
			_ = l.Close()
			cmu.Lock()
			counts[string(stream)] = i
			cmu.Unlock()
		})
	}
	const rotations = 20
	for r := 1; r <= rotations; r++ {
		if err := os.Rename(path, fmt.Sprintf("%s.%02d", path, r)); err != nil {
			t.Fatal(err)
		}
		if err := lf.Reopen(); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	_ = lf.Close()

	var all []crilogtest.Record
	for r := 1; r <= rotations; r++ {
		all = append(all, crilogtest.Parse(t, crilogtest.ReadFile(t, fmt.Sprintf("%s.%02d", path, r)))...)
	}
	all = append(all, crilogtest.Parse(t, crilogtest.ReadFile(t, path))...)
	lines := crilogtest.Reassemble(all)
	for s, n := range counts {
		if len(lines[s]) != n {
			t.Fatalf("%s: %d lines in the files, %d written", s, len(lines[s]), n)
		}
		for i, l := range lines[s] {
			if want := strconv.Itoa(i) + " some text"; l != want {
				t.Fatalf("%s line %d = %q, want %q", s, i, l, want)
			}
		}
	}
}
