// Package kubernetes_test checks the DaemonSet manifests of deploy/kubernetes.
package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/cri-containerd/cri-containerd/config"
)

// objects decodes every document of every manifest strictly (an unknown or
// misspelt field is an error) into its k8s.io/api type.
func objects(t *testing.T) map[string]any {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	objs := map[string]any{}
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			var meta struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var obj any
			switch meta.APIVersion + "/" + meta.Kind {
			case "v1/Namespace":
				obj = &corev1.Namespace{}
			case "v1/ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "v1/ConfigMap":
				obj = &corev1.ConfigMap{}
			case "apps/v1/DaemonSet":
				obj = &appsv1.DaemonSet{}
			default:
				t.Fatalf("%s: unexpected %s %s", f, meta.APIVersion, meta.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s: %s: %v", f, meta.Kind, err)
			}
			if _, dup := objs[meta.Kind]; dup {
				t.Fatalf("%s: a second %s", f, meta.Kind)
			}
			objs[meta.Kind] = obj
		}
	}
	return objs
}

// TestManifests decodes the manifests with the k8s.io/api types and checks
// what the DaemonSet needs: host namespaces, privilege, the host mounts
// (Bidirectional for the state dir), the health probe, requests, the
// rolling update of one node at a time, and a config the daemon accepts.
func TestManifests(t *testing.T) {
	objs := objects(t)
	ns, _ := objs["Namespace"].(*corev1.Namespace)
	sa, _ := objs["ServiceAccount"].(*corev1.ServiceAccount)
	cm, _ := objs["ConfigMap"].(*corev1.ConfigMap)
	ds, _ := objs["DaemonSet"].(*appsv1.DaemonSet)
	if ns == nil || sa == nil || cm == nil || ds == nil {
		t.Fatalf("want a Namespace, ServiceAccount, ConfigMap and DaemonSet, got %v", objs)
	}
	for _, m := range []struct{ kind, ns string }{{"ServiceAccount", sa.Namespace}, {"ConfigMap", cm.Namespace}, {"DaemonSet", ds.Namespace}} {
		if m.ns != ns.Name {
			t.Errorf("%s is in namespace %q, not %q", m.kind, m.ns, ns.Name)
		}
	}

	// The config map's config is one the daemon loads and validates.
	toml, ok := cm.Data["config.toml"]
	if !ok {
		t.Fatal("config map has no config.toml")
	}
	cfgPath := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfgPath, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	if err := config.LoadFile(cfgPath, &cfg, false); err != nil {
		t.Fatalf("config.toml: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config.toml: %v", err)
	}

	spec := ds.Spec
	if spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || spec.UpdateStrategy.RollingUpdate == nil ||
		spec.UpdateStrategy.RollingUpdate.MaxUnavailable == nil || spec.UpdateStrategy.RollingUpdate.MaxUnavailable.IntValue() != 1 {
		t.Errorf("update strategy = %+v, want RollingUpdate with maxUnavailable 1", spec.UpdateStrategy)
	}
	for k, v := range spec.Selector.MatchLabels {
		if spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not select the template (labels %v)", k, v, spec.Template.Labels)
		}
	}
	pod := spec.Template.Spec
	if !pod.HostPID || !pod.HostNetwork {
		t.Errorf("hostPID %v hostNetwork %v, want both", pod.HostPID, pod.HostNetwork)
	}
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("service account %q, want %q", pod.ServiceAccountName, sa.Name)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the container is not privileged")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("resource requests = %v", c.Resources.Requests)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds < int64(cfg.ShutdownTimeout.Seconds())+5 {
		t.Errorf("terminationGracePeriodSeconds = %v, shorter than shutdown_timeout %s + 5s", pod.TerminationGracePeriodSeconds, cfg.ShutdownTimeout.Duration)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.Exec == nil || !strings.Contains(strings.Join(p.Exec.Command, " "), " health") {
			t.Errorf("%s probe = %+v, want an exec of `cri-containerd health`", name, p)
			continue
		}
		if p.TimeoutSeconds <= 5 {
			t.Errorf("%s probe timeout %ds does not exceed health --timeout 5s", name, p.TimeoutSeconds)
		}
	}

	// Host mounts: mount path -> host path, propagation.
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	type mnt struct {
		host string
		prop corev1.MountPropagationMode
	}
	mounts := map[string]mnt{}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Errorf("mount %s: no volume %q", m.MountPath, m.Name)
			continue
		}
		var host string
		if v.HostPath != nil {
			host = v.HostPath.Path
		}
		prop := corev1.MountPropagationNone
		if m.MountPropagation != nil {
			prop = *m.MountPropagation
		}
		mounts[m.MountPath] = mnt{host, prop}
	}
	for path, want := range map[string]mnt{
		filepath.Dir(cfg.ContainerdEndpoint): {filepath.Dir(cfg.ContainerdEndpoint), corev1.MountPropagationNone},
		cfg.RootDir:                          {cfg.RootDir, corev1.MountPropagationBidirectional},
		cfg.StateDir:                         {cfg.StateDir, corev1.MountPropagationBidirectional},
		"/var/log/pods":                      {"/var/log/pods", corev1.MountPropagationNone},
		cfg.NetworkBinDir:                    {cfg.NetworkBinDir, corev1.MountPropagationNone},
		cfg.NetworkConfDir:                   {cfg.NetworkConfDir, corev1.MountPropagationNone},
		"/sys/fs/cgroup":                     {"/sys/fs/cgroup", corev1.MountPropagationNone},
		"/var/lib/kubelet":                   {"/var/lib/kubelet", corev1.MountPropagationHostToContainer},
	} {
		got, ok := mounts[path]
		if !ok {
			t.Errorf("no mount at %s", path)
			continue
		}
		if got != want {
			t.Errorf("mount %s = %+v, want %+v", path, got, want)
		}
	}
	if !strings.HasPrefix(cfg.SocketPath, cfg.StateDir+"/") {
		t.Errorf("socket %s is not under the mounted state dir %s", cfg.SocketPath, cfg.StateDir)
	}
	if cfg.ContainerdNamespace == "k8s.io" {
		t.Error("containerd_namespace k8s.io would share objects with the bootstrap runtime's CRI plugin")
	}
}
