// Package shimlog is the daemon's side of the container log writer that runs
// under the containerd shim instead of inside the daemon (config
// container_log_mode = "shim"), so that container output never depends on
// cri-containerd being up. [Remote] (a containerio.Remote) gives the task a
// "binary://" log URI, serves CRI Attach and ReopenContainerLog through the
// writer's control socket and reads the writer's log write error count;
// [WriterExecutable] chooses the executable the shim starts.
//
// The writer itself (the process the shim starts, its control protocol and
// client) is package shimlog/logwriter, which links the standard library
// only: the shim starts it on every container start.
//
// # What binary IO cannot do
//
// The runc shim wires no stdin into the process with a binary log URI and no
// terminal: its binaryIO has no stdin pipe and sets only runc's stdout and
// stderr (the process gets /dev/null), and the stdin FIFO is copied only for
// fifo:// and file:// outputs. Containers with stdin and no terminal (CRI
// stdin=true, tty=false) therefore keep the daemon-owned FIFOs. With a
// terminal the shim copies the stdin FIFO into the console whatever the
// output, so such containers get the log URI and a stdin FIFO that the daemon
// writes (package containerio). With a terminal the shim copies the console
// into fd 3 and leaves fd 4 unused; the writer then logs one stream (stdout),
// as the daemon does.
//
// An attach request is answered only once the client is subscribed to the
// output, so the daemon forwards the client's stdin after that and no output
// the stdin causes is missed.
package shimlog
