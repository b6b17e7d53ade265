// Command cri-containerd-log-writer is the container log writer that the runc
// shim starts for a task created in container_log_mode "shim" (see package
// shimlog). It does what "cri-containerd log-writer" does, as a smaller
// executable: the shim starts one per container start, and a process of the
// daemon's size (its package initialisation and page faults) is a large share
// of StartContainer. The daemon uses it when it is installed next to the
// daemon's executable (shimlog.WriterExecutable) and runs itself otherwise.
package main

import (
	"fmt"
	"os"

	"github.com/cri-containerd/cri-containerd/shimlog"
)

func main() {
	if err := shimlog.Main(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", shimlog.BinaryName, err)
		os.Exit(1)
	}
}
