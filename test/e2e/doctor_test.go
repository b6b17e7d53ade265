package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// doctorNet is a private CNI network (own name, bridge, subnet, host-local
// dataDir) so that the doctor only ever sees this test's objects.
type doctorNet struct {
	name, bridge, subnet string
	confDir, dataDir     string
}

func newDoctorNet(t *testing.T) *doctorNet {
	t.Helper()
	out, err := exec.Command("ip", "-4", "route", "show").Output()
	if err != nil {
		t.Skipf("ip route: %v", err)
	}
	var routes []*net.IPNet
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if _, n, err := net.ParseCIDR(f[0]); err == nil {
			routes = append(routes, n)
		}
	}
	suffix := framework.RandomSuffix()[:4]
	n := &doctorNet{name: "cri-doctor-" + suffix, bridge: "cridoc" + suffix, confDir: t.TempDir(), dataDir: t.TempDir()}
	for i := 0; i < 100 && n.subnet == ""; i++ {
		cand := fmt.Sprintf("10.%d.%d.0/24", 236+rand.IntN(4), rand.IntN(256))
		_, c, _ := net.ParseCIDR(cand)
		free := true
		for _, r := range routes {
			if r.Contains(c.IP) || c.Contains(r.IP) {
				free = false
			}
		}
		if free {
			n.subnet = cand
		}
	}
	if n.subnet == "" {
		t.Skip("no free /24 for a private CNI network")
	}
	base := strings.TrimSuffix(n.subnet, "0/24")
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q, "gateway": "%s1"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}`, n.name, n.bridge, n.subnet, base, n.dataDir)
	if err := os.WriteFile(filepath.Join(n.confDir, "10-doctor.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", n.bridge).Run() })
	return n
}

// doctorRun is one `cri-containerd doctor` run.
type doctorRun struct {
	code   int
	stdout string
	report struct {
		Namespace string
		Owned     struct{ Sandboxes, Containers, Tasks int }
		Findings  []struct {
			Kind, ID, Path, Reason, Result string
			Repairable, Young              bool
		}
		Warnings []string
		Orphans  int
	}
}

// runDoctor runs the doctor against d's configuration, with the daemon's
// flags after the subcommand (the way the chaos run calls it).
func runDoctor(t *testing.T, d *framework.Daemon, extra ...string) doctorRun {
	t.Helper()
	args := []string{"doctor",
		"--config", filepath.Join(d.Dir, "config.toml"),
		"--containerd-endpoint", d.Env.ContainerdAddress,
		"--containerd-namespace", d.Opts.Namespace,
		"--root-dir", d.RootDir(), "--state-dir", d.StateDir(),
		"--network-conf-dir", d.Env.CNIConfDir, "--network-bin-dir", d.Env.CNIBinDir,
		"--json",
	}
	args = append(args, extra...)
	cmd := exec.Command(d.Bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var r doctorRun
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("running doctor: %v", err)
	}
	r.stdout = stdout.String()
	if err := json.Unmarshal(stdout.Bytes(), &r.report); err != nil {
		t.Fatalf("doctor %v: exit %d, output not JSON (%v):\n%s\nstderr:\n%s", extra, r.code, err, stdout.String(), stderr.String())
	}
	t.Logf("doctor %s: exit %d, owned %+v, %d findings, %d orphans, warnings %v", strings.Join(extra, " "), r.code, r.report.Owned, len(r.report.Findings), r.report.Orphans, r.report.Warnings)
	for _, f := range r.report.Findings {
		t.Logf("  %-9s %.12s %s: %s [%s]", f.Kind, f.ID, f.Path, f.Reason, f.Result)
	}
	return r
}

// TestDoctorFindsAndRepairsOrphans: doctor reports a healthy node clean
// (exit 0); after a kill -9 and manufactured orphans (a sandbox whose
// containerd record is gone, with its netns, IP, CNI cache, portmap and masq
// chains and dirs; a stray container dir with FIFOs; a stray IP
// file; a stray image-volume lease) it finds each with the right reason
// (exit 1), --repair removes them (CNI DEL first) and exits 0, a second
// --repair is a no-op, and the restarted daemon still has its healthy pod.
func TestDoctorFindsAndRepairsOrphans(t *testing.T) {
	var pn *doctorNet
	s := startSandboxDaemon(t, func(env *framework.StackEnv) {
		pn = newDoctorNet(t)
		env.CNIConfDir = pn.confDir
	})
	d, rc := s.d, s.rc()
	ipamDir := filepath.Join(pn.dataDir, pn.name)

	// A healthy pod with a running container, and a pod to orphan (with a
	// port mapping, so that portmap makes its chains).
	framework.PullImageOrFail(t, d, framework.BusyboxImageRef)
	healthyCfg := framework.PodConfig("doctor-healthy", framework.WithLogDirectory(t.TempDir()))
	healthy := runPod(t, rc, healthyCfg, "")
	ctr := framework.RunContainerOrFail(t, rc, healthy, healthyCfg, framework.NewContainerConfig("sleeper", framework.BusyboxImageRef, "sleep", "3600"))
	hostPort := framework.FreeTCPPort(t, 19000, 20000)
	victim := runPod(t, rc, framework.PodConfig("doctor-victim", framework.WithPortMapping(int32(hostPort), 80)), "")
	t.Cleanup(func() { framework.RemoveIptablesRulesFor(t, victim) })

	r := runDoctor(t, d)
	if r.code != 0 || len(r.report.Findings) != 0 {
		t.Fatalf("healthy node: exit %d, findings %v", r.code, r.report.Findings)
	}
	if r.report.Owned.Sandboxes != 2 || r.report.Owned.Containers != 1 || r.report.Owned.Tasks != 3 {
		t.Errorf("owned %+v, want 2 sandboxes, 1 container, 3 tasks", r.report.Owned)
	}

	// kill -9, then make orphans the way crashes and bugs do.
	framework.KillDaemon(t, d)
	cli, _ := framework.ContainerdClient(t, d.Env.ContainerdAddress, d.Opts.Namespace)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), d.Opts.Namespace), time.Minute)
	defer cancel()
	vc, err := cli.LoadContainer(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	if task, err := vc.Task(ctx, nil); err == nil {
		_ = task.Kill(ctx, syscall.SIGKILL)
		ch, _ := task.Wait(ctx)
		if ch != nil {
			<-ch
		}
		if _, err := task.Delete(ctx); err != nil {
			t.Fatalf("deleting the victim's pause task: %v", err)
		}
	}
	// The record goes (containerd's GC then drops its rootfs snapshot, which
	// nothing references any more; until then the doctor reports it).
	if err := cli.ContainerService().Delete(ctx, victim); err != nil {
		t.Fatalf("deleting the victim's containerd record: %v", err)
	}
	stray := strings.Repeat("d0c7", 16)
	strayIO := filepath.Join(d.StateDir(), "containers", stray, "io")
	if err := os.MkdirAll(strayIO, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(strayIO, stray+"-stdout"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(d.RootDir(), "containers", stray), 0o700); err != nil {
		t.Fatal(err)
	}
	strayIP := filepath.Join(ipamDir, strings.TrimSuffix(pn.subnet, "0/24")+"250")
	strayPod := strings.Repeat("0dd5", 16)
	if err := os.WriteFile(strayIP, []byte(strayPod+"\r\neth0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.LeasesService().Create(ctx, leases.WithID("cri-containerd-imagevolumes-"+strayPod)); err != nil {
		t.Fatal(err)
	}

	// On containerd 2.x the victim pod has a containerd sandbox record.
	_, recErr := cli.SandboxStore().Get(ctx, victim)
	victimRecord := recErr == nil

	// The audit: everything orphaned is found, and nothing of the healthy pod.
	r = runDoctor(t, d, "--grace", "0s")
	if r.code != 1 {
		t.Errorf("audit with orphans: exit %d, want 1", r.code)
	}
	got := map[string]int{}
	for _, f := range r.report.Findings {
		if f.ID == healthy || f.ID == ctr {
			t.Errorf("finding for the healthy pod/container: %+v", f)
		}
		if !f.Repairable || f.Young {
			t.Errorf("finding not repairable or young: %+v", f)
		}
		got[fmt.Sprintf("%s %.12s", f.Kind, f.ID)]++
	}
	want := map[string]int{
		"netns " + victim[:12]:     1,
		"dir " + victim[:12]:       2, // <state>/sandboxes/<id>, <root>/sandboxes/<id>
		"ipam " + victim[:12]:      1,
		"cni-cache " + victim[:12]: 1, // its network (lo is brought up in-process: no loopback plugin result)
		"iptables " + victim[:12]:  2, // bridge masq chain, portmap DNAT chain
		"dir " + stray[:12]:        2,
		"fifo " + stray[:12]:       1,
		"ipam " + strayPod[:12]:    1,
		"lease " + strayPod[:12]:   1,
	}
	if victimRecord {
		// containerd 2.x: the victim pod's containerd sandbox record.
		want["sandbox-record "+victim[:12]] = 1
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("findings %q: %d, want %d", k, got[k], n)
		}
	}
	// containerd's GC drops the victim's rootfs snapshot some time after
	// its record: the doctor may still see it.
	delete(got, "snapshot "+victim[:12])
	for k, n := range got {
		if want[k] == 0 {
			t.Errorf("unexpected findings %q: %d", k, n)
		}
	}
	for _, f := range r.report.Findings {
		var want string
		switch f.Kind {
		case "netns", "dir", "snapshot", "lease", "fifo":
			want = "no containerd container"
		case "ipam", "iptables":
			want = "no containerd container of this ID in any namespace"
		case "cni-cache":
			want = "ADD arguments"
		}
		if !strings.Contains(f.Reason, want) {
			t.Errorf("%s %s: reason %q does not say %q", f.Kind, f.Path, f.Reason, want)
		}
	}

	// The repair, then a second one that has nothing to do.
	r = runDoctor(t, d, "--grace", "0s", "--repair")
	if r.code != 0 || r.report.Orphans != 0 {
		t.Errorf("repair: exit %d, %d orphans left", r.code, r.report.Orphans)
	}
	for _, f := range r.report.Findings {
		if f.Result != "removed" && f.Result != "gone" {
			t.Errorf("repair of %s %s: %q", f.Kind, f.Path, f.Result)
		}
	}
	r = runDoctor(t, d, "--grace", "0s", "--repair")
	if r.code != 0 || len(r.report.Findings) != 0 {
		t.Errorf("second repair: exit %d, findings %v", r.code, r.report.Findings)
	}
	gone := []string{victim, stray, strayPod}
	for _, m := range framework.NetNSMounts(t, d.StateDir()) {
		if !strings.Contains(m, healthy) {
			t.Errorf("after repair: netns mount %s", m)
		}
	}
	for _, l := range slices.Concat(framework.IPAMFilesFor(t, ipamDir, gone...), framework.PathsNaming(t, gone, d.RootDir(), d.StateDir()),
		framework.IptablesRulesFor(t, victim), framework.ContainerdContainers(t, d.Env.ContainerdAddress, d.Opts.Namespace)) {
		if !strings.Contains(l, healthy) && !strings.Contains(l, ctr) {
			t.Errorf("after repair: left %s", l)
		}
	}
	if ls := framework.Leases(t, d.Env.ContainerdAddress, d.Opts.Namespace); slices.Contains(ls, "cri-containerd-imagevolumes-"+strayPod) {
		t.Errorf("lease left: %v", ls)
	}

	// The healthy pod is intact: the restarted daemon recovers it, and the
	// doctor, run while the daemon runs, finds the node clean.
	d.Restart()
	framework.WaitPodState(t, d.RuntimeClient(), healthy, runtimeapi.PodSandboxState_SANDBOX_READY, 30*time.Second)
	if st := framework.ContainerStatusOrFail(t, d.RuntimeClient(), ctr); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("healthy container: %v", st.GetState())
	}
	r = runDoctor(t, d, "--repair")
	if r.code != 0 || len(r.report.Findings) != 0 {
		t.Errorf("with the daemon running: exit %d, findings %v", r.code, r.report.Findings)
	}
	stopPod(t, d.RuntimeClient(), healthy)
	removePod(t, d.RuntimeClient(), healthy)
	r = runDoctor(t, d, "--grace", "0s")
	if r.code != 0 || r.report.Owned.Sandboxes != 0 || r.report.Owned.Containers != 0 {
		t.Errorf("after removing every pod: exit %d, owned %+v", r.code, r.report.Owned)
	}
	s.assertNoLeaks(t, victim, healthy)
}

// TestDoctorRepairWhileDaemonRuns: `doctor --repair` run over and over while
// the daemon creates and removes pods and containers and runs execs never
// counts anything of theirs as orphaned and never breaks them.
func TestDoctorRepairWhileDaemonRuns(t *testing.T) {
	var pn *doctorNet
	s := startSandboxDaemon(t, func(env *framework.StackEnv) {
		pn = newDoctorNet(t)
		env.CNIConfDir = pn.confDir
	})
	d, rc := s.d, s.rc()
	framework.PullImageOrFail(t, d, framework.BusyboxImageRef)

	done := make(chan struct{})
	var ids []string
	go func() {
		defer close(done)
		for i := 0; i < 4; i++ {
			cfg := framework.PodConfig(fmt.Sprintf("doctor-churn-%d", i), framework.WithLogDirectory(t.TempDir()))
			resp, err := rc.RunPodSandbox(framework.RPCContext(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if err != nil {
				t.Errorf("RunPodSandbox: %v", err)
				return
			}
			id := resp.GetPodSandboxId()
			ids = append(ids, id)
			cc, err := rc.CreateContainer(framework.RPCContext(t), &runtimeapi.CreateContainerRequest{PodSandboxId: id, SandboxConfig: cfg,
				Config: framework.NewContainerConfig("c", framework.BusyboxImageRef, "sleep", "3600")})
			if err != nil {
				t.Errorf("CreateContainer: %v", err)
				return
			}
			if _, err := rc.StartContainer(framework.RPCContext(t), &runtimeapi.StartContainerRequest{ContainerId: cc.GetContainerId()}); err != nil {
				t.Errorf("StartContainer: %v", err)
				return
			}
			for j := 0; j < 3; j++ {
				r, err := rc.ExecSync(framework.RPCContext(t), &runtimeapi.ExecSyncRequest{ContainerId: cc.GetContainerId(), Cmd: []string{"echo", "hi"}, Timeout: 10})
				if err != nil || r.GetExitCode() != 0 || strings.TrimSpace(string(r.GetStdout())) != "hi" {
					t.Errorf("ExecSync: %v %v %q", err, r.GetExitCode(), r.GetStdout())
				}
			}
			if i%2 == 0 {
				if _, err := rc.StopPodSandbox(framework.RPCContext(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
					t.Errorf("StopPodSandbox: %v", err)
				}
				if _, err := rc.RemovePodSandbox(framework.RPCContext(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
					t.Errorf("RemovePodSandbox: %v", err)
				}
			}
		}
	}()
	runs := 0
	for finished := false; !finished; runs++ {
		select {
		case <-done:
			finished = true
		default:
		}
		r := runDoctor(t, d, "--repair")
		if r.code != 0 || r.report.Orphans != 0 {
			t.Errorf("doctor --repair during churn: exit %d, %d orphans", r.code, r.report.Orphans)
		}
		for _, f := range r.report.Findings {
			if f.Result != "" {
				t.Errorf("doctor --repair acted on %s %s: %s", f.Kind, f.Path, f.Result)
			}
		}
	}
	t.Logf("%d doctor runs during the churn", runs)
	// The pods kept are intact and the node is clean.
	for i, id := range ids {
		if i%2 == 1 {
			framework.WaitPodState(t, rc, id, runtimeapi.PodSandboxState_SANDBOX_READY, 10*time.Second)
		}
	}
	r := runDoctor(t, d, "--grace", "0s")
	if r.code != 0 || r.report.Owned.Sandboxes != 2 || r.report.Owned.Containers != 2 {
		t.Errorf("after the churn: exit %d, owned %+v, findings %v", r.code, r.report.Owned, r.report.Findings)
	}
	framework.StopAndRemovePods(t, rc)
	s.assertNoLeaks(t, ids...)
}

// TestDoctorKeepsUndecodableRecord: a sandbox record whose metadata cannot
// be decoded is reported (exit 1) but never removed, and neither are the
// files named after it; once the record is gone they are orphans and
// --repair removes them.
func TestDoctorKeepsUndecodableRecord(t *testing.T) {
	var pn *doctorNet
	s := startSandboxDaemon(t, func(env *framework.StackEnv) {
		pn = newDoctorNet(t)
		env.CNIConfDir = pn.confDir
	})
	d := s.d
	cli, _ := framework.ContainerdClient(t, d.Env.ContainerdAddress, d.Opts.Namespace)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), d.Opts.Namespace), time.Minute)
	defer cancel()
	id := strings.Repeat("bad0", 16)
	_, err := cli.ContainerService().Create(ctx, containers.Container{
		ID:         id,
		Labels:     map[string]string{"io.cri-containerd.kind": "sandbox"},
		Runtime:    containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		Extensions: map[string]typeurl.Any{"io.cri-containerd.sandbox.metadata": &anypb.Any{TypeUrl: "github.com/cri-containerd/cri-containerd/sandbox/Metadata", Value: []byte("{not json")}},
	})
	if err != nil {
		t.Fatalf("creating a record with broken metadata: %v", err)
	}
	t.Cleanup(func() { _ = cli.ContainerService().Delete(context.WithoutCancel(ctx), id) })
	dirs := []string{filepath.Join(d.RootDir(), "sandboxes", id), filepath.Join(d.StateDir(), "sandboxes", id)}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	for _, extra := range [][]string{{"--grace", "0s"}, {"--grace", "0s", "--repair"}} {
		r := runDoctor(t, d, extra...)
		if r.code != 1 || len(r.report.Findings) != 1 {
			t.Fatalf("doctor %v: exit %d, findings %v; want exit 1 and the record only", extra, r.code, r.report.Findings)
		}
		f := r.report.Findings[0]
		if f.Kind != "container" || f.ID != id || f.Repairable || !strings.Contains(f.Reason, "cannot be decoded") || f.Result != "" {
			t.Errorf("finding %+v, want a report-only container finding for the undecodable record", f)
		}
	}
	for _, dir := range dirs {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("%s of the undecodable record was touched: %v", dir, err)
		}
	}

	if err := cli.ContainerService().Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	r := runDoctor(t, d, "--grace", "0s", "--repair")
	if r.code != 0 || len(r.report.Findings) != 2 {
		t.Errorf("without the record: exit %d, findings %v; want its 2 dirs repaired", r.code, r.report.Findings)
	}
	for _, dir := range dirs {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s left after repair", dir)
		}
	}
}

// TestDoctorRemovesTaskWithoutRecord: a running container whose containerd
// record was deleted behind the daemon's back (its task and shim still run)
// is found as a task without a record plus its dirs and FIFOs; --repair
// kills and deletes the task and removes the files, and the pod's sandbox,
// still owned, is left alone.
func TestDoctorRemovesTaskWithoutRecord(t *testing.T) {
	var pn *doctorNet
	s := startSandboxDaemon(t, func(env *framework.StackEnv) {
		pn = newDoctorNet(t)
		env.CNIConfDir = pn.confDir
	})
	d, rc := s.d, s.rc()
	framework.PullImageOrFail(t, d, framework.BusyboxImageRef)
	cfg := framework.PodConfig("doctor-task", framework.WithLogDirectory(t.TempDir()))
	pod := runPod(t, rc, cfg, "")
	ctr := framework.RunContainerOrFail(t, rc, pod, cfg, framework.NewContainerConfig("sleeper", framework.BusyboxImageRef, "sleep", "3600"))
	st := framework.ContainerStatusOrFail(t, rc, ctr)
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container state %v", st.GetState())
	}

	framework.KillDaemon(t, d)
	cli, _ := framework.ContainerdClient(t, d.Env.ContainerdAddress, d.Opts.Namespace)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), d.Opts.Namespace), time.Minute)
	defer cancel()
	if err := cli.ContainerService().Delete(ctx, ctr); err != nil {
		t.Fatalf("deleting the container's record: %v", err)
	}
	tasks := func() []string {
		var ids []string
		ts, err := cli.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range ts.GetTasks() {
			ids = append(ids, tk.GetID())
		}
		return ids
	}
	if !slices.Contains(tasks(), ctr) {
		t.Skipf("containerd dropped the task with its record (tasks %v): nothing to audit", tasks())
	}

	r := runDoctor(t, d, "--grace", "0s")
	if r.code != 1 {
		t.Errorf("audit: exit %d, want 1", r.code)
	}
	got := map[string]int{}
	for _, f := range r.report.Findings {
		if f.ID == pod {
			t.Errorf("finding for the owned sandbox: %+v", f)
		}
		got[f.Kind]++
	}
	// FIFOs exist only for a container whose output the daemon reads
	// (container_log_mode daemon); the shim's log writer needs none.
	if got["task"] != 1 || got["dir"] != 2 || got["fifo"] == 1 {
		t.Errorf("findings by kind %v, want 1 task, 2 dirs and the FIFOs if any", got)
	}
	r = runDoctor(t, d, "--grace", "0s", "--repair")
	if r.code != 0 {
		t.Errorf("repair: exit %d", r.code)
	}
	if slices.Contains(tasks(), ctr) {
		t.Errorf("task %s still there after the repair", ctr[:12])
	}
	if r = runDoctor(t, d, "--grace", "0s", "--repair"); r.code != 0 || len(r.report.Findings) != 0 {
		t.Errorf("second repair: exit %d, findings %v", r.code, r.report.Findings)
	}
	d.Restart()
	framework.WaitPodState(t, d.RuntimeClient(), pod, runtimeapi.PodSandboxState_SANDBOX_READY, 30*time.Second)
	stopPod(t, d.RuntimeClient(), pod)
	removePod(t, d.RuntimeClient(), pod)
	s.assertNoLeaks(t, pod)
}
