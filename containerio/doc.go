// Package containerio is the stdio plumbing between containerd tasks and the
// CRI: FIFOs, the kubelet-format container log, attach fan-out and stdin.
//
// # Log format
//
// The CRI log records, the log file and the attach fan-out are package
// crilog's ([crilog.CRILogger], [crilog.LogFile], [crilog.Fanout]), which the
// shim-side log writer shares; this package accounts their write errors
// ([LogErrorReporter], [WithWriteErrors]).
//
// # Container IO
//
// [ContainerIO] owns one container's stdio. It is made by [New] with no side
// effect on disk. Then exactly one of:
//
//   - [ContainerIO.Creator]: a cio.Creator for container.NewTask. It creates
//     <FIFODir>/<id>-stdin|stdout|stderr (stdin only when asked, no stderr with
//     a TTY), opens the log file and starts copying;
//   - [ContainerIO.Attacher]: a cio.Attach for container.Task after a daemon
//     restart. It re-opens the FIFO paths that containerd stored for the task and
//     appends to the same log file. The runc shim keeps every output FIFO open
//     for reading and writing, so output written while the daemon was down waits
//     in the pipe (up to its 64 KiB capacity) and is read after re-attaching.
//
// Each output stream is copied by one goroutine into the CRI log and into every
// attached stream. Attached streams are fed through a bounded per-attacher
// queue: a slow attacher is detached ([crilog.ErrSlowAttacher]) and a failing one is
// dropped; neither ever blocks the log.
//
// [ContainerIO.Attach] serves CRI Attach: it forwards the client's stdin to the
// container stdin (kept open by ContainerIO from the start, when the container
// has stdin) and blocks until the container output ends, the client goes away
// or ctx is done. With StdinOnce and no TTY, the end of the client's stdin
// closes the container stdin (and calls AttachOptions.CloseStdin, which should
// call task.CloseIO); otherwise the end of the client's stdin only detaches that
// client.
//
// Lifetime: both return [ContainerIO.TaskIO], the cio.IO view containerd's
// client uses (task.Delete calls its Cancel, Wait, then Close).
// [ContainerIO.Wait] (with an optional timeout) returns once the output has
// reached EOF (the shim closes the FIFOs when the container's output ends) and
// the log is flushed and closed; [ContainerIO.Done] is the same as a channel.
// [ContainerIO.Close] stops the copying but never removes the FIFOs, so the
// daemon may Close on shutdown and re-attach later. [ContainerIO.Cleanup]
// closes and removes FIFODir; call it when the container is removed (also after
// a restart, from a ContainerIO made by New with the same Config), or remove a
// directory that contains FIFODir.
//
// Daemon restarts: the runc shim opens every FIFO itself for reading and
// writing, so a container keeps its stdin and its pipes while the daemon is
// down, and output written meanwhile (up to the pipe buffer, 64 KiB per
// stream) is read by the re-attached ContainerIO. Limitation: if the
// container also exits before the daemon is back, the shim closes the pipes
// and the kernel discards what was buffered in them; that output is lost.
//
// # Exec IO
//
// [ExecIO] is the IO of one exec process (ExecSync and streaming Exec): FIFOs
// in a fresh temporary directory under a root, a cio.Creator for task.Exec, and
// [ExecIO.Attach] that copies the output to the given writers (blocking: an exec
// client gets all of its output) and forwards stdin. Close removes the
// directory. Exec IO is not re-attached after a restart.
package containerio
