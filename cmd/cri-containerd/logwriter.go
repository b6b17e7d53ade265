package main

import (
	"path/filepath"

	"github.com/cri-containerd/cri-containerd/shimlog"
)

// logWriterArgs reports whether this process is the shim's log writer, and
// its arguments: the executable runs under shimlog.BinaryName (the shim
// starts it through the daemon's symbolic link) or as "cri-containerd
// log-writer ARGS".
func logWriterArgs(argv0 string, args []string) ([]string, bool) {
	if filepath.Base(argv0) == shimlog.BinaryName {
		return args, true
	}
	if len(args) > 0 && args[0] == shimlog.Subcommand {
		return args[1:], true
	}
	return nil, false
}

// logWriterOptions parses the log writer's flags (shimlog.ParseOptions).
func logWriterOptions(args []string) (shimlog.Options, error) { return shimlog.ParseOptions(args) }

// runLogWriter runs the shim's log writer (shimlog.Main).
func runLogWriter(args []string) error { return shimlog.Main(args) }
