// Command cri-containerd is a standalone Kubernetes CRI v1 runtime that
// drives an external containerd daemon.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/server"
	"github.com/cri-containerd/cri-containerd/shimlog/logwriter"
	"github.com/cri-containerd/cri-containerd/version"
)

func main() {
	if args, ok := logWriterArgs(os.Args[0], os.Args[1:]); ok {
		if err := runLogWriter(args); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", logwriter.BinaryName, err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "cri-containerd: %v\n", err)
		klog.Flush()
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, rest, err := parseConfig(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if len(rest) > 0 {
		switch {
		case rest[0] == "version":
			fmt.Printf("%s %s (CRI %s)", version.RuntimeName, version.Version, version.CRIVersion)
			if rev := version.Rev(); rev != "" {
				fmt.Printf(" revision %s", rev)
			}
			fmt.Println()
			return nil
		case len(rest) == 2 && rest[0] == "config" && rest[1] == "default":
			out, err := config.Encode(config.Default())
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(out)
			return err
		case rest[0] == "health":
			return runHealth(cfg, rest[1:], os.Stdout)
		case rest[0] == "doctor":
			return runDoctor(args[:len(args)-len(rest)], rest[1:])
		case rest[0] == "config" && len(rest) == 2 && rest[1] == "dump":
			out, err := config.Encode(cfg)
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(out)
			return err
		default:
			return fmt.Errorf("unknown command %q (commands: version, config default, config dump, doctor, health)", rest)
		}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	return serve(cfg)
}

func serve(cfg config.Config) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	klog.InfoS("Starting cri-containerd", "version", version.Version, "revision", version.Rev(), "socket", cfg.SocketPath, "containerd", cfg.ContainerdEndpoint)

	if err := server.CheckSocketGroup(cfg.SocketGroup); err != nil {
		return err // before recovery: the socket is made only after it
	}
	// A socket systemd passed is taken before anything else runs; it queues
	// connections until Serve accepts them after recovery.
	activated, err := activatedListener(cfg.SocketPath, cfg.SocketGroup)
	if err != nil {
		return err
	}
	defer func() {
		if activated != nil {
			_ = activated.Close() // not served: the start failed
		}
	}()
	if activated == nil {
		// A daemon already serving the socket (a second copy of a DaemonSet
		// pod, a unit started twice) is found before recovery: recovering
		// the same namespace next to it would act on its objects.
		if err := checkSocketFree(cfg.SocketPath); err != nil {
			return err
		}
	}
	var sd notifier
	defer sd.stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	stopDebug, err := startDebugServers(cfg, reg)
	if err != nil {
		return err
	}
	defer stopDebug()
	svc, err := server.New(ctx, cfg, reg)
	if err != nil {
		return err
	}
	defer svc.Close()
	// Once a stop is asked for, a second signal ends the process at once,
	// and so does a stop that overruns its bound (Serve enforces
	// --shutdown-timeout; this is the backstop).
	context.AfterFunc(ctx, func() {
		sd.stop()
		stop()
		time.AfterFunc(cfg.ShutdownTimeout.Duration+shutdownBackstop, func() {
			klog.ErrorS(context.DeadlineExceeded, "Shutdown overran its timeout; exiting", "timeout", cfg.ShutdownTimeout.Duration)
			klog.Flush()
			os.Exit(1)
		})
	})
	l := activated
	activated = nil
	if l == nil {
		if l, err = server.Listen(cfg.SocketPath, cfg.SocketGroup); err != nil {
			return err
		}
	}
	sd.ready() // state recovered and the socket listens
	err = svc.ServeListener(ctx, l)
	klog.InfoS("cri-containerd stopped")
	return err
}

// shutdownBackstop is how long past --shutdown-timeout the process waits
// for a stop before it exits regardless.
const shutdownBackstop = 5 * time.Second

// startDebugServers starts the metrics and pprof servers that cfg enables.
// An address that cannot be bound is an error; stop stops what was started.
func startDebugServers(cfg config.Config, reg *prometheus.Registry) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, f := range stops {
			f()
		}
	}
	if cfg.MetricsAddr != "" {
		f, err := startMetrics(cfg.MetricsAddr, reg)
		if err != nil {
			return nil, err
		}
		stops = append(stops, f)
	}
	if cfg.PprofAddr != "" {
		f, err := startPprof(cfg.PprofAddr)
		if err != nil {
			stop()
			return nil, err
		}
		stops = append(stops, f)
	}
	return stop, nil
}

// startMetrics serves /metrics (only) on addr.
func startMetrics(addr string, reg *prometheus.Registry) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return startHTTP("metrics", addr, mux)
}
