package containerio

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/klog/v2/textlogger"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/cri-containerd/cri-containerd/crilog"
)

type failingWriter struct{ calls int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.calls++
	return 0, errors.New("disk full")
}

type countingCounter struct {
	mu sync.Mutex
	n  int
}

func (c *countingCounter) Inc() { c.mu.Lock(); c.n++; c.mu.Unlock() }

func (c *countingCounter) value() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// TestRegressionLogWriteErrorsDropped: a record the log sink refused (a full
// disk) was dropped without a trace beyond one log line per failure period.
// Every dropped record must now be counted, and the errors of a container
// logged at most once per interval (stdout and stderr together), with how
// many records were dropped since the previous report.
func TestRegressionLogWriteErrorsDropped(t *testing.T) {
	clk := testingclock.NewFakePassiveClock(testTime)
	counter := &countingCounter{}
	var logBuf bytes.Buffer
	rep := &LogErrorReporter{
		Counter:  counter,
		Interval: time.Minute,
		Clock:    clk,
		Logger:   textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(&logBuf))),
	}
	errs := rep.ForContainer("c1")
	fw := &failingWriter{}
	stdout := crilog.NewCRILogger(fw, crilog.Stdout, 0, crilog.WithClock(clk.Now), WithWriteErrors(errs))
	stderr := crilog.NewCRILogger(fw, crilog.Stderr, 0, crilog.WithClock(clk.Now), WithWriteErrors(errs))
	reports := func() []string {
		var out []string
		for _, l := range strings.Split(logBuf.String(), "\n") {
			if strings.Contains(l, "Failed to write container log records") {
				out = append(out, l)
			}
		}
		return out
	}

	write := func(l *crilog.CRILogger, n int) {
		for i := 0; i < n; i++ {
			if _, err := l.Write([]byte("line\n")); err != nil {
				t.Fatalf("Write: %v", err)
			}
		}
	}
	write(stdout, 5)
	write(stderr, 5)
	if got := counter.value(); got != 10 {
		t.Fatalf("counter = %d after 10 failed records, want 10", got)
	}
	r := reports()
	if len(r) != 1 {
		t.Fatalf("%d reports in the first interval, want 1:\n%s", len(r), logBuf.String())
	}
	for _, want := range []string{`containerID="c1"`, `err="disk full"`, `droppedRecords=1`} {
		if !strings.Contains(r[0], want) {
			t.Errorf("first report %q lacks %s", r[0], want)
		}
	}

	clk.SetTime(testTime.Add(59 * time.Second))
	write(stderr, 3)
	if r := reports(); len(r) != 1 {
		t.Fatalf("%d reports before the interval elapsed, want 1", len(r))
	}
	clk.SetTime(testTime.Add(time.Minute))
	write(stdout, 2)
	r = reports()
	if len(r) != 2 {
		t.Fatalf("%d reports after one interval, want 2:\n%s", len(r), logBuf.String())
	}
	// 12 suppressed (4+5+3) plus the one reported now.
	if !strings.Contains(r[1], "droppedRecords=13") {
		t.Errorf("second report %q: want droppedRecords=13", r[1])
	}
	if got := counter.value(); got != 15 {
		t.Fatalf("counter = %d after 15 failed records, want 15", got)
	}

	// Another container has its own interval.
	other := crilog.NewCRILogger(fw, crilog.Stdout, 0, WithWriteErrors(rep.ForContainer("c2")))
	write(other, 3)
	if r := reports(); len(r) != 3 || !strings.Contains(r[2], `containerID="c2"`) {
		t.Fatalf("reports after a second container failed: %q", r)
	}
	if got := counter.value(); got != 18 {
		t.Fatalf("counter = %d, want 18", got)
	}
}
