package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// socketMode is the mode of the CRI socket: the daemon's user and the socket
// group (--socket-group) may connect.
const socketMode os.FileMode = 0o660

// listenUnix creates the socket's directory, replaces a stale socket and
// restricts the socket to mode 0660, owned by group when it is set (a group
// name or a numeric gid, as containerd's grpc.gid). An unknown group is an
// error, found before anything is created.
func listenUnix(path, group string) (net.Listener, error) {
	gid := -1
	if group != "" {
		var err error
		if gid, err = lookupGroup(group); err != nil {
			return nil, fmt.Errorf("socket group: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("%s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := restrictSocket(path, group, gid); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

// Listen makes the CRI socket as Serve does (listenUnix).
func Listen(path, group string) (net.Listener, error) { return listenUnix(path, group) }

// RestrictSocket gives a socket made by someone else (systemd socket
// activation) the CRI socket's group and mode, as listenUnix does.
func RestrictSocket(path, group string) error {
	gid := -1
	if group != "" {
		var err error
		if gid, err = lookupGroup(group); err != nil {
			return fmt.Errorf("socket group: %w", err)
		}
	}
	return restrictSocket(path, group, gid)
}

func restrictSocket(path, group string, gid int) error {
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			return fmt.Errorf("chown socket to group %s: %w", group, err)
		}
	}
	if err := os.Chmod(path, socketMode); err != nil {
		return fmt.Errorf("chmod socket: %w", err)
	}
	return nil
}

// CheckSocketGroup reports an unknown socket group (--socket-group) at
// start, before state is recovered; empty means none.
func CheckSocketGroup(group string) error {
	if group == "" {
		return nil
	}
	if _, err := lookupGroup(group); err != nil {
		return fmt.Errorf("socket group: %w", err)
	}
	return nil
}

// lookupGroup resolves a group name or a numeric gid.
func lookupGroup(group string) (int, error) {
	if n, err := strconv.ParseUint(group, 10, 32); err == nil {
		if n == 1<<32-1 { // (gid_t)-1 means "unchanged" to chown
			return 0, fmt.Errorf("invalid gid %s", group)
		}
		return int(n), nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("unknown group %q", group)
		}
		return 0, fmt.Errorf("looking up group %q: %w", group, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %q has a non-numeric gid %q", group, g.Gid)
	}
	return gid, nil
}
