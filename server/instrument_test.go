package server

import (
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cri-containerd/cri-containerd/container"
)

// TestRegressionLogWriteErrorsMetric: the records of a container whose log
// cannot be written (a full disk, here /dev/full) are counted in the
// daemon's registry as cri_containerd_container_log_write_errors_total.
func TestRegressionLogWriteErrorsMetric(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	reg := prometheus.NewRegistry()
	s := &Service{metrics: NewMetrics(reg)}
	s.config.StateDir = t.TempDir()
	c := container.New(container.Metadata{ID: "c1", LogPath: "/dev/full"}, t.TempDir(), container.Status{})
	cio, err := s.newContainerIO(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cio.Creator()("c1"); err != nil {
		t.Fatal(err)
	}
	defer cio.Cleanup()
	for _, p := range []string{cio.Config().Stdout, cio.Config().Stderr} {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("lost line\n"); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	select {
	case <-cio.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("container output not finished")
	}
	const name = "cri_containerd_container_log_write_errors_total"
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 2 {
				t.Fatalf("%s = %v, want 2", name, v)
			}
			return
		}
	}
	t.Fatalf("%s is not registered", name)
}
