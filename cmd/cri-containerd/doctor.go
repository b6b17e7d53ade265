package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/doctor"
)

// Exit codes of `cri-containerd doctor`.
const (
	doctorClean   = 0 // nothing orphaned (after --repair: nothing left)
	doctorOrphans = 1 // orphans found (after --repair: some could not be removed)
	doctorFailed  = 2 // the audit could not be made
)

const doctorUsage = `Usage: cri-containerd [daemon flags] doctor [--repair] [--json] [--grace D] [--cni-cache-dir DIR] [daemon flags]

Audits the node against the daemon's configuration (the same --config file
and flags as the daemon: root/state dirs, containerd endpoint and namespace,
CNI config dir): netns mounts, per-ID directories and FIFOs, host-local IP
allocations, CNI cache entries and iptables chains, containerd tasks,
snapshots and leases, and shim processes that belong to no containerd
container record, and says why each is orphaned. It connects to containerd
directly; the daemon may be up or down.

Exit status: 0 clean, 1 orphans found (with --repair: left after the repair),
2 the audit could not be made.
`

// runDoctor runs the doctor subcommand. pre are the arguments before
// "doctor", args those after it; daemon flags may be on either side.
// It exits the process with the doctor's exit code.
func runDoctor(pre, args []string) error {
	dfs := flag.NewFlagSet("cri-containerd doctor", flag.ContinueOnError)
	dfs.SetOutput(io.Discard)
	repair := dfs.Bool("repair", false, "Remove what is orphaned: CNI DEL with the stored ADD arguments first, then netns, IP files, chains, dirs, FIFOs, tasks, shims, snapshots, leases.")
	asJSON := dfs.Bool("json", false, "Print the report as JSON.")
	grace := dfs.Duration("grace", time.Minute, "Leave alone objects younger than this (a RunPodSandbox may be making them).")
	cacheDir := dfs.String("cni-cache-dir", doctor.DefaultCNICacheDir, "libcni's cache directory (results/ holds the ADD arguments).")
	timeout := dfs.Duration("timeout", 5*time.Minute, "Bound on the whole audit and repair.")

	daemonArgs, doctorArgs, err := splitDoctorArgs(dfs, args)
	if err == nil {
		err = dfs.Parse(doctorArgs)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(os.Stderr, doctorUsage)
			dfs.SetOutput(os.Stderr)
			dfs.PrintDefaults()
			return nil
		}
		fmt.Fprintf(os.Stderr, "cri-containerd doctor: %v\n", err)
		os.Exit(doctorFailed)
	}
	if dfs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "cri-containerd doctor: unexpected arguments %q\n", dfs.Args())
		os.Exit(doctorFailed)
	}
	cfg, rest, err := parseConfig(append(append([]string{}, pre...), daemonArgs...), os.Stderr)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected arguments %q", rest)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-containerd doctor: %v\n", err)
		os.Exit(doctorFailed)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	cli, err := containerd.New(cfg.ContainerdEndpoint, containerd.WithDefaultNamespace(cfg.ContainerdNamespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-containerd doctor: connecting to containerd at %s: %v\n", cfg.ContainerdEndpoint, err)
		os.Exit(doctorFailed)
	}
	defer cli.Close()

	snapshotters := []string{cfg.Snapshotter}
	for _, rt := range cfg.Runtimes {
		snapshotters = append(snapshotters, rt.Snapshotter)
	}
	binDirs := filepath.SplitList(cfg.NetworkBinDir)
	d := doctor.New(doctor.Options{
		RootDir:      cfg.RootDir,
		StateDir:     cfg.StateDir,
		Namespace:    cfg.ContainerdNamespace,
		Endpoint:     cfg.ContainerdEndpoint,
		Snapshotters: snapshotters,
		CNIConfDir:   cfg.NetworkConfDir,
		CNICacheDir:  *cacheDir,
		Grace:        *grace,
	}, doctor.ContainerdClient{Client: cli, Namespace: cfg.ContainerdNamespace}, doctor.LinuxHost{}, doctor.ExecIPTables{},
		doctor.LibCNI{BinDirs: binDirs, CacheDir: *cacheDir})

	rep, err := d.Audit(ctx)
	if err == nil && *repair {
		err = d.Repair(ctx, rep)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-containerd doctor: %v\n", err)
		os.Exit(doctorFailed)
	}
	if *asJSON {
		err = rep.WriteJSON(os.Stdout)
	} else {
		err = rep.WriteTable(os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-containerd doctor: %v\n", err)
		os.Exit(doctorFailed)
	}
	klog.Flush()
	if rep.Orphans() > 0 {
		os.Exit(doctorOrphans)
	}
	os.Exit(doctorClean)
	return nil
}

// splitDoctorArgs separates the doctor's own flags from the daemon's flags
// (accepted after "doctor" too, e.g. `doctor --config X --root-dir Y`).
func splitDoctorArgs(dfs *flag.FlagSet, args []string) (daemonArgs, doctorArgs []string, err error) {
	probeCfg := config.Default()
	var probePath string
	probe := newFlagSet(io.Discard, &probeCfg, &probePath)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			doctorArgs = append(doctorArgs, args[i:]...)
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "h" || name == "help" {
			return nil, nil, flag.ErrHelp
		}
		fs := dfs
		f := dfs.Lookup(name)
		if f == nil {
			fs, f = probe, probe.Lookup(name)
		}
		if f == nil {
			return nil, nil, fmt.Errorf("unknown flag %s", a)
		}
		take := []string{a}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && bf.IsBoolFlag()) {
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("flag %s needs a value", a)
			}
			i++
			take = append(take, args[i])
		}
		if fs == dfs {
			doctorArgs = append(doctorArgs, take...)
		} else {
			daemonArgs = append(daemonArgs, take...)
		}
	}
	return daemonArgs, doctorArgs, nil
}
