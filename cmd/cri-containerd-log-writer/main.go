// Command cri-containerd-log-writer is the container log writer that the runc
// shim starts for a task created in container_log_mode "shim" (see package
// shimlog/logwriter). It does what "cri-containerd log-writer" does, as a
// small executable: the shim starts one per container start and waits for it,
// so its start-up (package initialisation, page faults, dynamic loading) is
// part of every StartContainer. It therefore links the standard library only
// (TestDependencies), and is built with CGO_ENABLED=0 (a statically linked
// executable, no dynamic loader). The daemon uses it when it is installed
// next to the daemon's executable (shimlog.WriterExecutable) and runs itself
// otherwise.
package main

import (
	"fmt"
	"os"

	"github.com/cri-containerd/cri-containerd/shimlog/logwriter"
)

func main() {
	if err := logwriter.Main(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", logwriter.BinaryName, err)
		os.Exit(1)
	}
}
