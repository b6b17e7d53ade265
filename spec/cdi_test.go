package spec

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"
)

// testCDICache is a CDI cache over one spec file: device
// cri-test.example/dev=null (a device node from /dev/null and an env var)
// and a spec-wide mount.
func testCDICache(t *testing.T) (*cdi.Cache, string) {
	t.Helper()
	dir, src := t.TempDir(), t.TempDir()
	spec := `{"cdiVersion":"0.6.0","kind":"cri-test.example/dev",
"devices":[{"name":"null","containerEdits":{"deviceNodes":[{"path":"/dev/cdi-null","hostPath":"/dev/null"}],"env":["CDI_TEST=yes"]}}],
"containerEdits":{"mounts":[{"hostPath":"` + src + `","containerPath":"/cdi-mount","options":["ro","bind"]}]}}`
	if err := os.WriteFile(filepath.Join(dir, "test.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(dir), cdi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	return cache, src
}

func TestCDIDevices(t *testing.T) {
	cache, src := testCDICache(t)
	g := &Generator{cdi: cache}
	for _, tc := range []struct {
		name    string
		cfg     *runtimeapi.ContainerConfig
		none    bool
		wantErr error
	}{
		{name: "none", cfg: &runtimeapi.ContainerConfig{}, none: true},
		{name: "CDI_devices field", cfg: &runtimeapi.ContainerConfig{CDIDevices: []*runtimeapi.CDIDevice{{Name: "cri-test.example/dev=null"}}}},
		{name: "annotation", cfg: &runtimeapi.ContainerConfig{Annotations: map[string]string{"cdi.k8s.io/test": "cri-test.example/dev=null"}}},
		{name: "both, same device once", cfg: &runtimeapi.ContainerConfig{
			CDIDevices:  []*runtimeapi.CDIDevice{{Name: "cri-test.example/dev=null"}},
			Annotations: map[string]string{"cdi.k8s.io/test": "cri-test.example/dev=null"}}},
		{name: "unknown device", cfg: &runtimeapi.ContainerConfig{CDIDevices: []*runtimeapi.CDIDevice{{Name: "cri-test.example/dev=gpu0"}}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "unqualified name", cfg: &runtimeapi.ContainerConfig{Annotations: map[string]string{"cdi.k8s.io/test": "gpu0"}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "empty name", cfg: &runtimeapi.ContainerConfig{CDIDevices: []*runtimeapi.CDIDevice{{}}}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := g.cdiOpts(tc.cfg)
			if tc.wantErr != nil {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.none {
				if len(opts) != 0 {
					t.Fatalf("%d options for no device", len(opts))
				}
				return
			}
			s := &runtimespec.Spec{Process: &runtimespec.Process{}, Linux: &runtimespec.Linux{}}
			for _, o := range opts {
				if err := o(context.Background(), nil, nil, s); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Contains(s.Process.Env, "CDI_TEST=yes") {
				t.Errorf("env = %v", s.Process.Env)
			}
			if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/cdi-null" || s.Linux.Devices[0].Major != 1 || s.Linux.Devices[0].Minor != 3 {
				t.Errorf("devices = %+v", s.Linux.Devices)
			}
			if len(s.Mounts) != 1 || s.Mounts[0].Source != src || s.Mounts[0].Destination != "/cdi-mount" {
				t.Errorf("mounts = %+v", s.Mounts)
			}
		})
	}
	// CDI disabled: a container asking for a device is refused.
	if _, err := (&Generator{}).cdiOpts(&runtimeapi.ContainerConfig{CDIDevices: []*runtimeapi.CDIDevice{{Name: "cri-test.example/dev=null"}}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("CDI disabled: err = %v", err)
	}
}
