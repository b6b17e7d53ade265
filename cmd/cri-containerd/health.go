package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/config"
)

const healthUsage = `Usage: cri-containerd [daemon flags] health [--endpoint unix:///path] [--timeout D]

Asks the daemon over its CRI socket (the configured socket_path, or
--endpoint) for Version and Status, as kubelet does, and exits 0 when both
answer and the runtime is ready (RuntimeReady); NetworkReady is reported
but does not fail the check (the CNI config may come later). For liveness
probes and scripts. Exit status: 0 healthy, 1 not.
`

// runHealth runs the health subcommand; args are those after "health".
func runHealth(cfg config.Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cri-containerd health", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	endpoint := fs.String("endpoint", "", "CRI endpoint (default: unix://<socket_path>).")
	timeout := fs.Duration("timeout", 5*time.Second, "Bound on the whole check.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(out, healthUsage)
			return nil
		}
		return fmt.Errorf("health: %w\n%s", err, healthUsage)
	}
	ep := *endpoint
	if ep == "" {
		path := cfg.SocketPath
		if path == socketActivated { // systemd's socket: the packaged unit's path
			path = config.Default().SocketPath
		}
		ep = "unix://" + path
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	msg, err := checkHealth(ctx, ep)
	if err != nil {
		return fmt.Errorf("unhealthy: %s: %w", ep, err)
	}
	fmt.Fprintln(out, msg)
	return nil
}

// checkHealth makes the Version and Status calls; it returns a one-line
// summary, or why the runtime is not healthy.
func checkHealth(ctx context.Context, endpoint string) (string, error) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	rc := runtimeapi.NewRuntimeServiceClient(conn)
	v, err := rc.Version(ctx, &runtimeapi.VersionRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return "", fmt.Errorf("Version: %w", err)
	}
	st, err := rc.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return "", fmt.Errorf("Status: %w", err)
	}
	conds := []string{}
	runtimeReady := false
	for _, c := range st.GetStatus().GetConditions() {
		s := fmt.Sprintf("%s=%t", c.GetType(), c.GetStatus())
		if !c.GetStatus() && c.GetReason() != "" {
			s += fmt.Sprintf(" (%s: %s)", c.GetReason(), c.GetMessage())
		}
		conds = append(conds, s)
		if c.GetType() == runtimeapi.RuntimeReady {
			runtimeReady = c.GetStatus()
		}
	}
	summary := fmt.Sprintf("%s %s: %s", v.GetRuntimeName(), v.GetRuntimeVersion(), strings.Join(conds, ", "))
	if !runtimeReady {
		return "", errors.New(summary)
	}
	return summary, nil
}
