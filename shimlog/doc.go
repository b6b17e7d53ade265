// Package shimlog is the container log writer that runs under the containerd
// shim instead of inside the daemon (config container_log_mode = "shim"), so
// that container output never depends on cri-containerd being up.
//
// # How it runs
//
// The daemon creates the task with a "binary://" log URI (containerd's
// cio.BinaryIO) naming our own executable under the name [BinaryName]. The
// runc shim (containerd-shim-runc-v2) starts that binary as its own child with
// the container's stdout pipe as fd 3, its stderr pipe as fd 4 and a "ready"
// pipe as fd 5 (environment CONTAINER_ID, CONTAINER_NAMESPACE); the URI's
// query becomes "key value" argument pairs in random order, so every option is
// a flag that takes a value. [Run] then:
//
//   - appends CRI log records (package containerio's CRILogger and LogFile:
//     same format, partial/full tags and long-line split as the daemon's
//     writer) to the container log file;
//   - serves a small control socket (one JSON request line per connection):
//     "reopen" (CRI ReopenContainerLog: the log file is reopened under the
//     same mutex as the record writes, so no record is lost), "attach" (the
//     live output, framed, fanned out through containerio.Fanout so that a slow
//     client never blocks the log), "wait" (answers once the output has ended
//     and the log is closed) and "status";
//   - keeps the number of records it could not write (a full disk) in a
//     file of the container's directory ([ErrorsFileName], updated at most
//     once a second and finally before it reports the end), which the daemon
//     reads for cri_containerd_container_log_write_errors_total and its log
//     (the writer's own stderr goes nowhere), also after a daemon restart
//     and after the writer has exited;
//   - writes one byte to fd 5 once the log file is open and the socket
//     listens;
//   - exits once the output has ended. The runc shim keeps the write ends of
//     the pipes open until the task is deleted, then closes them and sends
//     SIGTERM, waiting up to 12 s: on SIGTERM the writer keeps reading until
//     end of file (at most Options.DrainTimeout), writes a trailing incomplete
//     line as a partial record, and exits 0.
//
// Because the writer is the shim's child, a daemon crash or restart does not
// stop it: the container never blocks on a full pipe and no output is lost
// while the daemon is down.
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
