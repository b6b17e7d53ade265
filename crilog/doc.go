// Package crilog writes kubelet CRI container logs and fans container output
// out to attached clients. It depends on the standard library only, so that
// the shim-side log writer (cmd/cri-containerd-log-writer), which the runc
// shim starts on every container start, stays a small executable that starts
// fast; the daemon uses it through package containerio.
//
// # Log format
//
// [CRILogger] turns one output stream into kubelet CRI log records:
//
//	<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>\n
//
// A line ending in "\n" (a trailing "\r\n" is dropped as a whole) becomes one
// "F" record. A line longer than the maximum line size is cut into records of
// exactly that size tagged "P", followed by the remainder tagged "F". Content
// still buffered without a newline when the stream ends (Close) is written as a
// "P" record, as containerd does. A maximum line size <= 0 means unlimited.
// Every record is handed to the sink in one Write call.
//
// [LogFile] is that sink for a container: a log file opened
// O_CREATE|O_APPEND|O_WRONLY|O_NOFOLLOW with mode 0640 whose Write is
// serialized by a mutex, so records of stdout and stderr never interleave.
// [LogFile.Reopen] swaps the file under the same mutex (CRI ReopenContainerLog:
// kubelet renames the file, then asks for a reopen; every record goes either to
// the renamed file or to the new one, none is lost). The parent directory must
// exist.
//
// # Attach fan-out
//
// [Fanout] feeds one output stream to attached clients through a bounded
// queue per client: a client that falls too far behind is detached
// ([ErrSlowAttacher]) and a failing one is dropped; neither ever blocks the
// publisher (the log).
package crilog

import "errors"

var (
	// ErrClosed is returned when using a closed LogFile or CRILogger
	// (package containerio returns it for its closed IOs too). Errors that
	// carry it always say what was closed.
	ErrClosed = errors.New("closed")
	// ErrSlowAttacher is why an attached client that does not keep up with
	// the output is detached.
	ErrSlowAttacher = errors.New("attached client too slow, detached")
)
