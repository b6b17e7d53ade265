package main

import (
	"os/exec"
	"strings"
	"testing"
)

// allowedDeps are the packages outside the standard library that the writer
// may link: the shim starts it on every container start, so it links the
// standard library and these only (a daemon package pulls in the CRI API,
// gRPC and klog: four times the size and twice the start-up cost).
var allowedDeps = []string{
	"github.com/cri-containerd/cri-containerd/cmd/cri-containerd-log-writer",
	"github.com/cri-containerd/cri-containerd/crilog",
	"github.com/cri-containerd/cri-containerd/shimlog/logwriter",
}

func allowedDep(p string) bool {
	if strings.HasPrefix(p, "golang.org/x/sys/") {
		return true
	}
	for _, a := range allowedDeps {
		if p == a {
			return true
		}
	}
	return false
}

func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var bad []string
	for _, p := range strings.Fields(string(out)) {
		if !allowedDep(p) {
			bad = append(bad, p)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("the log writer links %d packages outside the standard library, golang.org/x/sys and %v:\n%s",
			len(bad), allowedDeps, strings.Join(bad, "\n"))
	}
}
