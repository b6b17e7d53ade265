package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/moby/sys/mountinfo"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cleanup stops and removes every container and pod the daemon lists (the
// daemon is the run's own, so everything in it was made by the run).
func (f *fuzzer) cleanup(ctx context.Context) {
	for attempt := 0; attempt < 3; attempt++ {
		cctx, cancel := f.callCtx(ctx)
		cl, err := f.rc.ListContainers(cctx, &runtimeapi.ListContainersRequest{})
		if err == nil {
			for _, c := range cl.GetContainers() {
				f.ctrs[c.GetId()] = true
				_, _ = f.rc.StopContainer(cctx, &runtimeapi.StopContainerRequest{ContainerId: c.GetId()})
				_, _ = f.rc.RemoveContainer(cctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.GetId()})
			}
		}
		pl, err := f.rc.ListPodSandbox(cctx, &runtimeapi.ListPodSandboxRequest{})
		if err == nil {
			for _, p := range pl.GetItems() {
				f.pods[p.GetId()] = true
				_, _ = f.rc.StopPodSandbox(cctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.GetId()})
				_, _ = f.rc.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()})
			}
		}
		cancel()
		if len(cl.GetContainers()) == 0 && len(pl.GetItems()) == 0 {
			return
		}
	}
}

// checkLeaks records what is left after cleanup: objects the daemon still
// lists, netns and other mounts and per-object directories under its
// state/root dirs, containerd containers, active snapshots and leases in
// its namespace, host-local IP files and iptables rules naming a pod of
// the run.
func (f *fuzzer) checkLeaks(ctx context.Context) {
	add := func(what string, items []string) {
		if len(items) == 0 {
			return
		}
		if len(items) > 5 {
			items = append(items[:5], fmt.Sprintf("... (%d in all)", len(items)))
		}
		f.sum.Leaks = append(f.sum.Leaks, fmt.Sprintf("%s: %s", what, strings.Join(items, ", ")))
	}
	cctx, cancel := f.callCtx(ctx)
	defer cancel()
	if pl, err := f.rc.ListPodSandbox(cctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
		var ids []string
		for _, p := range pl.GetItems() {
			ids = append(ids, fmt.Sprintf("%s (%s)", p.GetId(), p.GetState()))
		}
		add("pods listed", ids)
	}
	if cl, err := f.rc.ListContainers(cctx, &runtimeapi.ListContainersRequest{}); err == nil {
		var ids []string
		for _, c := range cl.GetContainers() {
			ids = append(ids, fmt.Sprintf("%s (%s)", c.GetId(), c.GetState()))
		}
		add("containers listed", ids)
	}
	for _, dir := range []string{f.cfg.StateDir, f.cfg.RootDir} {
		if dir == "" {
			continue
		}
		ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		if err != nil {
			add("reading mountinfo", []string{err.Error()})
		}
		var left []string
		for _, m := range ms {
			if m.Mountpoint != dir {
				left = append(left, m.Mountpoint+" ("+m.FSType+")")
			}
		}
		add("mounts under "+dir, left)
		for _, sub := range []string{"netns", "sandboxes", "containers"} {
			es, _ := os.ReadDir(filepath.Join(dir, sub))
			var names []string
			for _, e := range es {
				names = append(names, e.Name())
			}
			add("entries in "+filepath.Join(dir, sub), names)
		}
	}
	if f.cfg.ContainerdAddress != "" && f.cfg.ContainerdNamespace != "" {
		f.containerdLeaks(add)
	}
	var ids []string
	for id := range f.pods {
		ids = append(ids, id)
	}
	if f.cfg.IPAMDir != "" {
		add("host-local IP allocations of the run's pods", ipamFilesFor(f.cfg.IPAMDir, ids))
	}
	add("iptables rules naming the run's pods", iptablesRulesFor(ids))
}

func (f *fuzzer) containerdLeaks(add func(string, []string)) {
	cli, err := containerd.New(f.cfg.ContainerdAddress, containerd.WithDefaultNamespace(f.cfg.ContainerdNamespace))
	if err != nil {
		add("containerd", []string{err.Error()})
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), f.cfg.ContainerdNamespace), time.Minute)
	defer cancel()
	cs, err := cli.Containers(ctx)
	if err != nil {
		add("listing containerd containers", []string{err.Error()})
	}
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID())
	}
	add("containerd containers", ids)
	var active []string
	_ = cli.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		if i.Kind != snapshots.KindCommitted {
			active = append(active, i.Name)
		}
		return nil
	})
	add("active/view snapshots", active)
	ls, err := cli.LeasesService().List(ctx)
	if err == nil {
		var names []string
		for _, l := range ls {
			for id := range f.pods {
				if strings.Contains(l.ID, id) {
					names = append(names, l.ID)
				}
			}
		}
		add("leases naming the run's pods", names)
	}
}

// ipamFilesFor lists host-local allocation files whose container ID is one of ids.
func ipamFilesFor(dir string, ids []string) []string {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []string
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || !e.Type().IsRegular() {
			return nil
		}
		fh, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer fh.Close()
		sc := bufio.NewScanner(fh)
		if sc.Scan() && want[strings.TrimSpace(sc.Text())] {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// iptablesRulesFor lists iptables rules mentioning one of ids (portmap and
// bridge tag their rules with the container ID).
func iptablesRulesFor(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	b, err := exec.Command("iptables-save").Output()
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, id := range ids {
			if strings.Contains(l, id) {
				out = append(out, strings.TrimSpace(l))
				break
			}
		}
	}
	return out
}
