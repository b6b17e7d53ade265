package shimlog

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cri-containerd/cri-containerd/shimlog/logwriter"
)

func TestWriterExecutable(t *testing.T) {
	dir := t.TempDir()
	daemon := filepath.Join(dir, "cri-containerd")
	if err := os.WriteFile(daemon, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	writer := filepath.Join(dir, logwriter.BinaryName)

	if got := WriterExecutable(daemon); got != daemon {
		t.Errorf("no writer installed: got %q, want the daemon %q", got, daemon)
	}
	if err := os.WriteFile(writer, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := WriterExecutable(daemon); got != daemon {
		t.Errorf("writer not executable: got %q, want the daemon %q", got, daemon)
	}
	if err := os.Chmod(writer, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := WriterExecutable(daemon); got != writer {
		t.Errorf("writer installed: got %q, want %q", got, writer)
	}
	if got := WriterExecutable(writer); got != writer {
		t.Errorf("daemon named like the writer: got %q", got)
	}
	if got := WriterExecutable(""); got != "" {
		t.Errorf("empty: got %q", got)
	}
}
