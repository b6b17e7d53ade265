package ctrdconfig

import (
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func TestConfigIsValidTOMLWithPrivatePaths(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"without CRI", Options{Root: "/r", State: "/s", Address: "/s/c.sock", ShimSocketDir: "/s/shim", OptDir: "/r/opt", DisableCRI: true, Extra: "[debug]\n  level = \"info\""}},
		{"with CRI settings", Options{Root: "/r", State: "/s", Address: "/s/c.sock", DebugAddress: "/s/debug.sock", ShimSocketDir: "/s/shim", OptDir: "/r/opt",
			Extra: "  [plugins.\"io.containerd.cri.v1.runtime\"]\n    restrict_oom_score_adj = true\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg struct {
				Version         int
				Root, State     string
				DisabledPlugins []string `toml:"disabled_plugins"`
				Plugins         map[string]map[string]any
				Debug           map[string]any
			}
			if err := toml.Unmarshal([]byte(Config(tc.o)), &cfg); err != nil {
				t.Fatalf("%v\n%s", err, Config(tc.o))
			}
			if cfg.Version != 4 || cfg.Root != "/r" || cfg.State != "/s" {
				t.Fatalf("top level %+v", cfg)
			}
			p := cfg.Plugins
			if p["io.containerd.server.v1.grpc"]["address"] != "/s/c.sock" || p["io.containerd.server.v1.ttrpc"]["address"] != "/s/c.sock.ttrpc" ||
				p["io.containerd.server.v1.debug"]["address"] != tc.o.DebugAddress || p["io.containerd.server.v1.metrics"]["address"] != "" ||
				p["io.containerd.shim.v1.manager"]["socket_dir"] != "/s/shim" || p["io.containerd.internal.v1.opt"]["path"] != "/r/opt" ||
				p["io.containerd.nri.v1.nri"]["disable"] != true {
				t.Fatalf("plugins %v", p)
			}
			if tc.o.DisableCRI != (len(cfg.DisabledPlugins) == 4) {
				t.Fatalf("disabled plugins %v", cfg.DisabledPlugins)
			}
			if tc.o.DisableCRI && cfg.Debug["level"] != "info" {
				t.Fatalf("extra table lost: %v", cfg.Debug)
			}
			if !tc.o.DisableCRI && p["io.containerd.cri.v1.runtime"]["restrict_oom_score_adj"] != true {
				t.Fatalf("extra plugin settings lost: %v", p)
			}
		})
	}
}
