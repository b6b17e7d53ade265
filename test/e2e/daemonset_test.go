package e2e

// The DaemonSet's pod template (deploy/kubernetes) run for real on a
// bootstrap runtime: a real standalone kubelet runs the template as a static
// pod on a private containerd with its built-in CRI plugin (privileged, host
// PID and network, its mounts and propagation, its command and probes;
// CRI_E2E_DAEMONSET_DIRECT=1 makes the CRI calls instead); the pod brings
// up a cri-containerd on the host that serves CRI on its socket; replacing
// the pod (a new image tag, as a rolling update does) leaves
// the pods that cri-containerd runs untouched and their logs continuous.
//
// Host paths are moved off the stack's (/var/lib/cri-containerd,
// /run/cri-containerd are the stack daemon's). Opt-in: CRI_E2E_DAEMONSET=1,
// after `make image` (it reads _output/image.json). CRI_E2E_DAEMONSET_CRITEST
// runs critest with that focus against the socket, e.g. 'PodSandbox|Container'.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"

	"github.com/cri-containerd/cri-containerd/test/ctrdconfig"
	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

const (
	dsBoot  = "/run/cri-e2e-ds-boot"     // bootstrap containerd: socket, state, shims, runc
	dsBootL = "/var/lib/cri-e2e-ds-boot" // bootstrap containerd root
	dsRoot  = "/var/lib/cri-e2e-ds"      // replaces /var/lib/cri-containerd
	dsState = "/run/cri-e2e-ds"          // replaces /run/cri-containerd
	dsKubel = "/var/lib/cri-e2e-ds-kubelet"
)

func dsPath(p string) string {
	for _, r := range [][2]string{{"/var/lib/cri-containerd", dsRoot}, {"/run/cri-containerd", dsState}, {"/run/containerd", dsBoot}, {"/var/lib/kubelet", dsKubel}} {
		if p == r[0] || strings.HasPrefix(p, r[0]+"/") {
			return r[1] + strings.TrimPrefix(p, r[0])
		}
	}
	return p
}

func TestDaemonSetPodTemplateOnBootstrapRuntime(t *testing.T) {
	if os.Getenv("CRI_E2E_DAEMONSET") != "1" {
		t.Skip("opt-in: CRI_E2E_DAEMONSET=1 (after make image)")
	}
	env := framework.RequireStack(t, "Registry", "CertsD")
	// By default a real kubelet runs the template as a static pod;
	// CRI_E2E_DAEMONSET_DIRECT=1 makes the test run it through CRI calls.
	viaKubelet := os.Getenv("CRI_E2E_DAEMONSET_DIRECT") != "1"
	if viaKubelet {
		framework.KubeletBinary(t)
	}
	repo := framework.RepoRoot(t)
	var img struct {
		Refs   []string
		Pinned string
	}
	b, err := os.ReadFile(filepath.Join(repo, "_output/image.json"))
	if err != nil {
		t.Fatalf("make image first: %v", err)
	}
	if err := json.Unmarshal(b, &img); err != nil || len(img.Refs) < 2 {
		t.Fatalf("_output/image.json: %v %v", img, err)
	}

	// The manifests.
	var ds appsv1.DaemonSet
	var cm corev1.ConfigMap
	for f, obj := range map[string]any{"daemonset.yaml": &ds, "configmap.yaml": &cm} {
		b, err := os.ReadFile(filepath.Join(repo, "deploy/kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(b, obj); err != nil {
			t.Fatal(err)
		}
	}

	// Host directories; the propagated ones are shared bind mounts of their
	// own (this host's / is a private mount; a systemd host's is shared).
	for _, d := range []string{dsBoot, dsBootL, dsRoot, dsState, dsKubel} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{dsRoot, dsState, dsKubel} {
		run(t, "mount", "--bind", d, d)
		run(t, "mount", "--make-rshared", d)
	}
	t.Cleanup(func() {
		for _, d := range []string{dsState, dsRoot, dsKubel} {
			_ = exec.Command("umount", "-R", "-l", d).Run()
		}
		// Runs after the bootstrap containerd stopped (registered before it).
		for _, d := range []string{dsRoot, dsKubel, dsState, dsBoot, dsBootL} {
			if err := os.RemoveAll(d); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})

	// The bootstrap runtime: containerd with its own CRI plugin.
	boot := startBootstrapContainerd(t, env)
	bconn := framework.DialCRI(t, "unix://"+boot)
	brc, bic := runtimeapi.NewRuntimeServiceClient(bconn), runtimeapi.NewImageServiceClient(bconn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	// The config map's config with the test's paths, as a host file.
	cfg := cm.Data["config.toml"]
	for _, r := range [][2]string{
		{"'/run/cri-containerd/cri-containerd.sock'", "'" + dsState + "/cri-containerd.sock'"},
		{"'/run/containerd/containerd.sock'", "'" + dsBoot + "/containerd.sock'"},
		{"'/var/lib/cri-containerd'", "'" + dsRoot + "'"},
		{"'/run/cri-containerd'", "'" + dsState + "'"},
		{"'/etc/containerd/certs.d'", "'" + env.CertsD + "'"},
		{"'registry.k8s.io/pause:3.10'", "'registry.k8s.io/pause:3.10.2'"},
		{"'/etc/cni/net.d'", "'" + env.CNIConfDir + "'"},
		{"'10010'", "'0'"},
		{"'127.0.0.1:10011'", "''"},
	} {
		if !strings.Contains(cfg, r[0]) {
			t.Fatalf("config map config has no %s", r[0])
		}
		cfg = strings.ReplaceAll(cfg, r[0], r[1])
	}
	cfgDir := filepath.Join(dsBootL, "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// The pod, as kubelet makes it from the template.
	tmpl := ds.Spec.Template.Spec
	podCfg := framework.PodConfig("cri-containerd-ds", framework.WithHostNetwork())
	podCfg.Metadata.Namespace = ds.Namespace
	podCfg.Hostname = "" // host UTS namespace
	podCfg.Linux.SecurityContext.Privileged = true
	podCfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_NODE
	if !tmpl.HostPID || !tmpl.HostNetwork {
		t.Fatal("template is not hostPID/hostNetwork")
	}
	podCfg.LogDirectory = filepath.Join(dsBootL, "pods")
	var bootPod string
	if !viaKubelet {
		run1, err := brc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
		if err != nil {
			t.Fatal(err)
		}
		bootPod = run1.GetPodSandboxId()
		t.Cleanup(func() {
			c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, _ = brc.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: bootPod})
			_, _ = brc.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: bootPod})
		})
	}
	c := tmpl.Containers[0]
	volumes := map[string]corev1.Volume{}
	for _, v := range tmpl.Volumes {
		volumes[v.Name] = v
	}
	var mounts []*runtimeapi.Mount
	for _, m := range c.VolumeMounts {
		v := volumes[m.Name]
		host := ""
		switch {
		case v.HostPath != nil:
			host = dsPath(v.HostPath.Path)
			if v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathFileOrCreate {
				f, err := os.OpenFile(host, os.O_CREATE, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				_ = f.Close()
			} else if err := os.MkdirAll(host, 0o755); err != nil {
				t.Fatal(err)
			}
		case v.ConfigMap != nil:
			host = cfgDir
		default:
			t.Fatalf("volume %s: unexpected source", m.Name)
		}
		prop := runtimeapi.MountPropagation_PROPAGATION_PRIVATE
		if m.MountPropagation != nil {
			switch *m.MountPropagation {
			case corev1.MountPropagationBidirectional:
				prop = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
			case corev1.MountPropagationHostToContainer:
				prop = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
			}
		}
		mounts = append(mounts, &runtimeapi.Mount{ContainerPath: dsPath(m.MountPath), HostPath: host, Readonly: m.ReadOnly, Propagation: prop})
	}
	args := dsArgs(append(append([]string{}, c.Command...), c.Args...))
	podLogs := podCfg.LogDirectory
	startDS := func(image string) string {
		t.Helper()
		if _, err := bic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
			t.Fatalf("bootstrap pull %s: %v", image, err)
		}
		cc := &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: uint32(time.Now().Unix() % 1000)},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Command:  args,
			Mounts:   mounts,
			LogPath:  "cri-containerd.log",
			// This host's PID 1 (not an init of a normal node) cannot be
			// entered; the test process is in the host's mount namespace.
			Envs: []*runtimeapi.KeyValue{{Key: "HOST_MOUNT_NS_PID", Value: []byte(strconv.Itoa(os.Getpid()))}},
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Privileged:       true,
				NamespaceOptions: podCfg.Linux.SecurityContext.NamespaceOptions,
			}},
		}
		cr, err := brc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: bootPod, Config: cc, SandboxConfig: podCfg})
		if err != nil {
			t.Fatalf("bootstrap CreateContainer: %v", err)
		}
		if _, err := brc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.GetContainerId()}); err != nil {
			t.Fatalf("bootstrap StartContainer: %v", err)
		}
		return cr.GetContainerId()
	}
	stopDS := func(id string) {
		t.Helper()
		grace := int64(30)
		if tmpl.TerminationGracePeriodSeconds != nil {
			grace = *tmpl.TerminationGracePeriodSeconds
		}
		if _, err := brc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: grace}); err != nil {
			t.Fatal(err)
		}
		if _, err := brc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // the workload logs while no daemon runs
	}
	if viaKubelet {
		// A real kubelet runs the template as a static pod on the
		// bootstrap runtime; a new image in the manifest replaces the pod
		// (the old one stops with its grace period), as a rolling update
		// of the DaemonSet does.
		kl := framework.StartKubelet(t, nil, framework.KubeletOptions{RuntimeEndpoint: "unix://" + boot})
		podLogs = kl.PodLogsDir
		var last string
		startDS = func(image string) string {
			t.Helper()
			kl.AddStaticPod(dsStaticPod(t, &ds, image, cfgDir))
			sp := kl.WaitStaticPod(t, ds.Namespace, ds.Name, 10*time.Minute, "the new "+c.Name+" container running", func(sp framework.StaticPod) bool {
				ctr, ok := sp.Containers[c.Name]
				return ok && ctr.GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING && ctr.GetId() != last
			})
			last = sp.Containers[c.Name].GetId()
			t.Logf("static pod %s: sandbox %s container %s (%s)", kl.MirrorName(ds.Name), sp.Sandbox.GetId(), last, image)
			return last
		}
		stopDS = func(string) {} // the new manifest replaces the pod
	}
	waitHealthy := func(ctrID string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for {
			r, err := brc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctrID, Cmd: dsArgs(c.LivenessProbe.Exec.Command), Timeout: 10})
			if err == nil && r.GetExitCode() == 0 {
				t.Logf("liveness probe: %s", bytes.TrimSpace(r.GetStdout()))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("cri-containerd in the pod is not healthy: %v %s %s; log:\n%s", err, r.GetStdout(), r.GetStderr(), dsLogTail(podLogs))
			}
			time.Sleep(2 * time.Second)
		}
	}
	first := startDS(img.Refs[0])
	waitHealthy(first)

	// CRI through the socket of the daemon the pod brought up.
	endpoint := "unix://" + dsState + "/cri-containerd.sock"
	if focus := os.Getenv("CRI_E2E_DAEMONSET_CRITEST"); focus != "" {
		cmd := exec.Command("critest", "--runtime-endpoint", endpoint, "--image-endpoint", endpoint, "--ginkgo.focus", focus, "--ginkgo.no-color")
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "Ran ") || strings.Contains(l, "Passed") || strings.HasPrefix(l, "[FAIL]") {
				t.Log("critest: " + l)
			}
		}
		if err != nil {
			t.Errorf("critest --ginkgo.focus %q: %v\n%s", focus, err, out)
		}
	}

	// A workload pod whose container logs a numbered line every 50 ms.
	conn := framework.DialCRI(t, endpoint)
	rc, ic := runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	if _, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: framework.BusyboxImageRef}}); err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	wl := framework.PodConfig("ds-workload", framework.WithLogDirectory(logDir))
	wr, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: wl})
	if err != nil {
		t.Fatal(err)
	}
	wlPod := wr.GetPodSandboxId()
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		nc := framework.DialCRI(t, endpoint)
		r := runtimeapi.NewRuntimeServiceClient(nc)
		_, _ = r.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: wlPod})
		_, _ = r.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: wlPod})
	})
	cc := framework.NewContainerConfig("counter", framework.BusyboxImageRef, "sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done")
	cc.LogPath = "counter.log"
	cr, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: wlPod, Config: cc, SandboxConfig: wl})
	if err != nil {
		t.Fatal(err)
	}
	ctrID := cr.GetContainerId()
	if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatal(err)
	}
	st0, err := rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)

	// Replace the DaemonSet's container: SIGTERM (StopContainer with the
	// grace period), remove, start the new image reference.
	stopDS(first)
	second := startDS(img.Refs[1])
	waitHealthy(second)

	conn2 := framework.DialCRI(t, endpoint)
	rc2 := runtimeapi.NewRuntimeServiceClient(conn2)
	st1, err := rc2.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
	if err != nil {
		t.Fatalf("workload container after the replacement: %v", err)
	}
	if st1.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING || st1.GetStatus().GetStartedAt() != st0.GetStatus().GetStartedAt() {
		t.Errorf("workload container after the replacement: %v started %d, want RUNNING started %d", st1.GetStatus().GetState(), st1.GetStatus().GetStartedAt(), st0.GetStatus().GetStartedAt())
	}
	ps, err := rc2.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: wlPod})
	if err != nil || ps.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("workload pod after the replacement: %v %v", ps.GetStatus().GetState(), err)
	}
	time.Sleep(time.Second)
	// The log: every number from 0 up, once, in order.
	lb, err := os.ReadFile(filepath.Join(logDir, "counter.log"))
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	for _, l := range strings.Split(strings.TrimSpace(string(lb)), "\n") {
		f := strings.Fields(l) // time stream tag "line" N
		if len(f) < 5 {
			t.Fatalf("log line %q", l)
		}
		n, err := strconv.Atoi(f[4])
		if err != nil || n != next {
			t.Fatalf("log is not continuous at %q: want line %d", l, next)
		}
		next++
	}
	t.Logf("workload log: %d consecutive lines across the replacement", next)
}

// dsStaticPod is the DaemonSet's pod template as a static pod manifest
// running image, with the test's host paths; the config map volume (static
// pods have no API server to read it from) is the host directory cfgDir.
func dsStaticPod(t *testing.T, ds *appsv1.DaemonSet, image, cfgDir string) *corev1.Pod {
	t.Helper()
	spec := ds.Spec.Template.Spec.DeepCopy()
	// Static pods reference no API objects and are not scheduled.
	spec.ServiceAccountName, spec.DeprecatedServiceAccount = "", ""
	no := false
	spec.AutomountServiceAccountToken = &no
	spec.NodeSelector, spec.Affinity = nil, nil
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		switch {
		case v.HostPath != nil:
			v.HostPath.Path = dsPath(v.HostPath.Path)
		case v.ConfigMap != nil:
			dir := corev1.HostPathDirectory
			v.VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: cfgDir, Type: &dir}}
		default:
			t.Fatalf("volume %s: unexpected source", v.Name)
		}
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		c.Image = image
		c.Command, c.Args = dsArgs(c.Command), dsArgs(c.Args)
		for j := range c.VolumeMounts {
			c.VolumeMounts[j].MountPath = dsPath(c.VolumeMounts[j].MountPath)
		}
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p != nil && p.Exec != nil {
				p.Exec.Command = dsArgs(p.Exec.Command)
			}
		}
		// This host's PID 1 (not an init of a normal node) cannot be
		// entered; the test process is in the host's mount namespace.
		c.Env = append(c.Env, corev1.EnvVar{Name: "HOST_MOUNT_NS_PID", Value: strconv.Itoa(os.Getpid())})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: ds.Name, Namespace: ds.Namespace, Labels: ds.Spec.Template.Labels, Annotations: ds.Spec.Template.Annotations},
		Spec:       *spec,
	}
}

// dsLogTail is the end of the cri-containerd container logs under dir.
func dsLogTail(dir string) string {
	var out string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.HasSuffix(p, ".log") {
			out += "== " + p + "\n" + tailFile(p)
		}
		return nil
	})
	return out
}

// dsArgs moves the root dir of a command line to the test's.
func dsArgs(in []string) []string {
	var out []string
	for _, a := range in {
		out = append(out, strings.ReplaceAll(a, "/var/lib/cri-containerd", dsRoot))
	}
	return out
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func tailFile(p string) string {
	b, _ := os.ReadFile(p)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// startBootstrapContainerd starts a containerd with its built-in CRI
// plugin on the test's paths and returns its socket.
func startBootstrapContainerd(t *testing.T, env framework.StackEnv) string {
	t.Helper()
	sock := dsBoot + "/containerd.sock"
	cfg := ctrdconfig.Config(ctrdconfig.Options{
		Root:          dsBootL + "/containerd",
		State:         dsBoot + "/containerd",
		Address:       sock,
		ShimSocketDir: dsBoot + "/s",
		OptDir:        dsBootL + "/opt",
		Extra: fmt.Sprintf(`  [plugins."io.containerd.cri.v1.images"]
    [plugins."io.containerd.cri.v1.images".registry]
      config_path = %q
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = "registry.k8s.io/pause:3.10.2"
  [plugins."io.containerd.cri.v1.runtime"]
    restrict_oom_score_adj = true
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = [%q]
      conf_dir = %q
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        Root = %q
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
`, env.CertsD, env.CNIBinDir, env.CNIConfDir, dsBoot+"/runc"),
	})
	cfgPath := filepath.Join(dsBootL, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dsBootL, "containerd.log")
	_ = os.Remove(logPath)
	p, err := framework.StartProcess(exec.Command("containerd", "--config", cfgPath), logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(30 * time.Second) })
	if err := p.WaitForSocket(sock, 60*time.Second); err != nil {
		t.Fatalf("bootstrap containerd: %v; log:\n%s", err, tailFile(logPath))
	}
	return sock
}
