// Package framework holds helpers shared by the cri-containerd e2e tests:
// the stack environment contract (hack/test.sh), private daemon instances,
// CRI clients and throw-away registries.
package framework

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// StackEnv is the environment contract hack/test.sh exports for the e2e
// tests (see the comment at the top of hack/test.sh; defaults in deploy/lib.sh).
type StackEnv struct {
	CRIEndpoint         string // CRI_ENDPOINT: the stack's running daemon
	ContainerdAddress   string // CONTAINERD_ADDRESS
	ContainerdNamespace string // CONTAINERD_NAMESPACE
	Registry            string // REGISTRY: local registry holding the test images (plain http)
	CertsD              string // CERTS_D: hosts.toml tree mapping public registries to Registry
	CNIConfDir          string // CNI_CONF_DIR
	CNIBinDir           string // CNI_BIN_DIR
	DaemonBin           string // CRI_CONTAINERD_BIN
	SandboxImage        string // SANDBOX_IMAGE
	ImagesManifest      string // IMAGES_MANIFEST
	RuncBinary          string // RUNC_BINARY: OCI runtime of the runc handler ("" = runc on the PATH)
}

// LoadStackEnv reads the environment contract.
func LoadStackEnv() StackEnv {
	return StackEnv{
		CRIEndpoint:         os.Getenv("CRI_ENDPOINT"),
		ContainerdAddress:   os.Getenv("CONTAINERD_ADDRESS"),
		ContainerdNamespace: os.Getenv("CONTAINERD_NAMESPACE"),
		Registry:            os.Getenv("REGISTRY"),
		CertsD:              os.Getenv("CERTS_D"),
		CNIConfDir:          os.Getenv("CNI_CONF_DIR"),
		CNIBinDir:           os.Getenv("CNI_BIN_DIR"),
		DaemonBin:           os.Getenv("CRI_CONTAINERD_BIN"),
		SandboxImage:        os.Getenv("SANDBOX_IMAGE"),
		ImagesManifest:      os.Getenv("IMAGES_MANIFEST"),
		RuncBinary:          os.Getenv("RUNC_BINARY"),
	}
}

// RequireStack skips the test unless the stack variables it needs are set
// (and the test runs as root on Linux, which driving containerd needs).
// need names fields of StackEnv: "ContainerdAddress", "Registry", "CertsD",
// "CRIEndpoint", "SandboxImage", "ImagesManifest".
func RequireStack(t testing.TB, need ...string) StackEnv {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("e2e: needs root on Linux")
	}
	env := LoadStackEnv()
	vals := map[string][2]string{
		"CRIEndpoint":       {"CRI_ENDPOINT", env.CRIEndpoint},
		"ContainerdAddress": {"CONTAINERD_ADDRESS", env.ContainerdAddress},
		"Registry":          {"REGISTRY", env.Registry},
		"CertsD":            {"CERTS_D", env.CertsD},
		"SandboxImage":      {"SANDBOX_IMAGE", env.SandboxImage},
		"ImagesManifest":    {"IMAGES_MANIFEST", env.ImagesManifest},
	}
	for _, n := range need {
		v, ok := vals[n]
		if !ok {
			t.Fatalf("RequireStack: unknown field %q", n)
		}
		if v[1] == "" {
			t.Skipf("e2e stack not configured: %s is not set (run hack/test.sh e2e, or export the variables from deploy/lib.sh stack_env)", v[0])
		}
	}
	if env.ContainerdAddress != "" {
		if _, err := os.Stat(env.ContainerdAddress); err != nil {
			t.Skipf("e2e stack not running: containerd socket %s: %v", env.ContainerdAddress, err)
		}
	}
	if env.ContainerdNamespace == "" {
		env.ContainerdNamespace = "k8s.io"
	}
	return env
}

// RepoRoot finds the module root (the directory holding go.mod) above the
// test's working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}
