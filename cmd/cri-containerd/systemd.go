package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/server"
)

// socketActivated is the --socket-path value that asks for the listener
// systemd passes (socket activation), as cri-dockerd's fd://.
const socketActivated = "fd://"

// activatedListener returns the CRI listener systemd passed
// (LISTEN_FDS/LISTEN_PID) when --socket-path is fd:// or names a socket
// systemd passed; nil when there is none to use (the daemon then makes its
// own socket after recovery). An inherited unix socket gets the
// --socket-group group and mode 0660, as our own does. It runs first thing:
// the inherited descriptors are made close-on-exec, so that no process the
// daemon starts holds the socket.
func activatedListener(socketPath, group string) (net.Listener, error) {
	inherited, err := activation.Listeners() // also unsets LISTEN_*: children do not see them
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	l, unused, err := pickListener(socketPath, inherited)
	for _, u := range unused {
		klog.InfoS("Ignoring a socket passed by systemd that is not the CRI socket", "address", u.Addr().String(), "socketPath", socketPath)
		_ = u.Close()
	}
	if err != nil || l == nil {
		return nil, err
	}
	addr := l.Addr().String()
	klog.InfoS("Using the CRI socket passed by systemd", "address", addr)
	if l.Addr().Network() == "unix" && strings.HasPrefix(addr, "/") {
		if err := server.RestrictSocket(addr, group); err != nil {
			_ = l.Close()
			return nil, err
		}
	}
	return l, nil
}

// pickListener chooses among the listeners systemd passed (nil entries are
// sockets that are not listeners). With fd:// it must be exactly one; with
// a path, the one listening on that path, if any (nil: make our own). The
// others are returned as unused.
func pickListener(socketPath string, inherited []net.Listener) (net.Listener, []net.Listener, error) {
	var ls []net.Listener
	for _, l := range inherited {
		if l != nil {
			ls = append(ls, l)
		}
	}
	if socketPath == socketActivated {
		switch len(ls) {
		case 0:
			return nil, nil, errors.New("--socket-path fd:// but systemd passed no listening socket (LISTEN_FDS/LISTEN_PID)")
		case 1:
			return ls[0], nil, nil
		default:
			return nil, ls, fmt.Errorf("--socket-path fd:// but systemd passed %d listening sockets; name the CRI socket's path instead", len(ls))
		}
	}
	var match net.Listener
	var unused []net.Listener
	for _, l := range ls {
		if match == nil && l.Addr().Network() == "unix" && l.Addr().String() == socketPath {
			match = l
			continue
		}
		unused = append(unused, l)
	}
	return match, unused, nil
}

// notifier tells systemd (Type=notify, NOTIFY_SOCKET) when the daemon is
// ready and when it begins to stop. Without NOTIFY_SOCKET it does nothing.
type notifier struct {
	stopping sync.Once
}

// ready sends READY=1: state recovered, CRI socket listening.
func (n *notifier) ready() {
	if ok, err := sddaemon.SdNotify(false, sddaemon.SdNotifyReady); err != nil {
		klog.ErrorS(err, "Telling systemd the daemon is ready")
	} else if ok {
		klog.InfoS("Told systemd the daemon is ready")
	}
}

// stop sends STOPPING=1, once.
func (n *notifier) stop() {
	n.stopping.Do(func() {
		if _, err := sddaemon.SdNotify(true, sddaemon.SdNotifyStopping); err != nil {
			klog.ErrorS(err, "Telling systemd the daemon is stopping")
		}
	})
}

// checkSocketFree fails when something answers on the CRI socket path.
func checkSocketFree(path string) error {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil // absent or stale: Listen replaces a stale one
	}
	_ = c.Close()
	return fmt.Errorf("%s is in use by another process (is cri-containerd already running?)", path)
}
