package e2e

// Container lifecycle e2e tests: each test starts its own daemon
// (framework.StartDaemon) on the stack's containerd and drives it over CRI
// gRPC as kubelet would.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// ctrEnv is a private daemon for container tests, with the busybox image
// pulled and a directory for pod logs.
type ctrEnv struct {
	t       *testing.T
	env     framework.StackEnv
	d       *framework.Daemon
	imageID string
	logRoot string
}

// newCtrEnv starts a daemon (extraArgs appended to its command line) that
// pulls through the stack's hosts.toml tree, and pulls the busybox image.
// Every pod left at the end of the test is stopped and removed.
func newCtrEnv(t *testing.T, extraArgs ...string) *ctrEnv {
	t.Helper()
	env := framework.RequireStack(t, "ContainerdAddress", "CertsD")
	if env.CNIConfDir == "" {
		t.Skip("e2e stack not configured: CNI_CONF_DIR is not set")
	}
	// Made before the daemon, so that it is removed after the daemon stopped.
	logRoot := t.TempDir()
	d := framework.StartDaemon(t, env, framework.DaemonOptions{RegistryConfigPath: env.CertsD, ExtraArgs: extraArgs})
	t.Cleanup(func() {
		if d.IsRunning() {
			framework.StopAndRemovePods(t, d.RuntimeClient())
		}
		// Anything still mounted would pin the daemon's directory.
		framework.UnmountUnder(t, d.Dir)
	})
	e := &ctrEnv{t: t, env: env, d: d, logRoot: logRoot}
	e.imageID = framework.PullImageOrFail(t, d, framework.BusyboxImageRef)
	return e
}

// rc is a runtime client on the daemon's current connection (a restart
// makes a new one).
func (e *ctrEnv) rc() runtimeapi.RuntimeServiceClient { return e.d.RuntimeClient() }

// runPod runs a pod as kubelet would (own network namespace, a PID
// namespace per container, a log directory) and returns its ID and config.
func (e *ctrEnv) runPod(name string, opts ...framework.PodOption) (string, *runtimeapi.PodSandboxConfig) {
	e.t.Helper()
	logDir := filepath.Join(e.logRoot, "pods", name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	all := append([]framework.PodOption{
		framework.WithLogDirectory(logDir),
		func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_CONTAINER
		},
	}, opts...)
	cfg := framework.PodConfig(name, all...)
	ctx, cancel := context.WithTimeout(context.Background(), framework.CallTimeout)
	defer cancel()
	resp, err := e.rc().RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		e.t.Fatalf("RunPodSandbox(%s): %v", name, err)
	}
	return resp.GetPodSandboxId(), cfg
}

// run creates and starts a container in a pod.
func (e *ctrEnv) run(podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	e.t.Helper()
	return framework.RunContainerOrFail(e.t, e.rc(), podID, podCfg, cfg)
}

// logPath is the host path of a container's log.
func ctrLogPath(podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	return filepath.Join(podCfg.GetLogDirectory(), cfg.GetLogPath())
}

// ctrWaitLogLine waits until a full log line of stream equals line.
func ctrWaitLogLine(t *testing.T, path, stream, line string, timeout time.Duration) {
	t.Helper()
	framework.WaitForCRILog(t, path, timeout, fmt.Sprintf("%s line %q", stream, line), func(recs []framework.CRILogRecord) bool {
		return slices.Contains(framework.CRILogLines(recs, stream), line)
	})
}

func ctrSh(script string) []string { return []string{"sh", "-c", script} }

// TestContainerLifecycle runs a pod with several containers as kubelet
// would: create, start, status, list with filters, exit codes and reasons,
// the CRI log, stop and remove (both idempotent).
func TestContainerLifecycle(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	const userImage = "gcr.io/k8s-staging-cri-tools/test-image-user-uid-group:latest" // USER 1003:1004
	userImageID := framework.PullImageOrFail(t, e.d, userImage)
	podID, podCfg := e.runPod("lifecycle")

	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "hello.txt"), []byte("from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mounts := []*runtimeapi.Mount{{ContainerPath: "/mnt/host", HostPath: hostDir, Readonly: true}}

	runner := framework.NewContainerConfig("runner", framework.BusyboxImageRef,
		ctrSh("echo hello-stdout; echo hello-stderr >&2; exec sleep 3600")...)
	runner.Mounts = mounts
	runner.Labels["e2e-role"] = "worker"
	runner.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1234}
	runner.Linux.SecurityContext.RunAsGroup = &runtimeapi.Int64Value{Value: 5678}

	user := framework.NewContainerConfig("user", userImage, ctrSh("id -u; id -g; exec sleep 3600")...)
	user.Labels["e2e-role"] = "worker"
	completer := framework.NewContainerConfig("completer", framework.BusyboxImageRef, ctrSh("echo bye; exit 0")...)
	failer := framework.NewContainerConfig("failer", framework.BusyboxImageRef, ctrSh("echo oops >&2; exit 3")...)
	idle := framework.NewContainerConfig("idle", framework.BusyboxImageRef, "sleep", "3600")

	// Created, not started.
	ids := map[string]string{}
	for _, c := range []*runtimeapi.ContainerConfig{runner, user, completer, failer, idle} {
		ids[c.Metadata.Name] = framework.CreateContainerOrFail(t, rc, podID, podCfg, c)
	}
	st := framework.ContainerStatusOrFail(t, rc, ids["runner"])
	if st.State != runtimeapi.ContainerState_CONTAINER_CREATED || st.CreatedAt == 0 || st.StartedAt != 0 || st.FinishedAt != 0 {
		t.Fatalf("created container: state %s created %d started %d finished %d", st.State, st.CreatedAt, st.StartedAt, st.FinishedAt)
	}
	created := framework.ListContainersOrFail(t, rc, &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_CREATED}})
	if len(created) != 5 {
		t.Fatalf("ListContainers(state=CREATED) = %v, want the 5 containers", framework.ContainerIDs(created))
	}

	for _, n := range []string{"runner", "user", "completer", "failer"} {
		framework.StartContainerOrFail(t, rc, ids[n])
	}
	runnerLog := ctrLogPath(podCfg, runner)
	ctrWaitLogLine(t, runnerLog, "stdout", "hello-stdout", 30*time.Second)
	ctrWaitLogLine(t, runnerLog, "stderr", "hello-stderr", 30*time.Second)

	// Running container status.
	st = framework.WaitForContainerState(t, rc, ids["runner"], runtimeapi.ContainerState_CONTAINER_RUNNING, 10*time.Second)
	if st.Id != ids["runner"] || st.Metadata.GetName() != "runner" {
		t.Errorf("status id/metadata = %s/%v", st.Id, st.Metadata)
	}
	if st.StartedAt < st.CreatedAt || st.FinishedAt != 0 || st.ExitCode != 0 || st.Reason != "" {
		t.Errorf("running status: created %d started %d finished %d exit %d reason %q", st.CreatedAt, st.StartedAt, st.FinishedAt, st.ExitCode, st.Reason)
	}
	img := imageStatus(t, e.d.ImageClient(), framework.BusyboxImageRef)
	if st.Image.GetImage() != framework.BusyboxImageRef {
		t.Errorf("status image = %q, want %q", st.Image.GetImage(), framework.BusyboxImageRef)
	}
	if st.Image.GetUserSpecifiedImage() != framework.BusyboxImageRef {
		t.Errorf("status user-specified image = %q, want %q", st.Image.GetUserSpecifiedImage(), framework.BusyboxImageRef)
	}
	if len(img.RepoDigests) == 0 || st.ImageRef != img.RepoDigests[0] {
		t.Errorf("status imageRef = %q, want the repo digest %v", st.ImageRef, img.RepoDigests)
	}
	if st.ImageId != e.imageID {
		t.Errorf("status imageId = %q, want the image ID %q", st.ImageId, e.imageID)
	}
	if st.LogPath != runnerLog {
		t.Errorf("status log path = %q, want %q", st.LogPath, runnerLog)
	}
	if len(st.Mounts) != 1 || st.Mounts[0].ContainerPath != "/mnt/host" || st.Mounts[0].HostPath != hostDir || !st.Mounts[0].Readonly {
		t.Errorf("status mounts = %v, want %v", st.Mounts, mounts)
	}
	if u := st.GetUser().GetLinux(); u.GetUid() != 1234 || u.GetGid() != 5678 {
		t.Errorf("status user = %v, want uid 1234 gid 5678", st.GetUser())
	}
	if st.Labels["e2e-role"] != "worker" || st.Annotations["io.kubernetes.container.restartCount"] != "0" {
		t.Errorf("status labels %v annotations %v", st.Labels, st.Annotations)
	}
	if out, _, code := framework.ExecSyncOrFail(t, rc, ids["runner"], 10*time.Second, "sh", "-c", "id -u; id -g; cat /mnt/host/hello.txt"); code != 0 || out != "1234\n5678\nfrom-host\n" {
		t.Errorf("exec id/cat: code %d out %q", code, out)
	}
	if _, _, code := framework.ExecSyncOrFail(t, rc, ids["runner"], 10*time.Second, "sh", "-c", "echo x > /mnt/host/new.txt"); code == 0 {
		t.Error("writing to a read-only mount succeeded")
	}

	// The image's USER.
	ust := framework.WaitForContainerState(t, rc, ids["user"], runtimeapi.ContainerState_CONTAINER_RUNNING, 10*time.Second)
	if u := ust.GetUser().GetLinux(); u.GetUid() != 1003 || u.GetGid() != 1004 {
		t.Errorf("user image container: status user = %v, want uid 1003 gid 1004", ust.GetUser())
	}
	if ust.ImageId != userImageID || ust.Image.GetImage() != userImage {
		t.Errorf("user image container: image %q id %q, want %q %q", ust.Image.GetImage(), ust.ImageId, userImage, userImageID)
	}
	ctrWaitLogLine(t, ctrLogPath(podCfg, user), "stdout", "1004", 30*time.Second)
	if got := framework.CRILogLines(framework.ReadCRILog(t, ctrLogPath(podCfg, user)), "stdout"); !slices.Equal(got, []string{"1003", "1004"}) {
		t.Errorf("user image container output = %q, want 1003, 1004", got)
	}

	// Exits: reason and code.
	cst := framework.WaitForContainerState(t, rc, ids["completer"], runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
	if cst.ExitCode != 0 || cst.Reason != "Completed" || cst.FinishedAt < cst.StartedAt || cst.StartedAt == 0 {
		t.Errorf("completed container: exit %d reason %q started %d finished %d", cst.ExitCode, cst.Reason, cst.StartedAt, cst.FinishedAt)
	}
	fst := framework.WaitForContainerState(t, rc, ids["failer"], runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
	if fst.ExitCode != 3 || fst.Reason != "Error" || fst.FinishedAt < fst.StartedAt {
		t.Errorf("failed container: exit %d reason %q started %d finished %d", fst.ExitCode, fst.Reason, fst.StartedAt, fst.FinishedAt)
	}
	// The whole output of an exited container is in its log.
	if got := framework.CRILogLines(framework.ReadCRILog(t, ctrLogPath(podCfg, completer)), ""); !slices.Equal(got, []string{"bye"}) {
		t.Errorf("completer log lines = %q", got)
	}
	frecs := framework.ReadCRILog(t, ctrLogPath(podCfg, failer))
	if len(frecs) != 1 || frecs[0].Stream != "stderr" || frecs[0].Tag != "F" || frecs[0].Content != "oops" {
		t.Errorf("failer log = %+v", frecs)
	}
	for _, r := range frecs {
		if r.Time.Before(time.Unix(0, fst.CreatedAt)) || r.Time.After(time.Now()) {
			t.Errorf("log record time %s is outside the container's life", r.Time)
		}
	}

	// List filters.
	all := framework.ListContainersOrFail(t, rc, nil)
	if len(all) != 5 {
		t.Errorf("ListContainers() = %d containers, want 5", len(all))
	}
	for _, c := range all {
		if c.PodSandboxId != podID || c.ImageRef == "" || c.Image.GetImage() == "" || c.CreatedAt == 0 {
			t.Errorf("listed container %+v", c)
		}
	}
	check := func(what string, f *runtimeapi.ContainerFilter, want ...string) {
		t.Helper()
		var wantIDs []string
		for _, n := range want {
			wantIDs = append(wantIDs, ids[n])
		}
		slices.Sort(wantIDs)
		if got := framework.ContainerIDs(framework.ListContainersOrFail(t, rc, f)); !slices.Equal(got, wantIDs) {
			t.Errorf("ListContainers(%s) = %v, want %v (%v)", what, got, wantIDs, want)
		}
	}
	check("id prefix", &runtimeapi.ContainerFilter{Id: ids["runner"][:12]}, "runner")
	check("full id", &runtimeapi.ContainerFilter{Id: ids["failer"]}, "failer")
	check("pod", &runtimeapi.ContainerFilter{PodSandboxId: podID}, "runner", "user", "completer", "failer", "idle")
	check("pod prefix", &runtimeapi.ContainerFilter{PodSandboxId: podID[:10]}, "runner", "user", "completer", "failer", "idle")
	check("other pod", &runtimeapi.ContainerFilter{PodSandboxId: strings.Repeat("0", 64)})
	check("running", &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}, "runner", "user")
	check("exited", &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}, "completer", "failer")
	check("created", &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_CREATED}}, "idle")
	check("label", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"e2e-role": "worker"}}, "runner", "user")
	check("label+state", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"e2e-role": "worker"},
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}})
	check("name label", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"io.kubernetes.container.name": "failer"}}, "failer")

	// Stop: runner's sleep is PID 1 of its PID namespace without a SIGTERM
	// handler, so SIGTERM does nothing and the stop ends with SIGKILL.
	start := time.Now()
	framework.StopContainerOrFail(t, rc, ids["runner"], 1)
	if el := time.Since(start); el < 900*time.Millisecond || el > 20*time.Second {
		t.Errorf("StopContainer(timeout 1s) of a container ignoring SIGTERM took %s", el)
	}
	sst := framework.ContainerStatusOrFail(t, rc, ids["runner"])
	if sst.State != runtimeapi.ContainerState_CONTAINER_EXITED || sst.ExitCode != 137 || sst.Reason != "Error" {
		t.Errorf("stopped runner: state %s exit %d reason %q, want EXITED 137 Error", sst.State, sst.ExitCode, sst.Reason)
	}
	// Idempotent stops: again, of an exited container, of a created one.
	framework.StopContainerOrFail(t, rc, ids["runner"], 1)
	framework.StopContainerOrFail(t, rc, ids["completer"], 10)
	framework.StopContainerOrFail(t, rc, ids["idle"], 10)
	if st := framework.ContainerStatusOrFail(t, rc, ids["completer"]); st.ExitCode != 0 || st.Reason != "Completed" {
		t.Errorf("stopping an exited container changed its exit: %d %q", st.ExitCode, st.Reason)
	}

	// Remove: a running container (user) is removed too (force), all twice.
	for _, n := range []string{"runner", "user", "completer", "failer", "idle"} {
		framework.RemoveContainerOrFail(t, rc, ids[n])
		framework.RemoveContainerOrFail(t, rc, ids[n])
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ids[n]})
		cancel()
		if status.Code(err) != codes.NotFound {
			t.Errorf("ContainerStatus(%s) after removal: %v, want NotFound", n, err)
		}
	}
	if left := framework.ListContainersOrFail(t, rc, nil); len(left) != 0 {
		t.Errorf("containers listed after removal: %v", framework.ContainerIDs(left))
	}
	// The log stays for kubelet to delete.
	if _, err := os.Stat(runnerLog); err != nil {
		t.Errorf("container log after removal: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ids["runner"], Timeout: 1})
	t.Logf("StopContainer of a removed container: %v", err)
}

// TestContainerLogLongLines checks that a line longer than the maximum log
// line size is split into partial records (P) ending with a full one (F):
// with max_container_log_line_size from the config file, and with the
// default of 16 KiB.
func TestContainerLogLongLines(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config string
		max    int
	}{
		{"configured-100", "max_container_log_line_size = 100\n", 100},
		{"default-16KiB", "", 16 * 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			if tc.config != "" {
				args = framework.WriteDaemonConfig(t, tc.config)
			}
			e := newCtrEnv(t, args...)
			podID, podCfg := e.runPod("longlines")
			n := 2*tc.max + tc.max/2
			script := fmt.Sprintf("head -c %d /dev/zero | tr '\\0' a; echo; echo short; head -c %d /dev/zero | tr '\\0' b >&2; echo >&2; printf no-newline", n, tc.max)
			cfg := framework.NewContainerConfig("printer", framework.BusyboxImageRef, ctrSh(script)...)
			id := e.run(podID, podCfg, cfg)
			framework.WaitForContainerState(t, e.rc(), id, runtimeapi.ContainerState_CONTAINER_EXITED, 60*time.Second)
			recs := framework.ReadCRILog(t, ctrLogPath(podCfg, cfg))
			type rec struct {
				stream, tag string
				content     string
			}
			var got []rec
			for _, r := range recs {
				got = append(got, rec{r.Stream, r.Tag, r.Content})
			}
			a := strings.Repeat("a", tc.max)
			want := []rec{
				{"stdout", "P", a}, {"stdout", "P", a}, {"stdout", "F", a[:tc.max/2]},
				{"stdout", "F", "short"},
				// Exactly the maximum: one full record.
				{"stderr", "F", strings.Repeat("b", tc.max)},
				// Output without a final newline: a partial record at the end.
				{"stdout", "P", "no-newline"},
			}
			// The streams are copied independently: compare each one's records.
			byStream := func(rs []rec, stream string) []rec {
				var out []rec
				for _, r := range rs {
					if r.stream == stream {
						out = append(out, r)
					}
				}
				return out
			}
			if !slices.Equal(byStream(got, "stdout"), byStream(want, "stdout")) || !slices.Equal(byStream(got, "stderr"), byStream(want, "stderr")) {
				desc := func(rs []rec) string {
					var b strings.Builder
					for _, r := range rs {
						fmt.Fprintf(&b, "\n  %s %s %q(%d)", r.stream, r.tag, r.content[:min(len(r.content), 12)], len(r.content))
					}
					return b.String()
				}
				t.Errorf("log records:%s\nwant:%s", desc(got), desc(want))
			}
			lines := framework.CRILogLines(recs, "stdout")
			if len(lines) < 1 || lines[0] != strings.Repeat("a", n) {
				t.Errorf("reassembled first line has %d bytes, want %d", len(lines[0]), n)
			}
		})
	}
}

// TestContainerStop checks the stop paths: a container that ignores SIGTERM
// is SIGKILLed after the timeout, one that handles SIGTERM stops at once
// with its own exit code, and the image's STOPSIGNAL is used; stop and
// remove are idempotent.
func TestContainerStop(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	const stopSignalImage = "registry.k8s.io/cri-containerd-e2e/config:1" // STOPSIGNAL SIGUSR1
	framework.PullImageOrFail(t, e.d, stopSignalImage)
	podID, podCfg := e.runPod("stop")

	ignore := framework.NewContainerConfig("ignore-term", framework.BusyboxImageRef,
		ctrSh(`trap "" TERM; echo ready; while true; do sleep 1; done`)...)
	handle := framework.NewContainerConfig("handle-term", framework.BusyboxImageRef,
		ctrSh(`trap "echo got-term; exit 0" TERM; echo ready; while true; do sleep 0.2; done`)...)
	usr1 := framework.NewContainerConfig("stopsignal", stopSignalImage,
		ctrSh(`trap "echo got-usr1; exit 0" USR1; trap "echo got-term; exit 1" TERM; echo ready; while true; do sleep 0.2; done`)...)
	ids := map[string]string{}
	for _, c := range []*runtimeapi.ContainerConfig{ignore, handle, usr1} {
		ids[c.Metadata.Name] = e.run(podID, podCfg, c)
	}
	for _, c := range []*runtimeapi.ContainerConfig{ignore, handle, usr1} {
		ctrWaitLogLine(t, ctrLogPath(podCfg, c), "stdout", "ready", 30*time.Second)
	}

	t.Run("ignores-SIGTERM", func(t *testing.T) {
		start := time.Now()
		framework.StopContainerOrFail(t, rc, ids["ignore-term"], 3)
		el := time.Since(start)
		if el < 3*time.Second || el > 20*time.Second {
			t.Errorf("StopContainer(timeout 3s) took %s, want the timeout then SIGKILL", el)
		}
		st := framework.ContainerStatusOrFail(t, rc, ids["ignore-term"])
		if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 || st.Reason != "Error" {
			t.Errorf("state %s exit %d reason %q, want EXITED 137 (SIGKILL) Error", st.State, st.ExitCode, st.Reason)
		}
	})
	t.Run("handles-SIGTERM", func(t *testing.T) {
		start := time.Now()
		framework.StopContainerOrFail(t, rc, ids["handle-term"], 60)
		if el := time.Since(start); el > 15*time.Second {
			t.Errorf("StopContainer of a container exiting on SIGTERM took %s", el)
		}
		st := framework.ContainerStatusOrFail(t, rc, ids["handle-term"])
		if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 || st.Reason != "Completed" {
			t.Errorf("state %s exit %d reason %q, want EXITED 0 Completed", st.State, st.ExitCode, st.Reason)
		}
		ctrWaitLogLine(t, ctrLogPath(podCfg, handle), "stdout", "got-term", 5*time.Second)
	})
	t.Run("image-STOPSIGNAL", func(t *testing.T) {
		start := time.Now()
		framework.StopContainerOrFail(t, rc, ids["stopsignal"], 60)
		if el := time.Since(start); el > 15*time.Second {
			t.Errorf("StopContainer with the image's stop signal took %s", el)
		}
		st := framework.ContainerStatusOrFail(t, rc, ids["stopsignal"])
		if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 {
			t.Errorf("state %s exit %d reason %q, want EXITED 0 (SIGUSR1 handler)", st.State, st.ExitCode, st.Reason)
		}
		lines := framework.CRILogLines(framework.ReadCRILog(t, ctrLogPath(podCfg, usr1)), "stdout")
		if !slices.Contains(lines, "got-usr1") {
			t.Errorf("log lines %q, want got-usr1", lines)
		}
	})
	t.Run("idempotent", func(t *testing.T) {
		for _, id := range ids {
			framework.StopContainerOrFail(t, rc, id, 1)
			framework.StopContainerOrFail(t, rc, id, 0)
			framework.RemoveContainerOrFail(t, rc, id)
			framework.RemoveContainerOrFail(t, rc, id)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: strings.Repeat("f", 64)}); err != nil {
			t.Errorf("RemoveContainer of an unknown ID: %v, want success", err)
		}
	})
}

// TestContainerStats checks CPU, memory and writable-layer stats of a busy
// container, the list filters, and the pod stats.
func TestContainerStats(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	podID, podCfg := e.runPod("stats")
	busy := framework.NewContainerConfig("busy", framework.BusyboxImageRef,
		ctrSh("dd if=/dev/zero of=/written bs=1M count=8 2>/dev/null; echo written; while :; do :; done")...)
	busy.Labels["e2e-stats"] = "yes"
	id := e.run(podID, podCfg, busy)
	// The busy loop takes a whole CPU of a shared machine: stop it early.
	defer framework.StopContainerOrFail(t, rc, id, 0)
	ctrWaitLogLine(t, ctrLogPath(podCfg, busy), "stdout", "written", 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var cs *runtimeapi.ContainerStats
	deadline := time.Now().Add(45 * time.Second)
	for {
		resp, err := rc.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
		if err != nil {
			t.Fatalf("ContainerStats: %v", err)
		}
		cs = resp.GetStats()
		if cs.GetCpu().GetUsageCoreNanoSeconds().GetValue() > 0 && cs.GetCpu().GetUsageNanoCores().GetValue() > 0 &&
			cs.GetMemory().GetWorkingSetBytes().GetValue() > 0 &&
			cs.GetWritableLayer().GetUsedBytes().GetValue() >= 8<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ContainerStats after 45s: cpu %v memory %v writable layer %v", cs.GetCpu(), cs.GetMemory(), cs.GetWritableLayer())
		}
		time.Sleep(time.Second)
	}
	t.Logf("container stats: cpu %d ns (%d nanocores), working set %d, writable layer %d bytes %d inodes (%s)",
		cs.Cpu.UsageCoreNanoSeconds.GetValue(), cs.Cpu.UsageNanoCores.GetValue(), cs.Memory.WorkingSetBytes.GetValue(),
		cs.WritableLayer.UsedBytes.GetValue(), cs.WritableLayer.InodesUsed.GetValue(), cs.WritableLayer.GetFsId().GetMountpoint())
	if a := cs.GetAttributes(); a.GetId() != id || a.GetMetadata().GetName() != "busy" || a.GetLabels()["e2e-stats"] != "yes" {
		t.Errorf("stats attributes = %v", a)
	}
	// A busy loop uses a good part of a CPU even on a loaded, shared machine.
	if nc := cs.Cpu.UsageNanoCores.GetValue(); nc < 20_000_000 {
		t.Errorf("usageNanoCores %d of a busy loop, want > 0.02 core", nc)
	}
	if cs.Memory.GetUsageBytes().GetValue() == 0 || cs.Memory.GetTimestamp() == 0 || cs.Cpu.GetTimestamp() == 0 {
		t.Errorf("memory %v cpu %v: missing usage or timestamps", cs.Memory, cs.Cpu)
	}

	for _, f := range []*runtimeapi.ContainerStatsFilter{
		nil,
		{Id: id},
		{Id: id[:12]},
		{PodSandboxId: podID},
		{LabelSelector: map[string]string{"e2e-stats": "yes"}},
	} {
		resp, err := rc.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: f})
		if err != nil {
			t.Fatalf("ListContainerStats(%v): %v", f, err)
		}
		if len(resp.Stats) != 1 || resp.Stats[0].GetAttributes().GetId() != id || resp.Stats[0].GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 {
			t.Errorf("ListContainerStats(%v) = %v, want the busy container with CPU usage", f, resp.Stats)
		}
	}
	resp, err := rc.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"e2e-stats": "no"}}})
	if err != nil || len(resp.GetStats()) != 0 {
		t.Errorf("ListContainerStats(non-matching label) = %v, %v; want none", resp.GetStats(), err)
	}

	// Pod stats.
	ps, err := rc.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
	if status.Code(err) == codes.Unimplemented {
		t.Logf("PodSandboxStats is not implemented: %v", err)
		return
	}
	if err != nil {
		t.Fatalf("PodSandboxStats: %v", err)
	}
	l := ps.GetStats().GetLinux()
	if ps.GetStats().GetAttributes().GetId() != podID {
		t.Errorf("pod stats attributes = %v", ps.GetStats().GetAttributes())
	}
	if l.GetCpu().GetUsageCoreNanoSeconds().GetValue() < cs.Cpu.UsageCoreNanoSeconds.GetValue() || l.GetMemory().GetWorkingSetBytes().GetValue() == 0 {
		t.Errorf("pod cpu %v memory %v, want at least the container's", l.GetCpu(), l.GetMemory())
	}
	if len(l.GetContainers()) != 1 || l.GetContainers()[0].GetAttributes().GetId() != id {
		t.Errorf("pod stats containers = %v", l.GetContainers())
	}
	if n := l.GetNetwork(); n == nil {
		t.Errorf("pod stats without network stats")
	} else {
		t.Logf("pod network: default interface %v, %d interfaces", n.GetDefaultInterface(), len(n.GetInterfaces()))
		if n.GetDefaultInterface().GetName() != "eth0" {
			t.Errorf("pod default interface = %v, want eth0", n.GetDefaultInterface())
		}
	}
	if l.GetProcess().GetProcessCount().GetValue() == 0 {
		t.Logf("pod process count not reported: %v", l.GetProcess())
	}
	list, err := rc.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: podID}})
	if err != nil || len(list.GetStats()) != 1 || list.GetStats()[0].GetAttributes().GetId() != podID {
		t.Errorf("ListPodSandboxStats(id) = %v, %v", list.GetStats(), err)
	}
}

// TestContainerOOMKilled checks that a container killed by the OOM killer
// of its memory cgroup reports reason OOMKilled.
func TestContainerOOMKilled(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.runPod("oom")
	cfg := framework.NewContainerConfig("hog", framework.BusyboxImageRef, ctrSh("echo start; x=a; while :; do x=$x$x; done")...)
	cfg.Linux.Resources.MemoryLimitInBytes = 32 << 20
	id := e.run(podID, podCfg, cfg)
	st := framework.WaitForContainerState(t, e.rc(), id, runtimeapi.ContainerState_CONTAINER_EXITED, 2*time.Minute)
	if st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("OOM-killed container: reason %q exit %d, want OOMKilled 137", st.Reason, st.ExitCode)
	}
	if st.GetResources().GetLinux().GetMemoryLimitInBytes() != 32<<20 {
		t.Errorf("status resources = %v, want the 32 MiB limit", st.GetResources())
	}
}

// TestReopenContainerLog rotates a log as kubelet does (rename, then
// ReopenContainerLog) under a container printing a line every 100ms: new
// lines go to a fresh file at the same path and no line is lost.
func TestReopenContainerLog(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	podID, podCfg := e.runPod("rotate")
	cfg := framework.NewContainerConfig("seq", framework.BusyboxImageRef, framework.SequenceCommand("line", "0.1")...)
	id := e.run(podID, podCfg, cfg)
	path := ctrLogPath(podCfg, cfg)
	atLeast := func(n int) func([]framework.CRILogRecord) bool {
		return func(recs []framework.CRILogRecord) bool { return len(recs) >= n }
	}
	framework.WaitForCRILog(t, path, 30*time.Second, "10 records", atLeast(10))

	rotated := path + ".20250101-000000"
	for round := 0; round < 2; round++ {
		r := fmt.Sprintf("%s.%d", rotated, round)
		if err := os.Rename(path, r); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := rc.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
		cancel()
		if err != nil {
			t.Fatalf("ReopenContainerLog: %v", err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("no log file at %s right after ReopenContainerLog: %v", path, err)
		}
		framework.WaitForCRILog(t, path, 30*time.Second, "10 records in the new file", atLeast(10))
	}
	framework.StopContainerOrFail(t, rc, id, 0)

	var all []int
	for _, f := range []string{rotated + ".0", rotated + ".1", path} {
		nums := framework.SequenceNumbers(framework.CRILogLines(framework.ReadCRILog(t, f), "stdout"), "line")
		if len(nums) == 0 {
			t.Errorf("%s holds no line", f)
			continue
		}
		t.Logf("%s: lines %d..%d", filepath.Base(f), nums[0], nums[len(nums)-1])
		all = append(all, nums...)
	}
	if err := framework.CheckSequence(all); err != nil {
		t.Errorf("rotated logs: %v", err)
	}

	// Not running: FailedPrecondition-like error; unknown: NotFound.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rc.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err == nil {
		t.Error("ReopenContainerLog of a stopped container succeeded")
	} else {
		t.Logf("ReopenContainerLog of a stopped container: %v", err)
	}
	_, err := rc.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: strings.Repeat("e", 64)})
	if status.Code(err) != codes.NotFound {
		t.Errorf("ReopenContainerLog of an unknown container: %v, want NotFound", err)
	}
}

// TestUpdateContainerResources checks that UpdateContainerResources changes
// the running container's cgroup, its status and its stored spec.
func TestUpdateContainerResources(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	podID, podCfg := e.runPod("update")
	cfg := framework.NewContainerConfig("sleeper", framework.BusyboxImageRef, "sleep", "3600")
	cfg.Linux.Resources.MemoryLimitInBytes = 64 << 20
	cfg.Linux.Resources.CpuShares = 256
	id := e.run(podID, podCfg, cfg)
	cg := framework.ContainerCgroupsPath(t, rc, id)
	t.Logf("cgroups path %s", cg)
	read := func(controller, file string) int64 {
		t.Helper()
		p := framework.CgroupV1File(controller, cg, file)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("reading %s: %v", p, err)
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return v
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		t.Skipf("cgroup v1 memory controller not mounted at /sys/fs/cgroup/memory: %v", err)
	}
	if got := read("memory", "memory.limit_in_bytes"); got != 64<<20 {
		t.Errorf("initial memory.limit_in_bytes = %d, want %d", got, 64<<20)
	}
	if got := read("cpu", "cpu.shares"); got != 256 {
		t.Errorf("initial cpu.shares = %d, want 256", got)
	}

	upd := &runtimeapi.LinuxContainerResources{
		MemoryLimitInBytes: 128 << 20,
		CpuShares:          512,
		CpuPeriod:          100000,
		CpuQuota:           50000,
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rc.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: upd}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	if got := read("memory", "memory.limit_in_bytes"); got != 128<<20 {
		t.Errorf("memory.limit_in_bytes after update = %d, want %d", got, 128<<20)
	}
	if got := read("cpu", "cpu.shares"); got != 512 {
		t.Errorf("cpu.shares after update = %d, want 512", got)
	}
	if got := read("cpu", "cpu.cfs_quota_us"); got != 50000 {
		t.Errorf("cpu.cfs_quota_us after update = %d, want 50000", got)
	}
	st := framework.ContainerStatusOrFail(t, rc, id)
	if r := st.GetResources().GetLinux(); r.GetMemoryLimitInBytes() != 128<<20 || r.GetCpuShares() != 512 || r.GetCpuQuota() != 50000 {
		t.Errorf("status resources after update = %v", r)
	}
	info := framework.ContainerInfo(t, rc, id)
	spec, _ := info["runtimeSpec"].(map[string]any)
	linux, _ := spec["linux"].(map[string]any)
	res, _ := linux["resources"].(map[string]any)
	mem, _ := res["memory"].(map[string]any)
	if lim, _ := mem["limit"].(float64); int64(lim) != 128<<20 {
		t.Errorf("stored spec memory limit = %v, want %d", mem["limit"], 128<<20)
	}

	// A created container's update applies when it starts.
	created := framework.NewContainerConfig("created", framework.BusyboxImageRef, "sleep", "3600")
	created.Linux.Resources.MemoryLimitInBytes = 64 << 20
	cid := framework.CreateContainerOrFail(t, rc, podID, podCfg, created)
	if _, err := rc.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: cid,
		Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 96 << 20}}); err != nil {
		t.Fatalf("UpdateContainerResources of a created container: %v", err)
	}
	framework.StartContainerOrFail(t, rc, cid)
	ccg := framework.ContainerCgroupsPath(t, rc, cid)
	if b, err := os.ReadFile(framework.CgroupV1File("memory", ccg, "memory.limit_in_bytes")); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(96<<20) {
		t.Errorf("memory limit of a container updated before its start: %q, %v; want %d", b, err, 96<<20)
	}

	// An exited container cannot be updated.
	framework.StopContainerOrFail(t, rc, id, 0)
	if _, err := rc.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: upd}); err == nil {
		t.Error("UpdateContainerResources of an exited container succeeded")
	}
}

// TestRegression_StartedAtAfterFinishedAtOnFastExit: a container whose
// process exits before StartContainer has recorded the start must still
// report startedAt <= finishedAt, a zero pid and a STOPPED event after the
// STARTED one. StartContainer used to overwrite the exit that the event
// handler had already recorded with startedAt = now (later than finishedAt)
// and the task's pid.
func TestRegression_StartedAtAfterFinishedAtOnFastExit(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	podID, podCfg := e.runPod("fastexit")
	const n = 12
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, framework.CreateContainerOrFail(t, rc, podID, podCfg,
			framework.NewContainerConfig(fmt.Sprintf("fast-%d", i), framework.BusyboxImageRef, "true")))
	}
	for _, id := range ids {
		framework.StartContainerOrFail(t, rc, id)
	}
	bad := 0
	for i, id := range ids {
		st := framework.WaitForContainerState(t, rc, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
		pid, _ := framework.ContainerInfo(t, rc, id)["pid"].(float64)
		if st.StartedAt == 0 || st.FinishedAt < st.StartedAt || pid != 0 || st.ExitCode != 0 || st.Reason != "Completed" {
			bad++
			t.Errorf("container %d: started %d finished %d (finished-started = %s), pid %v, exit %d %q",
				i, st.StartedAt, st.FinishedAt, time.Duration(st.FinishedAt-st.StartedAt), pid, st.ExitCode, st.Reason)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d fast-exiting containers report an inconsistent exit", bad, n)
	}
}

// TestContainerNameReservation checks kubelet's naming contract: a second
// container with the same metadata (name and attempt) in a pod is refused
// while the first exists, a new attempt is accepted, and the name is free
// again once the container is removed.
func TestContainerNameReservation(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	podID, podCfg := e.runPod("names")
	cfg := framework.NewContainerConfig("app", framework.BusyboxImageRef, "true")
	first := framework.RunContainerOrFail(t, rc, podID, podCfg, cfg)
	framework.WaitForContainerState(t, rc, first, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err == nil {
		t.Fatal("CreateContainer with the metadata of an existing container succeeded")
	}
	t.Logf("duplicate name: %v", err)
	// kubelet restarts a container as the next attempt.
	next := framework.NewContainerConfig("app", framework.BusyboxImageRef, "true")
	next.Metadata.Attempt = 1
	next.LogPath = "app_1.log"
	second := framework.RunContainerOrFail(t, rc, podID, podCfg, next)
	if second == first {
		t.Fatal("the new attempt got the ID of the first")
	}
	framework.WaitForContainerState(t, rc, second, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
	// Both attempts' logs are there.
	for _, c := range []*runtimeapi.ContainerConfig{cfg, next} {
		if _, err := os.Stat(ctrLogPath(podCfg, c)); err != nil {
			t.Errorf("log of attempt %d: %v", c.Metadata.Attempt, err)
		}
	}
	// A failed CreateContainer did not leak the name or anything else:
	// after removal the name is free again.
	framework.RemoveContainerOrFail(t, rc, first)
	third := framework.CreateContainerOrFail(t, rc, podID, podCfg, cfg)
	if third == first {
		t.Error("a re-created container got the removed container's ID")
	}
	if got := framework.ContainerIDs(framework.ListContainersOrFail(t, rc, &runtimeapi.ContainerFilter{PodSandboxId: podID})); len(got) != 2 {
		t.Errorf("containers listed: %v, want the new attempt and the re-created one", got)
	}
	// Stats of exited and created containers are not an error.
	for _, id := range []string{second, third} {
		resp, err := rc.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
		if err != nil {
			t.Errorf("ContainerStats of a container without a running task: %v", err)
		} else if resp.GetStats().GetAttributes().GetId() != id {
			t.Errorf("ContainerStats attributes = %v", resp.GetStats().GetAttributes())
		}
	}
}

// TestRegression_StopContainerShorterTimeoutNotBlocked: kubelet stops a
// container again with a shorter grace period (e.g. a forced pod deletion,
// or RemoveContainer) while an earlier StopContainer is still waiting out
// a long one. The second call must SIGKILL at once, as containerd does,
// not wait behind the first call's grace period.
func TestRegression_StopContainerShorterTimeoutNotBlocked(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	podID, podCfg := e.runPod("stop-twice")
	cfg := framework.NewContainerConfig("stubborn", framework.BusyboxImageRef,
		ctrSh(`trap "" TERM; echo ready; while true; do sleep 1; done`)...)
	id := e.run(podID, podCfg, cfg)
	ctrWaitLogLine(t, ctrLogPath(podCfg, cfg), "stdout", "ready", 30*time.Second)

	const longGrace = 40
	first := make(chan error, 1)
	firstStart := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: longGrace})
		first <- err
	}()
	time.Sleep(time.Second) // the first stop has sent SIGTERM and waits

	start := time.Now()
	framework.StopContainerOrFail(t, rc, id, 0)
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("StopContainer(timeout 0) during a StopContainer(timeout %ds) took %s: it waited for the other call's grace period", longGrace, el.Round(time.Millisecond))
	}
	if st := framework.ContainerStatusOrFail(t, rc, id); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Errorf("after the forced stop: state %s exit %d, want EXITED 137", st.State, st.ExitCode)
	}
	select {
	case err := <-first:
		if err != nil {
			t.Errorf("the first StopContainer failed: %v", err)
		}
		if el := time.Since(firstStart); el > 15*time.Second {
			t.Errorf("the first StopContainer returned after %s, long after the container exited", el.Round(time.Millisecond))
		}
	case <-time.After(time.Minute):
		t.Error("the first StopContainer did not return")
	}
}

// TestContainerConcurrentStops: several StopContainer calls at once
// (kubelet retries, a pod stop and a container stop) on containers that exit
// by themselves on SIGTERM all succeed and the containers report their own
// exit code. Stops are not serialised (see
// TestRegression_StopContainerShorterTimeoutNotBlocked), so a call may find
// the task already deleted by the exit handler (which deletes the task,
// drains the output, then records the exit) or its shim gone: that is
// neither an error nor an exit code 255 "Unknown".
func TestContainerConcurrentStops(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	podID, podCfg := e.runPod("stop-concurrent")
	const n = 6
	var ids []string
	var cfgs []*runtimeapi.ContainerConfig
	for i := 0; i < n; i++ {
		// Output still flowing at the exit makes the drain take a moment.
		cfg := framework.NewContainerConfig(fmt.Sprintf("term-%d", i), framework.BusyboxImageRef,
			ctrSh(`trap "seq 1 20000; exit 3" TERM; echo ready; while true; do sleep 0.1; done`)...)
		ids = append(ids, e.run(podID, podCfg, cfg))
		cfgs = append(cfgs, cfg)
	}
	for i := range ids {
		ctrWaitLogLine(t, ctrLogPath(podCfg, cfgs[i]), "stdout", "ready", 30*time.Second)
	}
	errs := make(chan error, n*4)
	for _, id := range ids {
		for j := 0; j < 4; j++ {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				_, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 30})
				errs <- err
			}()
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := 0; i < n*4; i++ {
		if err := <-errs; err != nil {
			t.Errorf("StopContainer: %v", err)
		}
	}
	for i, id := range ids {
		st := framework.ContainerStatusOrFail(t, rc, id)
		if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 3 || st.Reason != "Error" {
			t.Errorf("container %d: state %s exit %d reason %q message %q, want EXITED 3 Error", i, st.State, st.ExitCode, st.Reason, st.Message)
		}
	}
}
