package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Strike kinds.
const (
	StrikeDaemonKill  = "daemon kill -9"
	StrikeCtrdKill    = "containerd kill -9"
	StrikeCNIAddFail  = "CNI ADD fails"
	StrikeCNIAddAfter = "CNI ADD fails after setup"
	StrikeCNIAddHang  = "CNI ADD hangs"
	StrikeCNIDelFail  = "CNI DEL fails"
	StrikeCNIDelHang  = "CNI DEL hangs"
	StrikeLogFull     = "log filesystem full"
	StrikeSlowPull    = "slow registry"
)

var cniKinds = []string{StrikeCNIAddFail, StrikeCNIDelFail, StrikeCNIAddHang, StrikeCNIAddAfter, StrikeCNIDelHang}

// Schedule returns the strikes of a campaign in random order.
func Schedule(o Options, rng *rand.Rand) []string {
	var s []string
	add := func(k string, n int) {
		for i := 0; i < n; i++ {
			s = append(s, k)
		}
	}
	add(StrikeDaemonKill, o.DaemonKills)
	add(StrikeCtrdKill, o.ContainerdRestarts)
	for i := 0; i < o.CNIFaults; i++ {
		s = append(s, cniKinds[i%len(cniKinds)])
	}
	add(StrikeLogFull, o.LogFull)
	add(StrikeSlowPull, o.SlowPulls)
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}

// Injector strikes and checks.
type Injector struct {
	d   *Driver
	env *Env
	rep *Report
}

// errFatal: the campaign cannot go on (the daemon does not come back).
var errFatal = errors.New("fatal")

// Strike makes one strike, waits for recovery and checks the invariants.
func (in *Injector) Strike(ctx context.Context, kind string) error {
	d, env := in.d, in.env
	before := d.SnapshotLogs()
	nViol := len(d.Violations())
	logf("strike: %s", kind)
	ok := true
	switch kind {
	case StrikeDaemonKill:
		d.model.MarkDaemonDown()
		env.Daemon.Kill9()
		time.Sleep(time.Duration(200+rand.IntN(2800)) * time.Millisecond)
		took, err := env.StartDaemon(ctx)
		if err != nil {
			in.rep.Strike(kind, false)
			return fmt.Errorf("%w: daemon restart after kill -9: %v", errFatal, err)
		}
		logf("  daemon back in %s", took.Round(time.Millisecond))
	case StrikeCtrdKill:
		env.Containerd.Kill9()
		time.Sleep(time.Duration(500+rand.IntN(2500)) * time.Millisecond)
		if err := env.StartContainerd(ctx); err != nil {
			in.rep.Strike(kind, false)
			return fmt.Errorf("%w: containerd restart: %v", errFatal, err)
		}
		time.Sleep(2 * time.Second)
		if env.Daemon.Exited() {
			in.rep.Notes = append(in.rep.Notes, "cri-containerd exited when containerd was killed; restarted")
			if _, err := env.StartDaemon(ctx); err != nil {
				in.rep.Strike(kind, false)
				return fmt.Errorf("%w: daemon restart after containerd restart: %v", errFatal, err)
			}
			ok = false
		}
	case StrikeCNIAddFail, StrikeCNIAddAfter, StrikeCNIAddHang, StrikeCNIDelFail, StrikeCNIDelHang:
		cmd, mode := "ADD", "fail"
		switch kind {
		case StrikeCNIAddAfter:
			mode = "failafter"
		case StrikeCNIAddHang:
			mode = "hang"
		case StrikeCNIDelFail:
			cmd = "DEL"
		case StrikeCNIDelHang:
			cmd, mode = "DEL", "hang"
		}
		n := 1 + rand.IntN(2)
		if err := writeFault(env.FaultCtl, cmd, mode, n, 2*int(rpcTimeout/time.Second)); err != nil {
			return err
		}
		// wait until the faults were taken (or give up: no call came)
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) && faultsLeft(env.FaultCtl, cmd) > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		if left := faultsLeft(env.FaultCtl, cmd); left > 0 {
			logf("  %d of %d %s faults not taken in 90s", left, n, cmd)
		}
		_ = writeFault(env.FaultCtl, "", "", 0, 0)
		if mode == "hang" {
			time.Sleep(rpcTimeout) // let the caller's deadline pass and the retry run
		}
	case StrikeLogFull:
		d.model.ExemptLive()
		d.exempt.Store(true)
		n, err := fillFS(env.LogDir)
		logf("  log filesystem filled (%d MiB), holding 8s (%v)", n>>20, err)
		time.Sleep(8 * time.Second)
		_ = os.Remove(filepath.Join(env.LogDir, ".filler"))
		time.Sleep(2 * time.Second)
		d.exempt.Store(false)
	case StrikeSlowPull:
		env.Proxy.SetSlow(1500*time.Millisecond, 256<<10)
		time.Sleep(20 * time.Second)
		env.Proxy.SetSlow(0, 0)
	default:
		return fmt.Errorf("unknown strike %q", kind)
	}
	if env.Daemon.Exited() {
		in.rep.Notes = append(in.rep.Notes, fmt.Sprintf("cri-containerd exited by itself during %q; restarted", kind))
		ok = false
		if _, err := env.StartDaemon(ctx); err != nil {
			in.rep.Strike(kind, false)
			return fmt.Errorf("%w: daemon restart: %v", errFatal, err)
		}
	}
	// let the workers meet the recovered daemon, then check
	time.Sleep(2 * time.Second)
	v := d.CheckNow(ctx, before, 20*time.Second)
	if len(v) > 0 || len(d.Violations()) > nViol {
		ok = false
	}
	in.rep.Strike(kind, ok)
	logf("  checked: %d violation(s) now, %d total", len(v), len(d.Violations()))
	return nil
}

func writeFault(path, cmd, mode string, count, hang int) error {
	ctl := map[string]any{}
	if cmd != "" {
		ctl[cmd] = map[string]any{"mode": mode, "count": count, "hangSeconds": hang}
	}
	b, _ := json.Marshal(ctl)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.WriteAt(b, 0)
	return err
}

func faultsLeft(path, cmd string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var ctl map[string]struct {
		Count int `json:"count"`
	}
	if json.Unmarshal(b, &ctl) != nil {
		return 0
	}
	return ctl[cmd].Count
}

// fillFS writes zeros into dir/.filler until the filesystem is full.
func fillFS(dir string) (int64, error) {
	f, err := os.Create(filepath.Join(dir, ".filler"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		m, err := f.Write(buf)
		n += int64(m)
		if err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				if len(buf) > 512 {
					buf = buf[:512]
					continue
				}
				return n, nil
			}
			return n, err
		}
	}
}
