package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// unixScheme prefixes a unix socket path in a listen address.
const unixScheme = "unix://"

// listenAddr listens on addr: a TCP host:port, or unix:///path for a unix
// socket (its directory created, a stale socket replaced, mode 0600). It
// listens synchronously so that an address that cannot be bound is a
// start-up error naming the address.
func listenAddr(addr string) (net.Listener, error) {
	path, isUnix := strings.CutPrefix(addr, unixScheme)
	if !isUnix {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listening on %s: %w", addr, err)
		}
		return l, nil
	}
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("listening on %s: the socket path must be absolute", addr)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listening on %s: %s exists and is not a socket", addr, path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("listening on %s: the socket is in use by another process", addr)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listening on %s: removing the stale socket: %w", addr, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	return l, nil
}

// startHTTP listens on addr (see listenAddr) and serves h there in the
// background. The returned function stops the server.
func startHTTP(name, addr string, h http.Handler) (stop func(), err error) {
	l, err := listenAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("%s server: %w", name, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "HTTP server failed", "server", name, "addr", addr)
		}
	}()
	klog.InfoS("Serving HTTP", "server", name, "addr", addr)
	return func() { _ = srv.Close() }, nil
}

// pprofHandler serves the Go profiles under /debug/pprof/, and nothing else.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// startPprof serves /debug/pprof on its own opt-in address (never on the
// metrics listener: profiles and the command line are not for scrapers).
func startPprof(addr string) (stop func(), err error) {
	return startHTTP("pprof", addr, pprofHandler())
}
