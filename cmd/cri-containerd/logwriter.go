package main

import (
	"path/filepath"

	"github.com/cri-containerd/cri-containerd/shimlog/logwriter"
)

// logWriterArgs reports whether this process is the shim's log writer, and
// its arguments: the executable runs under logwriter.BinaryName (the shim
// starts it through the daemon's symbolic link) or as "cri-containerd
// log-writer ARGS".
func logWriterArgs(argv0 string, args []string) ([]string, bool) {
	if filepath.Base(argv0) == logwriter.BinaryName {
		return args, true
	}
	if len(args) > 0 && args[0] == logwriter.Subcommand {
		return args[1:], true
	}
	return nil, false
}

// logWriterOptions parses the log writer's flags (logwriter.ParseOptions).
func logWriterOptions(args []string) (logwriter.Options, error) { return logwriter.ParseOptions(args) }

// runLogWriter runs the shim's log writer (logwriter.Main).
func runLogWriter(args []string) error { return logwriter.Main(args) }
