package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, content string
		allowMissing  bool
		missing       bool
		wantErr       string
		check         func(t *testing.T, c Config)
	}{
		{name: "values over defaults", content: "socket_path = \"/tmp/s.sock\"\nimage_pull_progress_timeout = \"30s\"\n[runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\n",
			check: func(t *testing.T, c Config) {
				if c.SocketPath != "/tmp/s.sock" || c.ImagePullProgressTimeout.Duration != 30*time.Second {
					t.Errorf("got %+v", c)
				}
				if c.ContainerdNamespace != "k8s.io" {
					t.Errorf("default lost: %q", c.ContainerdNamespace)
				}
				if c.Runtimes["kata"].Type != "io.containerd.kata.v2" || c.Runtimes["runc"].Type == "" {
					t.Errorf("runtimes = %+v", c.Runtimes)
				}
			}},
		{name: "unknown key", content: "socket_path = \"x\"\nbogus = 1\n", wantErr: `unknown key "bogus" (line 2)`},
		{name: "bad duration", content: "image_pull_progress_timeout = \"soon\"\n", wantErr: "invalid duration"},
		{name: "bad toml", content: "socket_path = \n", wantErr: "line 1"},
		{name: "missing allowed", missing: true, allowMissing: true},
		{name: "missing named", missing: true, wantErr: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "absent.toml")
			if !tc.missing {
				p = write(strings.ReplaceAll(tc.name, " ", "_")+".toml", tc.content)
			}
			c := Default()
			err := LoadFile(p, &c, tc.allowMissing)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"empty socket", func(c *Config) { c.SocketPath = "" }, "socket_path"},
		{"bad oom", func(c *Config) { c.RestrictOOMScoreAdj = "maybe" }, "restrict_oom_score_adj"},
		{"bad container log mode", func(c *Config) { c.ContainerLogMode = "kernel" }, "container_log_mode"},
		{"bad driver", func(c *Config) { c.CgroupDriver = "x" }, "cgroup_driver"},
		{"unknown default runtime", func(c *Config) { c.DefaultRuntimeName = "kata" }, "default_runtime_name"},
		{"runtime without type", func(c *Config) { c.Runtimes["x"] = Runtime{} }, "runtimes.x.runtime_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Runtimes = map[string]Runtime{"runc": {Type: "io.containerd.runc.v2"}}
			tc.mutate(&c)
			err := c.Validate()
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	b, err := Encode(Default())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(p, b, 0o644)
	c := Config{}
	if err := LoadFile(p, &c, false); err != nil {
		t.Fatalf("default config does not load back: %v\n%s", err, b)
	}
	if c.StreamIdleTimeout.Duration != 4*time.Hour || c.SandboxImage != Default().SandboxImage {
		t.Fatalf("round trip lost values: %+v", c)
	}
}

func TestNRIValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*NRI)
		ok   bool
	}{
		{"defaults", func(*NRI) {}, true},
		{"disabled without socket", func(n *NRI) { n.Disable = true; n.SocketPath = "" }, true},
		{"no socket", func(n *NRI) { n.SocketPath = "" }, false},
		{"no socket, no connections", func(n *NRI) { n.SocketPath = ""; n.DisableConnections = true }, true},
		{"negative timeout", func(n *NRI) { n.PluginRequestTimeout.Duration = -1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mod(&c.NRI)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
