package spec

import (
	"context"
	"fmt"
	"slices"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"
)

// CDI (Container Device Interface): a container asks for devices by
// qualified name ("vendor.com/class=name") in its CDI_devices field or in
// "cdi.k8s.io/*" annotations; the spec files in the CDI spec directories say
// what each device adds to the OCI spec (device nodes, mounts, env, hooks).

// GeneratorOpt configures a Generator.
type GeneratorOpt func(*Generator)

// WithCDI resolves CDI devices against cache (nil: CDI disabled, a
// container asking for a device is refused).
func WithCDI(cache *cdi.Cache) GeneratorOpt {
	return func(g *Generator) { g.cdi = cache }
}

// cdiDevices lists the CDI devices a container asks for, in order and
// without duplicates: its CDI_devices field, then its cdi.k8s.io annotations.
func cdiDevices(cfg *runtimeapi.ContainerConfig) ([]string, error) {
	var out []string
	for _, d := range cfg.GetCDIDevices() {
		if d.GetName() == "" {
			return nil, invalidArgument("config.CDI_devices: a device without a name")
		}
		out = append(out, d.GetName())
	}
	_, fromAnnotations, err := cdi.ParseAnnotations(cfg.GetAnnotations())
	if err != nil {
		return nil, invalidArgument("config.annotations: CDI device annotations: %v", err)
	}
	for _, d := range fromAnnotations {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// cdiOpts checks that every device the container asks for is known (before
// anything is created) and returns the option that injects them; it must
// run after every other option, since injection adds device nodes, mounts,
// env and hooks that later options could reset.
func (g *Generator) cdiOpts(cfg *runtimeapi.ContainerConfig) ([]oci.SpecOpts, error) {
	devices, err := cdiDevices(cfg)
	if err != nil || len(devices) == 0 {
		return nil, err
	}
	if g.cdi == nil {
		return nil, invalidArgument("CDI devices %v requested but CDI is disabled (enable_cdi)", devices)
	}
	for _, d := range devices {
		if g.cdi.GetDevice(d) == nil {
			return nil, invalidArgument("unknown CDI device %q (spec dirs %v)", d, g.cdi.GetSpecDirectories())
		}
	}
	cache := g.cdi
	return []oci.SpecOpts{func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if unresolved, err := cache.InjectDevices(s, devices...); err != nil {
			if len(unresolved) > 0 {
				return invalidArgument("unknown CDI devices %v: %v", unresolved, err)
			}
			return fmt.Errorf("injecting CDI devices %v: %w", devices, err)
		}
		return nil
	}}, nil
}

// InjectCDIDevices injects CDI devices by qualified name into s (the CDI
// devices of an NRI adjustment); with CDI disabled it refuses them.
func (g *Generator) InjectCDIDevices(s *oci.Spec, devices []string) error {
	if len(devices) == 0 {
		return nil
	}
	if g.cdi == nil {
		return invalidArgument("CDI devices %v requested but CDI is disabled (enable_cdi)", devices)
	}
	if unresolved, err := g.cdi.InjectDevices(s, devices...); err != nil {
		if len(unresolved) > 0 {
			return invalidArgument("unknown CDI devices %v: %v", unresolved, err)
		}
		return fmt.Errorf("injecting CDI devices %v: %w", devices, err)
	}
	return nil
}
