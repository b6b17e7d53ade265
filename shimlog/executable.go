package shimlog

import (
	"os"
	"path/filepath"

	"github.com/cri-containerd/cri-containerd/shimlog/logwriter"
)

// WriterExecutable returns the executable that runs as the log writer of a
// daemon whose executable is daemonExe: the dedicated writer (logwriter.BinaryName,
// cmd/cri-containerd-log-writer) when one is installed next to it, which
// starts faster, and the daemon's own executable otherwise (it runs as the
// writer when started under logwriter.BinaryName).
func WriterExecutable(daemonExe string) string {
	if daemonExe == "" {
		return daemonExe
	}
	w := filepath.Join(filepath.Dir(daemonExe), logwriter.BinaryName)
	if w == daemonExe {
		return daemonExe
	}
	if st, err := os.Stat(w); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
		return w
	}
	return daemonExe
}
