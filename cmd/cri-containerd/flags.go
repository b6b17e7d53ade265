package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/config"
)

// bindFlags binds the command-line flags to cfg's fields, using cfg's current
// values as the flag defaults.
func bindFlags(fs *flag.FlagSet, cfg *config.Config, configPath *string) {
	fs.StringVar(configPath, "config", config.DefaultConfigPath, "Path to the TOML config file (a missing default file is fine).")
	fs.StringVar(&cfg.SocketPath, "socket-path", cfg.SocketPath, "Unix socket the CRI gRPC server listens on.")
	fs.StringVar(&cfg.ContainerdEndpoint, "containerd-endpoint", cfg.ContainerdEndpoint, "containerd's gRPC socket.")
	fs.StringVar(&cfg.ContainerdNamespace, "containerd-namespace", cfg.ContainerdNamespace, "containerd namespace for CRI objects.")
	fs.StringVar(&cfg.RootDir, "root-dir", cfg.RootDir, "Persistent state directory.")
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "Volatile state directory (netns, FIFOs, pod files).")
	fs.StringVar(&cfg.Snapshotter, "snapshotter", cfg.Snapshotter, "containerd snapshotter.")
	fs.StringVar(&cfg.RegistryConfigPath, "registry-config-path", cfg.RegistryConfigPath, "Root of a containerd-style <host>/hosts.toml tree.")
	fs.StringVar(&cfg.SandboxImage, "sandbox-image", cfg.SandboxImage, "Image of the pause container.")
	fs.StringVar(&cfg.NetworkBinDir, "network-bin-dir", cfg.NetworkBinDir, "CNI plugin binaries directory.")
	fs.StringVar(&cfg.NetworkConfDir, "network-conf-dir", cfg.NetworkConfDir, "CNI config directory.")
	fs.StringVar(&cfg.StreamAddr, "stream-addr", cfg.StreamAddr, "Address of the exec/attach/port-forward streaming server.")
	fs.StringVar(&cfg.StreamPort, "stream-port", cfg.StreamPort, "Port of the streaming server (0 picks a free one).")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "Address of the Prometheus /metrics endpoint; empty disables.")
	fs.StringVar(&cfg.PprofAddr, "pprof-addr", cfg.PprofAddr, "Address (host:port or unix:///path) of the /debug/pprof endpoint; empty disables.")
	fs.StringVar(&cfg.SocketGroup, "socket-group", cfg.SocketGroup, "Group (name or gid) owning the CRI socket (mode 0660).")
	fs.BoolVar(&cfg.EnableTLSStreaming, "enable-tls-streaming", cfg.EnableTLSStreaming, "Serve exec/attach/port-forward over TLS (self-signed unless --stream-tls-cert/--stream-tls-key).")
	fs.StringVar(&cfg.StreamTLSCert, "stream-tls-cert", cfg.StreamTLSCert, "TLS certificate of the streaming server (implies --enable-tls-streaming).")
	fs.StringVar(&cfg.StreamTLSKey, "stream-tls-key", cfg.StreamTLSKey, "TLS key of the streaming server.")
	fs.DurationVar(&cfg.ShutdownTimeout.Duration, "shutdown-timeout", cfg.ShutdownTimeout.Duration, "Bound on a graceful stop; RPCs and event streams still open are ended after it.")
	fs.StringVar(&cfg.TracingEndpoint, "tracing-endpoint", cfg.TracingEndpoint, "OTLP/gRPC trace receiver (host:port, http://host:port or https://host:port): one span per CRI request, child spans for containerd calls and CNI; empty disables.")
	fs.Float64Var(&cfg.TracingSamplingRatio, "tracing-sampling-ratio", cfg.TracingSamplingRatio, "Share of new traces sampled (0..1); requests with a sampled parent are always traced.")
	fs.StringVar(&cfg.TracingServiceName, "tracing-service-name", cfg.TracingServiceName, "service.name of the spans.")
	fs.BoolVar(&cfg.EnableCDI, "enable-cdi", cfg.EnableCDI, "Resolve CDI devices (CDI_devices, cdi.k8s.io/* annotations) against --cdi-spec-dirs.")
	fs.Func("cdi-spec-dirs", fmt.Sprintf("Comma-separated CDI spec directories, lowest priority first (default %s).", strings.Join(cfg.CDISpecDirs, ",")), func(v string) error {
		cfg.CDISpecDirs = nil
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				cfg.CDISpecDirs = append(cfg.CDISpecDirs, d)
			}
		}
		return nil
	})
	fs.DurationVar(&cfg.StatsSamplePeriod.Duration, "stats-sample-period", cfg.StatsSamplePeriod.Duration, "How often container and pod cgroups and network counters are read for the stats RPCs (served from memory when younger than 1.5 periods); 0 reads on every call.")
	fs.DurationVar(&cfg.RecoveryTimeout.Duration, "recovery-timeout", cfg.RecoveryTimeout.Duration, "Bound on recovering one sandbox or container at start.")
	fs.StringVar(&cfg.RestrictOOMScoreAdj, "restrict-oom-score-adj", cfg.RestrictOOMScoreAdj, "Clamp container oom_score_adj to the daemon's own: auto, true or false.")
	fs.StringVar(&cfg.ContainerLogMode, "container-log-mode", cfg.ContainerLogMode, "Who writes container logs: daemon, or shim (a log writer under the containerd shim, independent of the daemon).")
	fs.StringVar(&cfg.CgroupDriver, "cgroup-driver", cfg.CgroupDriver, "cgroupfs or systemd.")
	fs.DurationVar(&cfg.ImagePullProgressTimeout.Duration, "image-pull-progress-timeout", cfg.ImagePullProgressTimeout.Duration, "Cancel a pull that makes no progress for this long (0 disables).")
	fs.DurationVar(&cfg.ContainerdStartTimeout.Duration, "containerd-start-timeout", cfg.ContainerdStartTimeout.Duration, "How long to wait for containerd at start.")
	bindNRIFlags(fs, &cfg.NRI)
}

// bindNRIFlags binds the NRI host's flags (config.NRI).
func bindNRIFlags(fs *flag.FlagSet, n *config.NRI) {
	fs.BoolVar(&n.Disable, "disable-nri", n.Disable, "Turn the NRI host off (no socket, no plugins).")
	fs.StringVar(&n.SocketPath, "nri-socket", n.SocketPath, "Unix socket NRI plugins connect to.")
	fs.StringVar(&n.PluginPath, "nri-plugin-dir", n.PluginPath, "Directory of NRI plugins the daemon starts itself.")
	fs.StringVar(&n.PluginConfigPath, "nri-plugin-config-dir", n.PluginConfigPath, "Directory of the configuration of those plugins.")
	fs.DurationVar(&n.PluginRegistrationTimeout.Duration, "nri-plugin-registration-timeout", n.PluginRegistrationTimeout.Duration, "A plugin that does not register within this is disconnected.")
	fs.DurationVar(&n.PluginRequestTimeout.Duration, "nri-plugin-request-timeout", n.PluginRequestTimeout.Duration, "A plugin that does not answer an event within this is disconnected; the event goes on without it.")
}

// parseConfig applies defaults, then the config file, then the flags that were
// set explicitly. It returns the remaining positional arguments.
func parseConfig(args []string, out io.Writer) (config.Config, []string, error) {
	// Pass 1: find --config and validate every flag.
	probe := config.Default()
	var configPath string
	fs := newFlagSet(io.Discard, &probe, &configPath)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			fs.Usage()
			return config.Config{}, nil, err
		}
		return config.Config{}, nil, fmt.Errorf("%w (see --help)", err)
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			explicit = true
		}
	})
	cfg := config.Default()
	if err := config.LoadFile(configPath, &cfg, !explicit); err != nil {
		return config.Config{}, nil, err
	}
	// Pass 2: flags over the file.
	var ignored string
	fs2 := newFlagSet(io.Discard, &cfg, &ignored)
	if err := fs2.Parse(args); err != nil {
		return config.Config{}, nil, err
	}
	return cfg, fs2.Args(), nil
}

func newFlagSet(out io.Writer, cfg *config.Config, configPath *string) *flag.FlagSet {
	fs := flag.NewFlagSet("cri-containerd", flag.ContinueOnError)
	fs.SetOutput(out)
	bindFlags(fs, cfg, configPath)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	klogFlags.VisitAll(func(f *flag.Flag) {
		if fs.Lookup(f.Name) == nil {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: cri-containerd [flags] [version | config default | config dump | doctor | health]\n")
		fs.PrintDefaults()
	}
	return fs
}
