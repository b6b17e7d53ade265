package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestPrecedence pins flag > file > default.
func TestPrecedence(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte("socket_path = \"/file.sock\"\nsnapshotter = \"native\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, rest, err := parseConfig([]string{"--config", p, "--socket-path", "/flag.sock", "version"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SocketPath != "/flag.sock" {
		t.Errorf("socket_path = %q, want the flag's", cfg.SocketPath)
	}
	if cfg.Snapshotter != "native" {
		t.Errorf("snapshotter = %q, want the file's", cfg.Snapshotter)
	}
	if cfg.ContainerdNamespace != "k8s.io" {
		t.Errorf("namespace = %q, want the default", cfg.ContainerdNamespace)
	}
	if len(rest) != 1 || rest[0] != "version" {
		t.Errorf("rest = %v", rest)
	}
}

func TestParseErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--config", "/does/not/exist.toml"},
		{"--image-pull-progress-timeout", "soon"},
	} {
		if _, _, err := parseConfig(args, io.Discard); err == nil {
			t.Errorf("parseConfig(%v) succeeded", args)
		}
	}
	// A missing default config file is fine.
	if _, _, err := parseConfig(nil, io.Discard); err != nil {
		t.Errorf("no args: %v", err)
	}
}

// TestNRIFlags: the NRI flags override the file's [nri] table.
func TestNRIFlags(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte("[nri]\nplugin_path = \"/file/plugins\"\nsocket_path = \"/file.sock\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := parseConfig([]string{"--config", p, "--nri-socket", "/flag/nri.sock", "--nri-plugin-request-timeout", "5s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NRI.SocketPath != "/flag/nri.sock" || cfg.NRI.PluginPath != "/file/plugins" ||
		cfg.NRI.PluginRequestTimeout.Duration.String() != "5s" || cfg.NRI.Disable || cfg.NRI.PluginConfigPath != "/etc/nri/conf.d" {
		t.Fatalf("nri = %+v", cfg.NRI)
	}
	cfg, _, err = parseConfig([]string{"--disable-nri"}, io.Discard)
	if err != nil || !cfg.NRI.Disable {
		t.Fatalf("--disable-nri: %+v %v", cfg.NRI, err)
	}
}
