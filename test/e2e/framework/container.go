package framework

// Helpers for the container, streaming and restart e2e tests: container
// config builders, CRI container calls that fail the test, CRI log parsing,
// killing a daemon like a crash would, and leftover checks on a daemon's
// containerd namespace and directories.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// BusyboxImageRef is the general-purpose container image of the test image
// set (a glibc busybox: sh, nc, httpd, ...). Pulled by its upstream name, it
// needs a daemon started with RegistryConfigPath = StackEnv.CertsD.
const BusyboxImageRef = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

// CallTimeout bounds every single CRI call made by the helpers.
const CallTimeout = 2 * time.Minute

func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), CallTimeout)
}

// PullImageOrFail pulls ref through the daemon and returns the image ID.
func PullImageOrFail(t testing.TB, d *Daemon, ref string) string {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	resp, err := d.ImageClient().PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("PullImage(%q): %v", ref, err)
	}
	return resp.GetImageRef()
}

// NewContainerConfig returns the config kubelet would send for a container
// named name running cmd (as command, no args) from image, logging to
// "<name>_0.log" in the pod's log directory.
func NewContainerConfig(name, image string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: image},
		Command:  cmd,
		LogPath:  name + "_0.log",
		Labels:   map[string]string{"io.kubernetes.container.name": name},
		Annotations: map[string]string{
			"io.kubernetes.container.restartCount": "0",
		},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{},
			// kubelet copies the pod's namespace options; the PID namespace is
			// the container's own unless the pod shares one.
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_POD,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
}

// CreateContainerOrFail creates a container in a pod and returns its ID.
func CreateContainerOrFail(t testing.TB, rc runtimeapi.RuntimeServiceClient, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	resp, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("CreateContainer(%s): %v", cfg.GetMetadata().GetName(), err)
	}
	return resp.GetContainerId()
}

// StartContainerOrFail starts a created container.
func StartContainerOrFail(t testing.TB, rc runtimeapi.RuntimeServiceClient, id string) {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer(%s): %v", id, err)
	}
}

// RunContainerOrFail creates and starts a container and returns its ID.
func RunContainerOrFail(t testing.TB, rc runtimeapi.RuntimeServiceClient, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id := CreateContainerOrFail(t, rc, podID, podCfg, cfg)
	StartContainerOrFail(t, rc, id)
	return id
}

// ContainerStatusOrFail returns a container's status.
func ContainerStatusOrFail(t testing.TB, rc runtimeapi.RuntimeServiceClient, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	resp, err := rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus(%s): %v", id, err)
	}
	return resp.GetStatus()
}

// WaitForContainerState polls ContainerStatus until the container is in
// state, and returns that status.
func WaitForContainerState(t testing.TB, rc runtimeapi.RuntimeServiceClient, id string, state runtimeapi.ContainerState, timeout time.Duration) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := ContainerStatusOrFail(t, rc, id)
		if st.GetState() == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: state %s after %s, want %s (reason %q, exit %d)", id, st.GetState(), timeout, state, st.GetReason(), st.GetExitCode())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ContainerInfo returns the decoded "info" entry of a verbose ContainerStatus.
func ContainerInfo(t testing.TB, rc runtimeapi.RuntimeServiceClient, id string) map[string]any {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	resp, err := rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatalf("ContainerStatus(%s, verbose): %v", id, err)
	}
	raw, ok := resp.GetInfo()["info"]
	if !ok {
		t.Fatalf("ContainerStatus(%s, verbose): no \"info\" entry in %v", id, resp.GetInfo())
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(raw), &info); err != nil {
		t.Fatalf("ContainerStatus(%s, verbose): decoding info: %v\n%s", id, err, raw)
	}
	return info
}

// ContainerCgroupsPath returns runtimeSpec.linux.cgroupsPath from the verbose
// status (cgroupfs driver: a path relative to each controller's mount).
func ContainerCgroupsPath(t testing.TB, rc runtimeapi.RuntimeServiceClient, id string) string {
	t.Helper()
	info := ContainerInfo(t, rc, id)
	spec, _ := info["runtimeSpec"].(map[string]any)
	linux, _ := spec["linux"].(map[string]any)
	p, _ := linux["cgroupsPath"].(string)
	if p == "" {
		t.Fatalf("container %s: no runtimeSpec.linux.cgroupsPath in the verbose status", id)
	}
	return p
}

// CgroupV1File returns the path of a file of a cgroup v1 controller for a
// cgroupfs cgroups path, e.g. ("memory", "/ns/id", "memory.limit_in_bytes").
func CgroupV1File(controller, cgroupsPath, file string) string {
	return filepath.Join("/sys/fs/cgroup", controller, cgroupsPath, file)
}

// ExecSyncOrFail runs cmd in a container with ExecSync.
func ExecSyncOrFail(t testing.TB, rc runtimeapi.RuntimeServiceClient, id string, timeout time.Duration, cmd ...string) (stdout, stderr string, code int32) {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	resp, err := rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: int64(timeout / time.Second)})
	if err != nil {
		t.Fatalf("ExecSync(%s, %q): %v", id, cmd, err)
	}
	return string(resp.GetStdout()), string(resp.GetStderr()), resp.GetExitCode()
}

// StopContainerOrFail stops a container with a grace period in seconds.
func StopContainerOrFail(t testing.TB, rc runtimeapi.RuntimeServiceClient, id string, timeout int64) {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	if _, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: timeout}); err != nil {
		t.Fatalf("StopContainer(%s, %ds): %v", id, timeout, err)
	}
}

// RemoveContainerOrFail removes a container.
func RemoveContainerOrFail(t testing.TB, rc runtimeapi.RuntimeServiceClient, id string) {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	if _, err := rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer(%s): %v", id, err)
	}
}

// ListContainersOrFail lists containers matching filter (nil: all).
func ListContainersOrFail(t testing.TB, rc runtimeapi.RuntimeServiceClient, filter *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	resp, err := rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: filter})
	if err != nil {
		t.Fatalf("ListContainers(%v): %v", filter, err)
	}
	return resp.GetContainers()
}

// ContainerIDs returns the IDs of containers, sorted.
func ContainerIDs(cs []*runtimeapi.Container) []string {
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		ids = append(ids, c.GetId())
	}
	sort.Strings(ids)
	return ids
}

// ---------------------------------------------------------------------------
// CRI container logs.

// CRILogRecord is one record of a CRI container log file:
// "<RFC3339Nano> <stdout|stderr> <P|F> <content>".
type CRILogRecord struct {
	Time    time.Time
	Stream  string
	Tag     string
	Content string
}

// ParseCRILog parses a whole CRI log; every line must be a valid record.
func ParseCRILog(data []byte) ([]CRILogRecord, error) {
	var out []CRILogRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 64*1024*1024)
	n := 0
	for sc.Scan() {
		n++
		r, err := ParseCRILogLine(sc.Text())
		if err != nil {
			return out, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// ParseCRILogLine parses one CRI log line (without its newline).
func ParseCRILogLine(line string) (CRILogRecord, error) {
	parts := strings.SplitN(line, " ", 4)
	if len(parts) < 3 {
		return CRILogRecord{}, fmt.Errorf("malformed CRI log line %q", line)
	}
	ts, err := time.Parse(time.RFC3339Nano, parts[0])
	if err != nil {
		return CRILogRecord{}, fmt.Errorf("CRI log line %q: timestamp: %v", line, err)
	}
	r := CRILogRecord{Time: ts, Stream: parts[1], Tag: parts[2]}
	if r.Stream != "stdout" && r.Stream != "stderr" {
		return r, fmt.Errorf("CRI log line %q: stream %q", line, r.Stream)
	}
	if r.Tag != "P" && r.Tag != "F" {
		return r, fmt.Errorf("CRI log line %q: tag %q", line, r.Tag)
	}
	if len(parts) == 4 {
		r.Content = parts[3]
	} else if !strings.HasSuffix(line, " ") {
		// "<ts> <stream> <tag>" without the separator before an empty content.
		return r, fmt.Errorf("CRI log line %q: no content separator", line)
	}
	return r, nil
}

// ReadCRILog reads and parses a CRI log file; a missing file is empty.
func ReadCRILog(t testing.TB, path string) []CRILogRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatalf("reading log %s: %v", path, err)
	}
	// A record is written with one write: only a torn last line (no newline
	// yet) is possible while the container runs; ignore it.
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	recs, err := ParseCRILog(b)
	if err != nil {
		t.Fatalf("log %s: %v", path, err)
	}
	return recs
}

// CRILogLines reassembles the lines of one stream ("" = both) from records:
// partial records are joined up to the next full one.
func CRILogLines(recs []CRILogRecord, stream string) []string {
	var out []string
	pending := map[string]*strings.Builder{}
	for _, r := range recs {
		if stream != "" && r.Stream != stream {
			continue
		}
		b := pending[r.Stream]
		if b == nil {
			b = &strings.Builder{}
			pending[r.Stream] = b
		}
		b.WriteString(r.Content)
		if r.Tag == "F" {
			out = append(out, b.String())
			b.Reset()
		}
	}
	return out
}

// WaitForCRILog polls a log file until cond holds for its records.
func WaitForCRILog(t testing.TB, path string, timeout time.Duration, what string, cond func([]CRILogRecord) bool) []CRILogRecord {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs := ReadCRILog(t, path)
		if cond(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %s: %s not seen within %s; %d records, last: %v", path, what, timeout, len(recs), lastRecords(recs, 5))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastRecords(recs []CRILogRecord, n int) []CRILogRecord {
	if len(recs) > n {
		return recs[len(recs)-n:]
	}
	return recs
}

// SequenceCommand is a shell loop printing "<prefix> N" (N = 1, 2, ...) every
// interval, for gap checks on logs.
func SequenceCommand(prefix string, interval string) []string {
	return []string{"sh", "-c", fmt.Sprintf("i=0; while true; do i=$((i+1)); echo %s $i; sleep %s; done", prefix, interval)}
}

// SequenceNumbers extracts N from the lines "<prefix> N".
func SequenceNumbers(lines []string, prefix string) []int {
	re := regexp.MustCompile("^" + regexp.QuoteMeta(prefix) + ` (\d+)$`)
	var out []int
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			out = append(out, n)
		}
	}
	return out
}

// CheckSequence reports an error unless nums is exactly 1, 2, ..., len(nums).
func CheckSequence(nums []int) error {
	for i, n := range nums {
		if n != i+1 {
			lo, hi := max(0, i-3), min(len(nums), i+4)
			return fmt.Errorf("sequence broken at index %d: got %d, want %d (around: %v; %d numbers)", i, n, i+1, nums[lo:hi], len(nums))
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Daemon crash and leftovers.

var hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// WaitNoLeaks polls until nothing of a daemon whose pods and containers
// were all removed is left (removal may finish asynchronously in
// containerd), and fails the test otherwise. ids are the removed sandbox and
// container IDs. A leak is what SandboxLeaks reports for the whole namespace
// (containerd containers, active/view snapshots, mounts under the daemon's
// directories, IP allocations, paths and portmap rules naming an ID), a
// containerd task, or any directory named like an ID (64 hex digits) up to
// three levels under the daemon's root and state directories.
func WaitNoLeaks(t testing.TB, d *Daemon, ids []string, timeout time.Duration) {
	t.Helper()
	ipamDir := IPAMDataDir(t, d.Env.CNIConfDir)
	deadline := time.Now().Add(timeout)
	for {
		leaks := SandboxLeaks(t, d, ipamDir, ids, true)
		leaks = append(leaks, namespaceTasks(t, d)...)
		for _, base := range []string{d.RootDir(), d.StateDir()} {
			leaks = append(leaks, idDirs(base, 3)...)
		}
		if len(leaks) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("leftovers after removing everything:\n  %s", strings.Join(leaks, "\n  "))
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func namespaceTasks(t testing.TB, d *Daemon) []string {
	t.Helper()
	cli := CtrClient(t, d.Env.ContainerdAddress, d.Opts.Namespace)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), d.Opts.Namespace), 30*time.Second)
	defer cancel()
	resp, err := cli.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		t.Fatalf("listing containerd tasks: %v", err)
	}
	var out []string
	for _, tk := range resp.GetTasks() {
		out = append(out, "containerd task "+tk.GetID())
	}
	return out
}

func idDirs(dir string, depth int) []string {
	if depth == 0 {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if hexID.MatchString(e.Name()) {
			out = append(out, "per-ID path "+p)
			continue
		}
		if e.IsDir() {
			out = append(out, idDirs(p, depth-1)...)
		}
	}
	return out
}

// WriteDaemonConfig writes a TOML config file for a private daemon and
// returns the ExtraArgs that make the daemon use it (the last --config wins
// over the empty one StartDaemon passes).
func WriteDaemonConfig(t testing.TB, toml string) []string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "cri-containerd.toml")
	if !strings.Contains(toml, "[runtimes") {
		// As StartDaemon's own file: runc's state root stays in the test's dirs.
		toml += fmt.Sprintf("\n[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\nroot = %q\n", filepath.Join(dir, "runc"))
	}
	if err := os.WriteFile(p, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"--config", p}
}

// IsRunning reports whether the daemon process is up (not stopped or killed).
func (d *Daemon) IsRunning() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.conn == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}
