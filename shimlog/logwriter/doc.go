// Package logwriter is the container log writer that the containerd runc
// shim starts for a task created in container_log_mode "shim" (package
// shimlog is the daemon's side), its control protocol and its [Client]. It
// links the standard library only, as everything it imports does: the shim
// starts one writer per container start and waits for it, so the writer's
// start-up is part of every StartContainer (the tests of
// cmd/cri-containerd-log-writer check its dependencies).
//
// # How it runs
//
// The daemon creates the task with a "binary://" log URI (containerd's
// cio.BinaryIO) naming the writer under the name [BinaryName]: the dedicated
// cmd/cri-containerd-log-writer, or the daemon's own executable, which runs
// [Main] under that name. The runc shim (containerd-shim-runc-v2) starts that
// binary as its own child with the container's stdout pipe as fd 3, its
// stderr pipe as fd 4 and a "ready" pipe as fd 5 (environment CONTAINER_ID,
// CONTAINER_NAMESPACE); the URI's query becomes "key value" argument pairs in
// random order, so every option is a flag that takes a value. [Run] then:
//
//   - appends CRI log records (package crilog's CRILogger and LogFile: the
//     same format, partial/full tags and long-line split as the daemon's own
//     writer in package containerio) to the container log file;
//   - serves a small control socket (one JSON request line per connection):
//     "reopen" (CRI ReopenContainerLog: the log file is reopened under the
//     same mutex as the record writes, so no record is lost), "attach" (the
//     live output, framed, fanned out through crilog.Fanout so that a slow
//     client never blocks the log), "wait" (answers once the output has ended
//     and the log is closed) and "status";
//   - keeps the number of records it could not write (a full disk) in a
//     file of the container's directory ([ErrorsFileName], updated at most
//     once a second and finally before it reports the end), which the daemon
//     reads for cri_containerd_container_log_write_errors_total and its log
//     (the writer's own stderr goes nowhere; Options.Logf takes its
//     diagnostics), also after a daemon restart and after the writer has
//     exited;
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
package logwriter
