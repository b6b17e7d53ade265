// Package server is the CRI v1 surface of cri-containerd: one file per RPC
// (or RPC group), thin handlers over the domain packages (image, sandbox,
// container, cni, streaming), and a single instrumented layer (instrument.go)
// that logs, times and maps errors for every RPC.
package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/cni"
	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/image"
	"github.com/cri-containerd/cri-containerd/registrar"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/shim"
	"github.com/cri-containerd/cri-containerd/spec"
	"github.com/cri-containerd/cri-containerd/stats"
	"github.com/cri-containerd/cri-containerd/streaming"
	"github.com/cri-containerd/cri-containerd/tracing"
)

// Service implements the CRI RuntimeService and ImageService.
type Service struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	config config.Config
	client *containerd.Client
	// shimGroups: pods get a containerd sandbox record so that their
	// containers' tasks join the pause's shim (sandbox.Options.ShimGroups).
	shimGroups bool
	// ctrdEpoch counts the breaks of containerd's task event stream
	// (monitorEvents): sandbox.Options.ContainerdEpoch.
	ctrdEpoch atomic.Uint64
	metrics   *Metrics
	// tracing makes a span per CRI request and per containerd call and
	// CNI operation in it (a no-op unless --tracing-endpoint is set).
	tracing *tracing.Tracing
	images  *image.Service
	cni     *cni.Manager
	events  *eventBroadcaster

	sandboxes    *sandbox.Store
	sandboxNames *registrar.Registrar
	// sbCtl is the sandbox controller (sandboxController).
	sbCtl sandboxCtl

	containers     *container.Store
	containerNames *registrar.Registrar
	// ctrCtl is the container controller (ctrs).
	ctrCtl containerCtl

	// restrictOOM clamps container oom_score_adj to the daemon's own.
	restrictOOM bool
	// selinuxEnabled: the host enforces SELinux, which we cannot apply
	// (selinux.go).
	selinuxEnabled bool
	// specGen builds the OCI spec options of sandboxes and containers.
	specGen *spec.Generator
	// features are the probed features of each runtime handler.
	features map[string]*runtimeapi.RuntimeHandlerFeatures

	// shims kills the shims of removed objects that containerd lost (shims.go).
	shims *shim.Reaper
	// nri hosts NRI plugins (nri.go); nil when disabled.
	nri *nriHost

	// podResourcesMu serialises UpdatePodSandboxResources (sandbox_update.go),
	// so that records are written in the order they are set.
	podResourcesMu sync.Mutex

	// netMu guards podCIDR.
	netMu   sync.RWMutex
	podCIDR string

	grpcServer *grpc.Server

	// stream serves the exec/attach/port-forward URLs (streaming.go).
	stream *streaming.Server

	// stats keeps the previous CPU sample per container and pod (UsageNanoCores).
	stats *stats.Collector
	// cgroupSamples and netSamples are the readings the stats RPCs answer
	// from (stats_sampler.go); nil in unit tests that do not set them.
	cgroupSamples *stats.Sampler[*stats.Sample]
	netSamples    *stats.Sampler[[]stats.InterfaceStats]

	// deps are the external dependencies (package backend): containerd,
	// the image store, CNI, the host's netns and shm mounts, the clock.
	// New wires the real ones; unit tests use fakes.
	deps backend.Deps
	// watchers are the long-running loops Serve starts besides the event
	// monitor (CNI config and image cache watchers).
	watchers []func(ctx context.Context)

	// signalDirect: container stops signal the init through a pidfd
	// (container.Options.SignalDirect); set by New, off with fake tasks.
	signalDirect bool
	// leftovers are the rollback steps of failed creates that containerd
	// could not take; retried after each re-subscription to containerd's
	// events and every leftoverRetryPeriod (retryLeftovers).
	leftovers *backend.Leftovers

	// bg owns the background goroutines (event monitor, watchers, exit
	// handlers): cancelled and joined when the service stops.
	bg background
	// shutdownOnce makes shutdown (Serve's end, Close) run once.
	shutdownOnce sync.Once
}

// New connects to containerd (retrying until cfg.ContainerdStartTimeout),
// rebuilds the caches from containerd and returns a ready service.
func New(ctx context.Context, cfg config.Config, reg prometheus.Registerer) (*Service, error) {
	for _, d := range []string{cfg.RootDir, cfg.StateDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	metrics := NewMetrics(reg)
	tr, err := tracing.New(ctx, tracing.Config{
		Endpoint:      cfg.TracingEndpoint,
		SamplingRatio: cfg.TracingSamplingRatio,
		ServiceName:   cfg.TracingServiceName,
		BatchTimeout:  tracingBatchTimeout,
	})
	if err != nil {
		return nil, err
	}
	cli, err := connectContainerd(ctx, cfg,
		containerd.WithExtraDialOpts(metrics.CtrdDialOpts()),
		containerd.WithExtraDialOpts(tr.DialOptions()))
	if err != nil {
		_ = tr.Shutdown(ctx)
		return nil, err
	}
	cdiCache := newCDICache(cfg)
	shimGroups := false
	if v, err := cli.Version(ctx); err == nil {
		// containerd 2.x runs the tasks of a pod's containers in the
		// pause's shim when the pod has a sandbox record (1.7's sandbox
		// API was experimental; 1.6 has none).
		shimGroups = majorVersion(v.Version) >= 2
	}
	s := &Service{
		shimGroups: shimGroups,
		config:     cfg,
		client:     cli,
		metrics:    metrics,
		tracing:    tr,
		events:     newEventBroadcaster(),
		leftovers:  metrics.leftovers,
		// Real tasks: their pids are real processes.
		signalDirect: true,
		stats:        stats.NewCollector(),
		specGen:      spec.NewGenerator(spec.WithCDI(cdiCache)),

		sandboxes:    sandbox.NewStore(),
		sandboxNames: registrar.New(),

		containers:     container.NewStore(),
		containerNames: registrar.New(),
	}
	s.restrictOOM = restrictOOMScoreAdj(cfg.RestrictOOMScoreAdj)
	s.selinuxEnabled = hostSELinuxEnabled()
	s.shims = shim.NewReaper()
	s.features = probeRuntimeFeatures(ctx, cfg.Runtimes, cfg.RootDir)
	klog.InfoS("OOM score adjustment", "restrict", s.restrictOOM, "setting", cfg.RestrictOOMScoreAdj)
	s.images = image.NewService(cli, image.Options{
		Namespace:              cfg.ContainerdNamespace,
		Snapshotter:            cfg.Snapshotter,
		RegistryConfigPath:     cfg.RegistryConfigPath,
		PullProgressTimeout:    cfg.ImagePullProgressTimeout.Duration,
		MaxConcurrentDownloads: cfg.MaxConcurrentDownloads,
		PinnedImages:           []string{cfg.SandboxImage},
		StatsCollectPeriod:     cfg.StatsCollectPeriod.Duration,
		ExtraSnapshotters:      runtimeSnapshotters(cfg),
	}, reg)
	s.cni, err = cni.New(cfg.NetworkConfDir, []string{cfg.NetworkBinDir}, cni.WithMaxConfNum(cfg.NetworkMaxConfNum),
		cni.WithTracer(tr.Tracer("github.com/cri-containerd/cri-containerd/cni")))
	if err != nil {
		_ = tr.Shutdown(ctx)
		_ = cli.Close()
		return nil, err
	}
	s.deps = backend.Deps{
		Containerd: cli,
		Images:     s.images,
		Network:    s.cni,
		Host:       backend.OS{},
		Clock:      backend.SystemClock{},
	}
	s.watchers = []func(context.Context){
		func(ctx context.Context) { s.cni.Run(ctx, time.Second) },
		func(ctx context.Context) { s.images.Watch(s.nsCtx(ctx)) },
		func(ctx context.Context) { s.retryLeftovers(ctx, leftoverRetryPeriod) },
	}
	s.newSamplers()
	s.watchCDI(cdiCache)
	if le := s.logErrors(); le != nil {
		// The shim log writers' error counts, read for every container in
		// one loop (they reach the metric when it is collected anyway).
		s.watchers = append(s.watchers, func(ctx context.Context) { le.PollRemotes(ctx, 0) })
	}
	fail := func(err error) (*Service, error) {
		s.shutdown()
		_ = cli.Close()
		return nil, err
	}
	if s.nri, err = newNRIHost(s); err != nil {
		return fail(err)
	}
	// The controllers are built once, from the dependencies and hooks above.
	s.sandboxController()
	s.ctrs()
	if err := s.images.Recover(s.nsCtx(ctx)); err != nil {
		return fail(fmt.Errorf("recovering state from containerd: images: %w", err))
	}
	if err := s.syncState(ctx); err != nil {
		return fail(err)
	}
	if err := s.nri.start(); err != nil {
		return fail(err)
	}
	if s.stream, err = s.newStreamServer(); err != nil {
		return fail(err)
	}
	return s, nil
}

// connectContainerd dials containerd and waits until it serves, so that a
// daemon started together with containerd does not fail on the race.
func connectContainerd(ctx context.Context, cfg config.Config, opts ...containerd.Opt) (*containerd.Client, error) {
	// The container store on the client's own connection once it exists.
	slim := &backend.SlimCreates{}
	cli, err := containerd.New(cfg.ContainerdEndpoint, append([]containerd.Opt{
		containerd.WithDefaultNamespace(cfg.ContainerdNamespace),
		containerd.WithTimeout(10 * time.Second),
		containerd.WithServices(containerd.WithContainerStore(slim))}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("creating containerd client for %s: %w", cfg.ContainerdEndpoint, err)
	}
	conn, ok := cli.Conn().(*grpc.ClientConn)
	if !ok {
		_ = cli.Close()
		return nil, fmt.Errorf("containerd client for %s has no gRPC connection", cfg.ContainerdEndpoint)
	}
	slim.Store = containerd.NewRemoteContainerStore(containersapi.NewContainersClient(conn))
	deadline := time.Now().Add(cfg.ContainerdStartTimeout.Duration)
	var lastErr error
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := cli.IsServing(pctx)
		cancel()
		if ok && err == nil {
			v, verr := cli.Version(ctx)
			if verr == nil {
				klog.InfoS("Connected to containerd", "endpoint", cfg.ContainerdEndpoint, "version", v.Version, "revision", v.Revision)
			}
			return cli, nil
		}
		lastErr = err
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = cli.Close()
			return nil, fmt.Errorf("containerd at %s is not reachable after %s: %v", cfg.ContainerdEndpoint, cfg.ContainerdStartTimeout.Duration, lastErr)
		}
		if attempt%5 == 0 {
			klog.InfoS("Waiting for containerd", "endpoint", cfg.ContainerdEndpoint, "err", lastErr)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// majorVersion is the major number of a containerd version ("v2.4.2",
// "1.7.27-1"), 0 when it has none.
func majorVersion(v string) int {
	v = strings.TrimPrefix(v, "v")
	n := 0
	for _, r := range v {
		if r < '0' || r > '9' {
			break
		}
		n = n*10 + int(r-'0')
	}
	return n
}

// nsCtx puts the containerd namespace into ctx; every call to containerd goes through it.
func (s *Service) nsCtx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, s.config.ContainerdNamespace)
}

// recover rebuilds the sandbox and container caches from containerd and our own files.
func (s *Service) recover(ctx context.Context) error {
	if err := s.recoverSandboxes(ctx); err != nil {
		return fmt.Errorf("sandboxes: %w", err)
	}
	if err := s.recoverContainers(ctx); err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	return nil
}

// syncState rebuilds the caches from containerd and follows containerd's
// task events from then on. The subscription is opened before recovery
// looks at any task, so that an exit during recovery is not lost: the event
// monitor holds the events until recovery is done, handles them, then
// reconciles once more with containerd (an exit that happened before the
// subscription reached containerd has no event).
func (s *Service) syncState(ctx context.Context) error {
	bctx := s.bg.context()
	sctx, cancelSub := context.WithCancel(bctx)
	evCh, errCh := s.subscribeTaskEvents(sctx)
	recovered := make(chan struct{})
	if !s.bg.Go(func(ctx context.Context) { s.monitorEvents(ctx, evCh, errCh, cancelSub, recovered) }) {
		cancelSub()
		return fmt.Errorf("recovering state from containerd: %w", context.Canceled)
	}
	err := s.recover(s.nsCtx(ctx))
	close(recovered)
	if err == nil {
		err = ctx.Err() // cancelled meanwhile: objects were kept unrecovered
	}
	if err != nil {
		return fmt.Errorf("recovering state from containerd: %w", err)
	}
	return nil
}

// Serve listens on the CRI socket and serves until ctx is done or the
// server fails. Then it stops within config.ShutdownTimeout: event streams
// end, in-flight RPCs get until the deadline (GracefulStop), then the
// remaining connections are closed (Stop); the background goroutines are
// cancelled and joined before Serve returns.
func (s *Service) Serve(ctx context.Context) error {
	l, err := listenUnix(s.config.SocketPath, s.config.SocketGroup)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, l)
}

// ServeListener is Serve on a listener the caller made (Listen) or
// inherited (systemd socket activation); it closes l when it stops.
func (s *Service) ServeListener(ctx context.Context, l net.Listener) error {
	s.grpcServer = grpc.NewServer(append(s.tracing.ServerOptions(),
		grpc.ChainUnaryInterceptor(s.metrics.UnaryInterceptor),
		grpc.ChainStreamInterceptor(s.metrics.StreamInterceptor),
		grpc.MaxRecvMsgSize(16*1024*1024), grpc.MaxSendMsgSize(16*1024*1024),
	)...)
	runtimeapi.RegisterRuntimeServiceServer(s.grpcServer, wireServer{s})
	runtimeapi.RegisterImageServiceServer(s.grpcServer, s)
	for _, w := range s.watchers {
		s.bg.Go(w)
	}
	errCh := make(chan error, 1)
	go func() { errCh <- s.grpcServer.Serve(l) }()
	var streamErrCh chan error
	if s.stream != nil {
		streamErrCh = make(chan error, 1)
		go func() { streamErrCh <- s.stream.Serve() }()
	}
	klog.InfoS("Serving CRI", "socket", l.Addr().String())
	var serveErr error
	select {
	case <-ctx.Done():
		klog.InfoS("Shutting down", "timeout", s.config.ShutdownTimeout.Duration)
	case err := <-errCh:
		serveErr = fmt.Errorf("CRI gRPC server: %w", err)
	case err := <-streamErrCh:
		serveErr = fmt.Errorf("CRI streaming server stopped: %w", err)
	}
	s.shutdown()
	return serveErr
}

// tracingBatchTimeout bounds how long a finished span waits for export.
const tracingBatchTimeout = time.Second

// stopGrace is what the background goroutines get at least to stop after
// the gRPC server used up the shutdown timeout.
const stopGrace = time.Second

// shutdown ends the GetContainerEvents streams, stops the gRPC server
// (gracefully until config.ShutdownTimeout, then by closing connections),
// the streaming server, and cancels and joins the background goroutines.
// It runs once; Serve and Close call it.
func (s *Service) shutdown() {
	s.shutdownOnce.Do(func() {
		deadline := time.Now().Add(s.config.ShutdownTimeout.Duration)
		s.bg.beginStop()
		if s.grpcServer != nil {
			done := make(chan struct{})
			go func() {
				s.grpcServer.GracefulStop()
				close(done)
			}()
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-done:
			case <-t.C:
				klog.InfoS("In-flight RPCs did not finish within the shutdown timeout; closing connections", "timeout", s.config.ShutdownTimeout.Duration)
				s.grpcServer.Stop()
				<-done
			}
			t.Stop()
		}
		if s.stream != nil {
			_ = s.stream.Stop()
		}
		s.nri.stop()
		if d := time.Now().Add(stopGrace); d.After(deadline) {
			deadline = d
		}
		if !s.bg.stop(deadline) {
			klog.ErrorS(context.DeadlineExceeded, "Background goroutines did not stop within the shutdown timeout", "timeout", s.config.ShutdownTimeout.Duration)
		}
		tctx, cancel := context.WithTimeout(context.Background(), stopGrace)
		if err := s.tracing.Shutdown(tctx); err != nil {
			klog.ErrorS(err, "Spans not exported at shutdown")
		}
		cancel()
	})
}

// Close stops the service (if Serve did not) and releases the containerd
// connection.
func (s *Service) Close() error {
	s.shutdown()
	if s.client == nil {
		return nil
	}
	return s.client.Close()
}
