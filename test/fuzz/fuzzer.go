package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Config is one fuzzing run.
type Config struct {
	Endpoint string // unix:///path of the daemon's CRI socket
	N        int    // requests to send
	Seed     int64
	// Workers send requests concurrently, each with its own real pod and
	// container and its own generator seeded from Seed (workerSeeds), so a
	// seed reproduces every worker's request sequence.
	Workers int
	// MaxDuration, when set, ends the sending after that long even if
	// fewer than N requests went out; cleanup and leak checks still run.
	MaxDuration time.Duration
	Image       string // image of the real container (pulled through the daemon)
	// CallTimeout is every request's deadline; a request that hits it on an
	// RPC that must be quick is a hang.
	CallTimeout time.Duration
	// WorkDir holds the host paths, log directories and seccomp profiles the
	// requests are confined to (see confine).
	WorkDir                  string
	HostPortMin, HostPortMax int
	// Leak checks and crash detection; each is skipped when empty.
	StateDir, RootDir                      string
	ContainerdAddress, ContainerdNamespace string
	IPAMDir                                string
	DaemonLog                              string
	PID                                    int
	Progress                               io.Writer // a line every 500 requests (nil: none)
	SkipRPCs                               []string  // RPC names never sent
	// OnlyRPCs, when set, are the only RPC names sent (e.g. the sandbox and
	// container lifecycle, to hammer concurrent stop/remove on the same pods).
	OnlyRPCs []string
	// KeepDir receives the evidence of a failed run: a goroutine dump of the
	// daemon for each hang (the first few, taken from PprofSocket the moment
	// the call hits its deadline) and a copy of DaemonLog. Empty: keep nothing.
	KeepDir string
	// PprofSocket is the unix socket of the daemon's --pprof-addr.
	PprofSocket string
}

// Summary is the outcome of a run.
type Summary struct {
	Requests  int
	Duration  time.Duration // sending, without the final cleanup
	Codes     map[codes.Code]int
	PerRPC    map[string]map[codes.Code]int
	Time      map[string]time.Duration // time spent in each RPC (profile)
	Panics    int                      // "panic:" in the daemon log, or the daemon died
	Crashes   int                      // the daemon stopped answering
	Hangs     []string                 // quick RPCs that hit the deadline, failed liveness probes
	Slow      int                      // slow RPCs (pull, stop, exec) that hit the deadline: allowed
	Recreated int                      // times the real pod/container were made again
	Pods      int                      // sandboxes the run created
	Leaks     []string
	Unknown   []string // the first distinct Unknown errors (candidates for validation)
	Kept      []string // files kept in Config.KeepDir (goroutine dumps, daemon log)
}

// Failed tells whether the run found a problem.
func (s *Summary) Failed() bool {
	return s.Panics > 0 || s.Crashes > 0 || len(s.Hangs) > 0 || len(s.Leaks) > 0
}

type rpcMethod struct {
	name     string // e.g. RunPodSandbox
	full     string // /runtime.v1.RuntimeService/RunPodSandbox
	in, out  protoreflect.MessageType
	stream   bool
	slow     bool // may legitimately take longer than the deadline
	mutating bool // may stop or remove the real pod/container
}

// slowRPCs may take as long as their own arguments say (a stop timeout, an
// exec timeout) or as a registry takes.
var slowRPCs = map[string]bool{"PullImage": true, "StopContainer": true, "StopPodSandbox": true, "ExecSync": true}

// methods lists every RPC of the CRI services from the API's descriptors.
func methods(skip, only []string) ([]rpcMethod, error) {
	var out []rpcMethod
	for _, svc := range []string{"RuntimeService", "ImageService"} {
		sd := runtimeapi.File_staging_src_k8s_io_cri_api_pkg_apis_runtime_v1_api_proto.Services().ByName(protoreflect.Name(svc))
		if sd == nil {
			return nil, fmt.Errorf("service %s not in the CRI descriptors", svc)
		}
		for i := 0; i < sd.Methods().Len(); i++ {
			md := sd.Methods().Get(i)
			name := string(md.Name())
			if containsString(skip, name) || (len(only) > 0 && !containsString(only, name)) {
				continue
			}
			in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
			if err != nil {
				return nil, err
			}
			out2, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
			if err != nil {
				return nil, err
			}
			out = append(out, rpcMethod{
				name: name, full: fmt.Sprintf("/%s/%s", sd.FullName(), name), in: in, out: out2,
				stream: md.IsStreamingServer(), slow: slowRPCs[name],
				mutating: strings.HasPrefix(name, "Stop") || strings.HasPrefix(name, "Remove") || strings.HasPrefix(name, "Update") || name == "ReopenContainerLog",
			})
		}
	}
	return out, nil
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

type realTargets struct {
	podID, ctrID string
	podCfg       *runtimeapi.PodSandboxConfig
}

type fuzzer struct {
	cfg     Config
	worker  int
	g       *gen
	conn    *grpc.ClientConn
	rc      runtimeapi.RuntimeServiceClient
	ic      runtimeapi.ImageServiceClient
	real    realTargets
	profile string // a valid seccomp profile
	art     *artifacts
	sum     Summary
	pods    map[string]bool // every sandbox ID seen
	ctrs    map[string]bool
	// extra lists the pods and containers this worker's requests made
	// besides the real ones, oldest first; trim removes the oldest.
	extraPods, extraCtrs []string
}

// maxExtra is how many pods (and containers) made by requests a worker
// keeps before removing the oldest: enough for requests to find made
// objects, few enough that the daemon does not slow down as the run grows.
const maxExtra = 8

// workerSeeds derives one seed per worker from seed; worker 0 uses seed
// itself, so a one-worker run is the same as before workers existed.
func workerSeeds(seed int64, n int) []int64 {
	r := rand.New(rand.NewSource(seed))
	out := make([]int64, n)
	out[0] = seed
	for i := 1; i < n; i++ {
		out[i] = r.Int63()
	}
	return out
}

// share is how many of n requests worker w of workers sends.
func share(n, workers, w int) int {
	s := n / workers
	if w < n%workers {
		s++
	}
	return s
}

func newSummary() Summary {
	return Summary{Codes: map[codes.Code]int{}, PerRPC: map[string]map[codes.Code]int{}, Time: map[string]time.Duration{}}
}

// merge adds a worker's summary to s.
func (s *Summary) merge(o *Summary) {
	s.Requests += o.Requests
	for c, n := range o.Codes {
		s.Codes[c] += n
	}
	for name, pc := range o.PerRPC {
		if s.PerRPC[name] == nil {
			s.PerRPC[name] = map[codes.Code]int{}
		}
		for c, n := range pc {
			s.PerRPC[name][c] += n
		}
	}
	for name, d := range o.Time {
		s.Time[name] += d
	}
	s.Crashes += o.Crashes
	s.Hangs = append(s.Hangs, o.Hangs...)
	s.Slow += o.Slow
	s.Recreated += o.Recreated
	s.Leaks = append(s.Leaks, o.Leaks...)
	for _, u := range o.Unknown {
		if len(s.Unknown) < 20 && !containsString(s.Unknown, u) {
			s.Unknown = append(s.Unknown, u)
		}
	}
}

// Run sends cfg.N random requests, then removes everything and checks leaks.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.HostPortMin == 0 {
		cfg.HostPortMin, cfg.HostPortMax = 47100, 47199
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("a work directory is required")
	}
	conn, err := grpc.NewClient(cfg.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	mk := func(w int, seed int64) *fuzzer {
		return &fuzzer{
			cfg: cfg, worker: w, g: &gen{r: rand.New(rand.NewSource(seed))}, conn: conn,
			rc: runtimeapi.NewRuntimeServiceClient(conn), ic: runtimeapi.NewImageServiceClient(conn),
			pods: map[string]bool{}, ctrs: map[string]bool{}, sum: newSummary(),
			profile: filepath.Join(cfg.WorkDir, "seccomp-allow.json"),
		}
	}
	f := mk(0, cfg.Seed) // the whole run: cleanup, leak checks, summary
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644); err != nil {
		return nil, err
	}
	ms, err := methods(cfg.SkipRPCs, cfg.OnlyRPCs)
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, errors.New("no RPC left to send (OnlyRPCs/SkipRPCs)")
	}
	art := newArtifacts(cfg.KeepDir, cfg.PprofSocket)
	start := time.Now()
	var (
		crashed atomic.Bool
		sent    atomic.Int64
		wg      sync.WaitGroup
		errMu   sync.Mutex
		firstE  error
	)
	lctx := ctx
	if cfg.MaxDuration > 0 {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, cfg.MaxDuration)
		defer cancel()
	}
	ws := make([]*fuzzer, cfg.Workers)
	for w, seed := range workerSeeds(cfg.Seed, cfg.Workers) {
		ws[w] = mk(w, seed)
		ws[w].art = art
		wg.Add(1)
		go func(wf *fuzzer) {
			defer wg.Done()
			if err := wf.loop(lctx, ms, share(cfg.N, cfg.Workers, wf.worker), &crashed, &sent, start); err != nil {
				errMu.Lock()
				if firstE == nil {
					firstE = err
				}
				errMu.Unlock()
				crashed.Store(true) // stop the others
			}
		}(ws[w])
	}
	wg.Wait()
	for _, wf := range ws {
		f.sum.merge(&wf.sum)
		for id := range wf.pods {
			f.pods[id] = true
		}
		for id := range wf.ctrs {
			f.ctrs[id] = true
		}
	}
	sendTime := time.Since(start)
	if firstE != nil && f.sum.Crashes == 0 {
		return nil, firstE
	}
	if f.sum.Crashes == 0 {
		f.cleanup(ctx)
		f.checkLeaks(ctx)
		if !f.alive(ctx) {
			f.sum.Crashes++
		}
	}
	f.sum.Panics = f.panicsInLog()
	if f.sum.Crashes > 0 && f.sum.Panics == 0 {
		f.sum.Panics = 1 // a gRPC handler panic kills the daemon: count the death as one
	}
	f.sum.Pods = len(f.pods)
	f.sum.Duration = sendTime
	if f.sum.Failed() {
		art.daemonLog(cfg.DaemonLog)
	}
	f.sum.Kept = art.kept()
	return &f.sum, nil
}

// loop is one worker: it sends n requests, keeping its real pod and
// container alive, until done or until some worker saw the daemon crash.
func (f *fuzzer) loop(ctx context.Context, ms []rpcMethod, n int, crashed *atomic.Bool, sent *atomic.Int64, start time.Time) error {
	if err := f.ensureReal(ctx); err != nil {
		if !f.alive(ctx) {
			f.sum.Crashes++
			return nil
		}
		return fmt.Errorf("creating the real pod and container: %w", err)
	}
	for i := 0; i < n && ctx.Err() == nil && !crashed.Load(); i++ {
		m := ms[f.g.r.Intn(len(ms))]
		f.one(ctx, m)
		if f.sum.Crashes > 0 {
			crashed.Store(true)
			break
		}
		if (m.mutating && f.sum.Requests%5 == 0) || i%50 == 49 {
			if err := f.ensureReal(ctx); err != nil && ctx.Err() == nil && !f.alive(ctx) {
				f.sum.Crashes++
				crashed.Store(true)
				break
			}
		}
		if i%20 == 19 && ctx.Err() == nil && !f.alive(ctx) {
			f.sum.Crashes++
			crashed.Store(true)
			break
		}
		if i%25 == 24 {
			f.trim(ctx)
		}
		if done := sent.Add(1); f.cfg.Progress != nil && done%500 == 0 {
			fmt.Fprintf(f.cfg.Progress, "%d/%d requests, %s, %.1f req/s\n", done, f.cfg.N, time.Since(start).Round(time.Second),
				float64(done)/time.Since(start).Seconds())
		}
	}
	return nil
}

// trim removes the oldest pods and containers this worker's requests made
// beyond maxExtra (never the real ones).
func (f *fuzzer) trim(ctx context.Context) {
	cctx, cancel := f.callCtx(ctx)
	defer cancel()
	for len(f.extraCtrs) > maxExtra {
		id := f.extraCtrs[0]
		f.extraCtrs = f.extraCtrs[1:]
		if id == f.real.ctrID {
			continue
		}
		_, _ = f.rc.StopContainer(cctx, &runtimeapi.StopContainerRequest{ContainerId: id})
		_, _ = f.rc.RemoveContainer(cctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
	}
	for len(f.extraPods) > maxExtra {
		id := f.extraPods[0]
		f.extraPods = f.extraPods[1:]
		if id == f.real.podID {
			continue
		}
		_, _ = f.rc.StopPodSandbox(cctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
		_, _ = f.rc.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	}
}

// one sends one random request of m.
func (f *fuzzer) one(ctx context.Context, m rpcMethod) {
	req := f.request(m)
	// Taken before the deadline is set: a call that ran into its deadline
	// took at least CallTimeout by this clock (timed after the set-up, it
	// could miss that by the set-up's time, and a hang went unreported).
	t0 := time.Now()
	cctx, cancel := context.WithTimeout(ctx, f.cfg.CallTimeout)
	defer cancel()
	var dumped func() ([]byte, error)
	if !m.slow {
		dumped = f.art.watch(ctx, f.cfg.CallTimeout)
	}
	var err error
	resp := m.out.New().Interface()
	if m.stream {
		err = f.stream(cctx, m, req)
	} else {
		err = f.conn.Invoke(cctx, m.full, req, resp)
	}
	took := time.Since(t0)
	var dump []byte
	derr := errors.New("not watched")
	if dumped != nil {
		dump, derr = dumped()
	}
	code := status.Code(err)
	f.sum.Requests++
	f.sum.Codes[code]++
	if f.sum.PerRPC[m.name] == nil {
		f.sum.PerRPC[m.name] = map[codes.Code]int{}
	}
	f.sum.PerRPC[m.name][code]++
	f.sum.Time[m.name] += took
	if err == nil {
		f.record(m.name, resp)
	}
	if code == codes.Unknown && len(f.sum.Unknown) < 20 {
		msg := m.name + ": " + status.Convert(err).Message()
		if len(msg) > 240 {
			msg = msg[:240] + "..."
		}
		f.sum.Unknown = append(f.sum.Unknown, msg)
	}
	if took >= f.cfg.CallTimeout && ctx.Err() == nil {
		if m.slow {
			f.sum.Slow++
		} else {
			// dump was taken just before the deadline, with the call
			// still inside the daemon.
			where := f.art.saveGoroutines(fmt.Sprintf("w%d-%s", f.worker, m.name), dump, derr)
			f.sum.Hangs = append(f.sum.Hangs, fmt.Sprintf("%s took %s (%s): %s", m.name, took.Round(time.Millisecond), where, short(req)))
		}
		if !f.alive(ctx) {
			f.sum.Hangs = append(f.sum.Hangs, "the daemon stopped answering Version after "+m.name)
		}
	}
	switch code {
	case codes.Unavailable, codes.Internal:
		if ctx.Err() == nil && !f.alive(ctx) {
			f.sum.Crashes++
		}
	}
}

// request builds a random request: half the time from scratch, half the
// time a valid template with a few fields changed; references point at the
// real objects half the time; then the host-side effects are confined.
func (f *fuzzer) request(m rpcMethod) proto.Message {
	msg := m.in.New()
	if t := f.template(m.name); t != nil && f.g.chance(0.5) {
		proto.Merge(msg.Interface(), t)
		for n := 1 + f.g.r.Intn(3); n > 0; n-- {
			f.g.mutate(msg, 0)
		}
	} else {
		f.g.fill(msg, 0)
	}
	f.inject(msg, 0.5)
	f.confine(msg)
	return msg.Interface()
}

// stream opens a server stream, reads for a moment and hangs up.
func (f *fuzzer) stream(ctx context.Context, m rpcMethod, req proto.Message) error {
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	s, err := f.conn.NewStream(sctx, &grpc.StreamDesc{ServerStreams: true}, m.full)
	if err != nil {
		return err
	}
	if err := s.SendMsg(req); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		if err := s.RecvMsg(m.out.New().Interface()); err != nil {
			if errors.Is(err, io.EOF) || (status.Code(err) == codes.DeadlineExceeded && ctx.Err() == nil) {
				return nil // ended, or we hung up
			}
			return err
		}
	}
}

// record remembers what the run made.
func (f *fuzzer) record(name string, resp proto.Message) {
	switch r := resp.(type) {
	case *runtimeapi.RunPodSandboxResponse:
		f.pods[r.GetPodSandboxId()] = true
		f.extraPods = append(f.extraPods, r.GetPodSandboxId())
	case *runtimeapi.CreateContainerResponse:
		f.ctrs[r.GetContainerId()] = true
		f.extraCtrs = append(f.extraCtrs, r.GetContainerId())
	}
}

// alive tells whether the daemon answers Version (and its process exists).
func (f *fuzzer) alive(ctx context.Context) bool {
	if f.cfg.PID > 0 && syscall.Kill(f.cfg.PID, 0) != nil {
		return false
	}
	for i := 0; i < 3; i++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := f.rc.Version(cctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return true
		}
		time.Sleep(time.Second)
	}
	return false
}

// panicsInLog counts Go panics and fatal errors in the daemon log.
func (f *fuzzer) panicsInLog() int {
	if f.cfg.DaemonLog == "" {
		return 0
	}
	b, err := os.ReadFile(f.cfg.DaemonLog)
	if err != nil {
		return 0
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			n++
		}
	}
	return n
}

func short(m proto.Message) string {
	s := fmt.Sprint(m)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// Table renders the summary.
func (s *Summary) Table() string {
	var b strings.Builder
	rate := 0.0
	if s.Duration > 0 {
		rate = float64(s.Requests) / s.Duration.Seconds()
	}
	fmt.Fprintf(&b, "live CRI fuzz: %d requests in %s (%.1f req/s), %d pods made, real pods/containers made again %d times\n",
		s.Requests, s.Duration.Round(time.Second), rate, s.Pods, s.Recreated)
	var cs []codes.Code
	for c := range s.Codes {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return s.Codes[cs[i]] > s.Codes[cs[j]] })
	fmt.Fprintf(&b, "%-20s %8s\n", "code", "requests")
	for _, c := range cs {
		fmt.Fprintf(&b, "%-20s %8d\n", c, s.Codes[c])
	}
	var names []string
	for n := range s.PerRPC {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "%-28s %6s %6s %8s %8s %6s %9s\n", "rpc", "sent", "OK", "InvalArg", "NotFound", "other", "time")
	for _, n := range names {
		pc := s.PerRPC[n]
		total := 0
		for _, v := range pc {
			total += v
		}
		other := total - pc[codes.OK] - pc[codes.InvalidArgument] - pc[codes.NotFound]
		fmt.Fprintf(&b, "%-28s %6d %6d %8d %8d %6d %9s\n", n, total, pc[codes.OK], pc[codes.InvalidArgument], pc[codes.NotFound], other, s.Time[n].Round(time.Second))
	}
	fmt.Fprintf(&b, "%-10s %-8s %-6s %-6s %-14s %-6s\n", "panics", "crashes", "hangs", "leaks", "slow(allowed)", "result")
	result := "PASS"
	if s.Failed() {
		result = "FAIL"
	}
	fmt.Fprintf(&b, "%-10d %-8d %-6d %-6d %-14d %-6s\n", s.Panics, s.Crashes, len(s.Hangs), len(s.Leaks), s.Slow, result)
	for _, h := range s.Hangs {
		fmt.Fprintf(&b, "hang: %s\n", h)
	}
	for _, l := range s.Leaks {
		fmt.Fprintf(&b, "leak: %s\n", l)
	}
	for _, u := range s.Unknown {
		fmt.Fprintf(&b, "unknown: %s\n", u)
	}
	for _, k := range s.Kept {
		fmt.Fprintf(&b, "kept: %s\n", k)
	}
	return b.String()
}
