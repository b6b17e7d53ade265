package shimlog

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/cri-containerd/cri-containerd/containerio"
	"github.com/cri-containerd/cri-containerd/crilog/crilogtest"
	"github.com/cri-containerd/cri-containerd/shimlog/logwriter"
)

// testWriter is a log writer run in the test process on pipes, as the shim
// would start it.
type testWriter struct {
	t              *testing.T
	stdout, stderr *os.File // the container's ends
	result         chan error
}

func runWriter(t *testing.T, opts logwriter.Options) *testWriter {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer readyR.Close()
	ctx, cancel := context.WithCancel(context.Background())
	w := &testWriter{t: t, stdout: outW, stderr: errW, result: make(chan error, 1)}
	go func() { w.result <- logwriter.Run(ctx, opts, outR, errR, readyW) }()
	t.Cleanup(func() {
		cancel()
		_ = outW.Close()
		_ = errW.Close()
	})
	if n, _ := readyR.Read(make([]byte, 1)); n != 1 {
		t.Fatalf("writer not ready: %v", <-w.result)
	}
	return w
}

func (w *testWriter) write(f *os.File, s string) {
	w.t.Helper()
	if _, err := f.WriteString(s); err != nil {
		w.t.Fatal(err)
	}
}

// finish closes the container's ends and waits for the writer to return.
func (w *testWriter) finish() {
	w.t.Helper()
	_ = w.stdout.Close()
	_ = w.stderr.Close()
	select {
	case err := <-w.result:
		if err != nil {
			w.t.Fatalf("Run: %v", err)
		}
	case <-time.After(crilogtest.Timeout):
		w.t.Fatal("Run did not return")
	}
}

// TestRegressionShimLogWriteErrorsNotInMetric: with container_log_mode =
// "shim", the records the shim-side writer could not write (a full log file
// system) were counted only inside the writer, so the daemon's
// cri_containerd_container_log_write_errors_total stayed 0. The writer now
// keeps its count in a file of the container's directory, which the
// daemon's reporter reads (the metric's value), also after the writer has
// exited.
func TestRegressionShimLogWriteErrorsNotInMetric(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	remote := NewRemote(RemoteConfig{ID: "c1", Dir: dir, Executable: exe, LogPath: "/dev/full"})
	rep := &containerio.LogErrorReporter{}
	ctrIO, err := containerio.New(containerio.Config{ID: "c1", FIFODir: filepath.Join(dir, "io"), LogPath: "/dev/full",
		Remote: remote, UseRemote: true, LogErrors: rep})
	if err != nil {
		t.Fatal(err)
	}
	tio, err := ctrIO.Creator()("c1")
	if err != nil {
		t.Fatal(err)
	}
	// The writer the shim would start from that URI.
	if !strings.Contains(tio.Config().Stdout, "--errors-file="+url.QueryEscape(filepath.Join(dir, logwriter.ErrorsFileName))) {
		t.Fatalf("log URI %q does not name the error count file", tio.Config().Stdout)
	}
	w := runWriter(t, logwriter.Options{LogPath: "/dev/full", ControlPath: remote.Client().Path,
		ErrorsPath: filepath.Join(dir, logwriter.ErrorsFileName), ErrorsSyncInterval: 10 * time.Millisecond})
	w.write(w.stdout, "one\ntwo\n")
	w.write(w.stderr, "three\n")
	crilogtest.Eventually(t, "3 errors in the metric", func() bool { return rep.Total() == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), crilogtest.Timeout)
	defer cancel()
	st, err := remote.Client().Status(ctx)
	if err != nil || st.WriteErrors != 3 {
		t.Fatalf("status %+v, %v", st, err)
	}
	w.write(w.stdout, "four\nfive")
	w.finish() // "five" is written as a partial record at the end
	// The final count is on disk once the writer is done.
	if n, err := remote.LogWriteErrors(); err != nil || n != 5 {
		t.Fatalf("count after the end: %d, %v; want 5", n, err)
	}
	if got := rep.Total(); got != 5 {
		t.Fatalf("metric %v, want 5", got)
	}
	// The container exited: the daemon closes its IO; the count stays.
	if !ctrIO.Wait(time.Second) {
		t.Fatal("Wait")
	}
	if err := ctrIO.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rep.Total(); got != 5 {
		t.Fatalf("metric %v after close, want 5", got)
	}
	// A restarted daemon re-attaching to the task reads the same count.
	rep2 := &containerio.LogErrorReporter{}
	cio2, err := containerio.New(containerio.Config{ID: "c1", FIFODir: filepath.Join(dir, "io"), LogPath: "/dev/full",
		Remote: remote, LogErrors: rep2})
	if err != nil {
		t.Fatal(err)
	}
	fs := ctrIO.Config()
	if _, err := cio2.Attacher()(&cio.FIFOSet{Config: fs}); err != nil {
		t.Fatal(err)
	}
	if got := rep2.Total(); got != 5 {
		t.Fatalf("metric of a restarted daemon %v, want 5", got)
	}
	_ = cio2.Close()
}
