package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Driver runs the churn workers and keeps the model of what the daemon
// acknowledged.
type Driver struct {
	env   *Env
	opts  Options
	model *Model
	// gate: workers hold it shared for each step (RPC + model update); the
	// invariant checker takes it exclusively, so it sees the model and the
	// daemon at rest between steps.
	gate sync.RWMutex

	exempt atomic.Bool // a fault that loses output is on: new containers' logs are exempt

	pods, ctrs, execs, pulls, exits, rpcErrors, linesLost atomic.Int64
	// linesLostDown: lines lost by containers that exited while the daemon
	// was down; exitsLostByContainerd: exit codes containerd dropped.
	linesLostDown, exitsLostByContainerd atomic.Int64

	vmu        sync.Mutex
	violations []Violation
}

// NewDriver returns a driver on a set-up environment.
func NewDriver(env *Env, opts Options) *Driver {
	return &Driver{env: env, opts: opts, model: NewModel()}
}

func (d *Driver) violate(v Violation) {
	logf("VIOLATION %s", v)
	d.vmu.Lock()
	defer d.vmu.Unlock()
	d.violations = append(d.violations, v)
}

// Violations returns what the workers and checks found (deduplicated by
// kind and ID).
func (d *Driver) Violations() []Violation {
	d.vmu.Lock()
	defer d.vmu.Unlock()
	seen := map[string]bool{}
	var out []Violation
	for _, v := range d.violations {
		k := string(v.Kind) + "/" + v.ID
		if !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	return out
}

// rpcTimeout bounds one CRI call, as kubelet's runtime request timeout does.
const rpcTimeout = 30 * time.Second

// transient reports whether err may go away by itself (daemon or containerd
// down, a deadline hit by an injected hang).
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal, codes.Aborted:
		return true
	}
	return false
}

// idem runs an idempotent call until it succeeds, fails with a
// non-transient error, or stop passes. NotFound counts as done when
// notFoundOK.
func (d *Driver) idem(ctx context.Context, what string, notFoundOK bool, fn func(ctx context.Context) error) error {
	deadline := time.Now().Add(4 * time.Minute)
	for i := 0; ; i++ {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		err := fn(cctx)
		cancel()
		if err == nil || (notFoundOK && status.Code(err) == codes.NotFound) {
			return nil
		}
		d.rpcErrors.Add(1)
		if !transient(err) && status.Code(err) != codes.FailedPrecondition {
			return fmt.Errorf("%s: %w", what, err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: gave up after %d tries: %w", what, i+1, err)
		}
		if i%10 == 9 {
			logf("%s: still failing after %d tries: %v", what, i+1, err)
		}
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
	}
}

// step runs fn while holding the gate shared.
func (d *Driver) step(fn func()) {
	d.gate.RLock()
	defer d.gate.RUnlock()
	fn()
}

func randomHex(n int) string {
	const hexd = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = hexd[rand.IntN(16)]
	}
	return string(b)
}

func (d *Driver) podConfig(name, uid string, attempt uint32, logBase string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "chaos", Uid: uid, Attempt: attempt},
		Hostname: name,
		Labels: map[string]string{
			"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "chaos", "io.kubernetes.pod.uid": uid,
		},
		LogDirectory: filepath.Join(logBase, "chaos_"+name+"_"+uid),
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_POD, Ipc: runtimeapi.NamespaceMode_POD},
			},
		},
	}
}

func ctrConfig(name string, attempt uint32, image string, cmd []string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name, Attempt: attempt},
		Image:    &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: image},
		Command:  cmd,
		LogPath:  fmt.Sprintf("%s/%d.log", name, attempt),
		Labels:   map[string]string{"io.kubernetes.container.name": name},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD},
			},
		},
	}
}

// runPod creates a pod the way kubelet does: a failed RunPodSandbox is
// retried with the next attempt number (whatever the failed call left is
// the garbage collector's business).
func (d *Driver) runPod(ctx context.Context, name, logBase string) (string, *runtimeapi.PodSandboxConfig, bool) {
	uid := "uid-" + randomHex(16)
	for attempt := uint32(0); attempt < 40 && ctx.Err() == nil; attempt++ {
		cfg := d.podConfig(name, uid, attempt, logBase)
		if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
			logf("%s: %v", name, err)
		}
		var id string
		var err error
		d.step(func() {
			cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			defer cancel()
			var resp *runtimeapi.RunPodSandboxResponse
			resp, err = d.env.RT.RunPodSandbox(cctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if err == nil {
				id = resp.PodSandboxId
				d.model.AddPod(PodRec{ID: id, Name: name})
				d.pods.Add(1)
			}
		})
		if err == nil {
			return id, cfg, true
		}
		d.rpcErrors.Add(1)
		time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
	}
	return "", nil, false
}

func (d *Driver) createCtr(ctx context.Context, podID string, pcfg *runtimeapi.PodSandboxConfig, rec CtrRec, cmd []string) (CtrRec, bool) {
	for attempt := uint32(0); attempt < 20 && ctx.Err() == nil; attempt++ {
		cfg := ctrConfig(rec.Name, attempt, d.opts.BusyboxImage, cmd)
		// kubelet makes the container's log directory
		if err := os.MkdirAll(filepath.Join(pcfg.LogDirectory, rec.Name), 0o755); err != nil {
			logf("%s: %v", rec.Name, err)
		}
		var err error
		d.step(func() {
			cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			defer cancel()
			var resp *runtimeapi.CreateContainerResponse
			resp, err = d.env.RT.CreateContainer(cctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pcfg})
			if err == nil {
				rec.ID = resp.ContainerId
				rec.PodID = podID
				rec.LogPath = filepath.Join(pcfg.LogDirectory, cfg.LogPath)
				rec.LogExempt = d.exempt.Load()
				d.model.AddCtr(rec)
				d.ctrs.Add(1)
			}
		})
		if err == nil {
			return rec, true
		}
		d.rpcErrors.Add(1)
		if status.Code(err) == codes.NotFound {
			return rec, false // the pod is gone: a violation the checker reports
		}
		time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
	}
	return rec, false
}

// startCtr starts a container; when the call fails, the container's status
// decides whether it started anyway.
func (d *Driver) startCtr(ctx context.Context, id string) bool {
	for i := 0; i < 30 && ctx.Err() == nil; i++ {
		var err error
		var started, failed bool
		d.step(func() {
			cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			defer cancel()
			_, err = d.env.RT.StartContainer(cctx, &runtimeapi.StartContainerRequest{ContainerId: id})
			if err != nil {
				st, serr := d.env.RT.ContainerStatus(cctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
				switch {
				case serr != nil || st.Status.State == runtimeapi.ContainerState_CONTAINER_CREATED:
				case st.Status.Reason == "StartError":
					// the start failed for good: EXITED without a run
					failed = true
					logf("StartContainer %s failed: %v", id[:12], err)
					d.model.SetCtr(id, CtrStopped)
				default:
					started = true
				}
			}
			if err == nil || started {
				d.model.SetCtr(id, CtrStarted)
			}
		})
		if failed {
			return false
		}
		if err == nil || started {
			return true
		}
		d.rpcErrors.Add(1)
		time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
	}
	return false
}

func (d *Driver) ctrStatus(ctx context.Context, id string) (*runtimeapi.ContainerStatus, error) {
	var st *runtimeapi.ContainerStatus
	err := d.idem(ctx, "ContainerStatus", false, func(cctx context.Context) error {
		r, err := d.env.RT.ContainerStatus(cctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err == nil {
			st = r.Status
		}
		return err
	})
	return st, err
}

// waitExit waits for a KindExit container to be reported EXITED and checks
// its exit code and log.
func (d *Driver) waitExit(ctx context.Context, rec CtrRec) {
	deadline := time.Now().Add(time.Duration(rec.Lines)*100*time.Millisecond + 3*time.Minute)
	for time.Now().Before(deadline) {
		st, err := d.ctrStatus(ctx, rec.ID)
		if status.Code(errors.Unwrap(err)) == codes.NotFound || status.Code(err) == codes.NotFound {
			d.violate(Violation{Kind: LostContainer, ID: rec.ID, Detail: "container " + rec.Name + " not found while waiting for its exit"})
			return
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil && st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			d.exits.Add(1)
			if st.ExitCode != rec.ExitCode && ExitLostByContainerd(d.reaped(), rec.ID, st.ExitCode) {
				d.exitsLostByContainerd.Add(1)
				logf("exit code of %s (%d) dropped by containerd: it exited while containerd was down", rec.ID[:12], rec.ExitCode)
			} else if st.ExitCode != rec.ExitCode {
				d.violate(Violation{Kind: WrongExitCode, ID: rec.ID, Detail: fmt.Sprintf("container %s exited with %d, reported %d (%s)", rec.Name, rec.ExitCode, st.ExitCode, st.Reason)})
			}
			cur, _ := d.model.Ctr(rec.ID)
			if !cur.LogExempt {
				d.checkLog(rec)
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !d.taskRunning(ctx, rec.ID) {
		d.violate(Violation{Kind: LostExit, ID: rec.ID, Detail: "container " + rec.Name + ": task ended, never reported EXITED"})
	}
}

// checkLog checks a finished KindExit container's log is complete. The
// daemon may still be writing the last lines: give it a few seconds.
func (d *Driver) checkLog(rec CtrRec) {
	var lost int
	var detail string
	for i := 0; i < 10; i++ {
		data, err := os.ReadFile(rec.LogPath)
		if err != nil {
			lost, detail = rec.Lines, err.Error()
		} else {
			lost, detail = CheckComplete(data, "L", rec.Lines)
		}
		if detail == "" {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	if cur, _ := d.model.Ctr(rec.ID); cur.DaemonDown && lost > 0 {
		// the known limitation: output written while the daemon was down
		// by a container that exited before it came back
		d.linesLostDown.Add(int64(lost))
		logf("log %s: %s (lived through a daemon kill)", rec.LogPath, detail)
		return
	}
	d.linesLost.Add(int64(lost))
	d.violate(Violation{Kind: LogIncomplete, ID: rec.ID, Detail: fmt.Sprintf("log %s: %s", rec.LogPath, detail)})
}

// reaped reads containerd's log for the tasks it reaped at restarts.
func (d *Driver) reaped() map[string]bool {
	b, err := os.ReadFile(d.env.Containerd.LogPath)
	if err != nil {
		return nil
	}
	return ReapedByContainerd(b)
}

func (d *Driver) taskRunning(ctx context.Context, id string) bool {
	cctx, cancel := context.WithTimeout(NSContext(ctx), 10*time.Second)
	defer cancel()
	r, err := d.env.Ctrd.TaskService().Get(cctx, &tasks.GetRequest{ContainerID: id})
	if err != nil {
		return false
	}
	return r.Process.Status == task.Status_RUNNING || r.Process.Status == task.Status_PAUSED || r.Process.Status == task.Status_PAUSING
}

func (d *Driver) stopCtr(ctx context.Context, id string) {
	d.step(func() {
		if err := d.idem(ctx, "StopContainer", false, func(cctx context.Context) error {
			_, err := d.env.RT.StopContainer(cctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1})
			return err
		}); err != nil {
			logf("StopContainer %s: %v", id[:12], err)
			return
		}
		d.model.SetCtr(id, CtrStopped)
	})
}

func (d *Driver) removeCtr(ctx context.Context, id string) {
	d.step(func() {
		if err := d.idem(ctx, "RemoveContainer", true, func(cctx context.Context) error {
			_, err := d.env.RT.RemoveContainer(cctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
			return err
		}); err != nil {
			logf("RemoveContainer %s: %v", id[:12], err)
			return
		}
		d.model.SetCtr(id, CtrRemoved)
	})
}

func (d *Driver) stopRemovePod(ctx context.Context, id string) {
	d.step(func() {
		if err := d.idem(ctx, "StopPodSandbox", true, func(cctx context.Context) error {
			_, err := d.env.RT.StopPodSandbox(cctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			return err
		}); err != nil {
			logf("StopPodSandbox %s: %v", id[:12], err)
			return
		}
		d.model.SetPod(id, PodStopped)
	})
	d.step(func() {
		if err := d.idem(ctx, "RemovePodSandbox", true, func(cctx context.Context) error {
			_, err := d.env.RT.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
			return err
		}); err != nil {
			logf("RemovePodSandbox %s: %v", id[:12], err)
			return
		}
		d.model.SetPod(id, PodRemoved)
	})
}

func (d *Driver) exec(ctx context.Context, id string, n int) {
	want := fmt.Sprintf("exec-%d", n)
	d.step(func() {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
		r, err := d.env.RT.ExecSync(cctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"echo", want}, Timeout: 10})
		if err != nil {
			d.rpcErrors.Add(1)
			return
		}
		d.execs.Add(1)
		if strings.TrimSpace(string(r.Stdout)) != want || r.ExitCode != 0 {
			logf("ExecSync %s: stdout %q exit %d, want %q", id[:12], r.Stdout, r.ExitCode, want)
		}
	})
}

// podLife is one pod's life: run, containers, execs, waits, stops, removes.
func (d *Driver) podLife(ctx context.Context, w, seq int) {
	// The cleanup half runs to the end even when the campaign stops.
	cleanCtx := context.WithoutCancel(ctx)
	name := fmt.Sprintf("w%d-p%d", w, seq)
	podID, pcfg, ok := d.runPod(ctx, name, d.env.LogDir)
	if !ok {
		return
	}
	var ids []string
	defer func() {
		for _, id := range ids {
			d.removeCtr(cleanCtx, id)
		}
		d.stopRemovePod(cleanCtx, podID)
	}()
	exitRec := CtrRec{Name: "exiter", Kind: KindExit, ExitCode: int32(1 + rand.IntN(120)), Lines: 20 + rand.IntN(40)}
	exitCmd := []string{"sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do echo L$i; i=$((i+1)); sleep 0.1; done; exit %d", exitRec.Lines, exitRec.ExitCode)}
	exitRec, ok = d.createCtr(ctx, podID, pcfg, exitRec, exitCmd)
	if !ok {
		return
	}
	ids = append(ids, exitRec.ID)
	var longRec CtrRec
	if rand.IntN(2) == 0 {
		longRec = CtrRec{Name: "sleeper", Kind: KindLong}
		longCmd := []string{"sh", "-c", "i=0; while true; do echo L$i; i=$((i+1)); sleep 0.5; done"}
		if longRec, ok = d.createCtr(ctx, podID, pcfg, longRec, longCmd); !ok {
			return
		}
		ids = append(ids, longRec.ID)
	}
	if !d.startCtr(ctx, exitRec.ID) {
		return
	}
	if longRec.ID != "" {
		if !d.startCtr(ctx, longRec.ID) {
			return
		}
		for i := 0; i < 1+rand.IntN(3); i++ {
			d.exec(ctx, longRec.ID, i)
		}
	}
	if rand.IntN(5) == 0 {
		// stopped before it finishes: no exit code to check
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
		d.stopCtr(cleanCtx, exitRec.ID)
	} else {
		d.waitExit(cleanCtx, exitRec)
	}
	time.Sleep(time.Duration(rand.IntN(2000)) * time.Millisecond)
	if longRec.ID != "" {
		d.stopCtr(cleanCtx, longRec.ID)
	}
}

// Worker churns pods until ctx ends.
func (d *Driver) Worker(ctx context.Context, w int) {
	for seq := 0; ctx.Err() == nil; seq++ {
		d.podLife(ctx, w, seq)
	}
}

// ImageWorker removes and pulls small images until ctx ends (pulls meet
// the slow registry, daemon kills and containerd restarts).
func (d *Driver) ImageWorker(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		ref := d.opts.PullImages[i%len(d.opts.PullImages)]
		_ = d.idem(ctx, "RemoveImage", true, func(cctx context.Context) error {
			_, err := d.env.IMG.RemoveImage(cctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
			return err
		})
		pctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		_, err := d.env.IMG.PullImage(pctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		cancel()
		if err == nil {
			d.pulls.Add(1)
		} else {
			d.rpcErrors.Add(1)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(500+rand.IntN(2000)) * time.Millisecond):
		}
	}
}

// Pull pulls an image, retrying transient failures.
func (d *Driver) Pull(ctx context.Context, ref string) error {
	return d.idem(ctx, "PullImage "+ref, false, func(cctx context.Context) error {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(cctx), 3*time.Minute)
		defer cancel()
		_, err := d.env.IMG.PullImage(pctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		return err
	})
}

// Observe looks at the daemon and the truth. logsOf names containers whose
// log files are read.
func (d *Driver) Observe(ctx context.Context, logsOf map[string]CtrRec) (Observation, error) {
	obs := Observation{Pods: map[string]ObservedPod{}, Ctrs: map[string]ObservedCtr{}, Logs: map[string][]byte{}}
	cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	pl, err := d.env.RT.ListPodSandbox(cctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return obs, fmt.Errorf("ListPodSandbox: %w", err)
	}
	for _, p := range pl.Items {
		st := "NOTREADY"
		if p.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			st = "READY"
		}
		obs.Pods[p.Id] = ObservedPod{State: st}
	}
	tl, err := d.env.Ctrd.TaskService().List(NSContext(cctx), &tasks.ListTasksRequest{})
	if err != nil {
		return obs, fmt.Errorf("containerd tasks: %w", err)
	}
	running := map[string]bool{}
	for _, t := range tl.Tasks {
		if t.Status == task.Status_RUNNING || t.Status == task.Status_PAUSED || t.Status == task.Status_PAUSING {
			running[t.ID] = true
		}
	}
	cl, err := d.env.RT.ListContainers(cctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return obs, fmt.Errorf("ListContainers: %w", err)
	}
	for _, c := range cl.Containers {
		o := ObservedCtr{State: strings.TrimPrefix(c.State.String(), "CONTAINER_"), TaskRunning: running[c.Id]}
		if c.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			if st, err := d.env.RT.ContainerStatus(cctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.Id}); err == nil {
				o.ExitCode = st.Status.ExitCode
			}
		}
		obs.Ctrs[c.Id] = o
	}
	obs.Reaped = d.reaped()
	for id, rec := range logsOf {
		if b, err := os.ReadFile(rec.LogPath); err == nil {
			obs.Logs[id] = b
		}
	}
	return obs, nil
}

// SnapshotLogs reads the complete lines of every live container's log.
func (d *Driver) SnapshotLogs() map[string][]byte {
	_, ctrs := d.model.Snapshot()
	out := map[string][]byte{}
	for id, c := range ctrs {
		if c.State == CtrRemoved {
			continue
		}
		b, err := os.ReadFile(c.LogPath)
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(string(b), '\n'); i >= 0 {
			out[id] = b[:i+1]
		}
	}
	return out
}

// CheckNow checks every invariant with the workers paused; violations that
// persist for settle are reported.
func (d *Driver) CheckNow(ctx context.Context, before map[string][]byte, settle time.Duration) []Violation {
	d.gate.Lock()
	defer d.gate.Unlock()
	deadline := time.Now().Add(settle)
	for {
		pods, ctrs := d.model.Snapshot()
		logsOf := map[string]CtrRec{}
		for id := range before {
			if c, ok := ctrs[id]; ok {
				logsOf[id] = c
			}
		}
		obs, err := d.Observe(ctx, logsOf)
		var v []Violation
		if err == nil {
			v = Check(pods, ctrs, obs, before)
		}
		if (err == nil && len(v) == 0) || time.Now().After(deadline) {
			if err != nil {
				logf("check: observation failed: %v", err)
				return []Violation{{Kind: WrongState, ID: "daemon", Detail: "could not observe: " + err.Error()}}
			}
			for _, x := range v {
				d.violate(x)
			}
			return v
		}
		time.Sleep(time.Second)
	}
}
