package containerio

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/cri-containerd/cri-containerd/crilog"
)

// DefaultLogErrorInterval is how often, at most, the log write errors of one
// container are logged.
const DefaultLogErrorInterval = time.Minute

// Counter is the part of a Prometheus counter the log writer uses.
type Counter interface{ Inc() }

// LogErrorReporter accounts the container log records that could not be
// written (a full or failing disk): each one increments Counter, and each
// container logs its errors at most once per Interval, with the number of
// records dropped since its previous report. It is configured once by the
// daemon and shared by every container; a nil *LogErrorReporter only logs.
type LogErrorReporter struct {
	// Counter counts every record that could not be written; nil: none.
	Counter Counter
	// Interval is the minimum time between two reports of one container;
	// <= 0 means DefaultLogErrorInterval.
	Interval time.Duration
	// Clock decides the intervals (default: real time).
	Clock clock.PassiveClock
	// Logger receives the reports; the zero Logger means klog.
	Logger klog.Logger

	// local counts the errors of the daemon's own writers.
	local atomic.Int64
	// mu guards the remote writers' accounting.
	mu sync.Mutex
	// folded is the last count of the remote writers no longer tracked.
	folded int64
	// remotes are the tracked remote writers (see TrackRemote).
	remotes map[*remoteErrors]struct{}
}

// Total returns the number of container log records that could not be
// written: by the daemon, and by the remote writers it tracks or tracked
// (read now; a remote writer's new errors are also reported, rate-limited, as
// the daemon's own). It is the value of the daemon's log write error metric
// (a nil reporter: 0).
func (r *LogErrorReporter) Total() float64 {
	if r == nil {
		return 0
	}
	total := r.local.Load()
	r.mu.Lock()
	remotes := make([]*remoteErrors, 0, len(r.remotes))
	for re := range r.remotes {
		remotes = append(remotes, re)
	}
	total += r.folded
	r.mu.Unlock()
	for _, re := range remotes {
		total += re.refresh()
	}
	return float64(total)
}

// RemotePollInterval is how often PollRemotes reads the remote writers'
// counts by default.
const RemotePollInterval = 10 * time.Second

// PollRemotes reads the counts of the tracked remote writers every interval
// (<= 0: RemotePollInterval), reporting their new errors in the log, until
// ctx ends: one loop for every container of the daemon.
func (r *LogErrorReporter) PollRemotes(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = RemotePollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Total()
		}
	}
}

// RemoteErrorCounter is implemented by a Remote whose writer counts the log
// records it could not write; the count must never decrease and must outlive
// the writer (package shimlog keeps it in a file).
type RemoteErrorCounter interface {
	LogWriteErrors() (int64, error)
}

// remoteErrors is the accounting of one remote writer.
type remoteErrors struct {
	errs *ContainerLogErrors
	src  RemoteErrorCounter

	mu   sync.Mutex
	last int64 // highest count read so far
}

// refresh reads the count, reports what is new, and returns the count.
func (re *remoteErrors) refresh() int64 {
	re.mu.Lock()
	defer re.mu.Unlock()
	n, err := re.src.LogWriteErrors()
	if err != nil {
		klog.V(2).InfoS("Cannot read the log write errors of the shim log writer", "containerID", re.errs.id, "err", err)
		return re.last
	}
	if n > re.last {
		re.errs.reportRemote(n - re.last)
		re.last = n
	}
	return re.last
}

// trackRemote adds the errors of a remote writer to Total until the returned
// function is called; that one reads the count a last time and keeps it in
// Total. Each call of either refreshes the count (and reports new errors).
func (r *LogErrorReporter) trackRemote(errs *ContainerLogErrors, src RemoteErrorCounter) (refresh func(), untrack func()) {
	re := &remoteErrors{errs: errs, src: src}
	if r == nil {
		return func() { re.refresh() }, func() { re.refresh() }
	}
	r.mu.Lock()
	if r.remotes == nil {
		r.remotes = map[*remoteErrors]struct{}{}
	}
	r.remotes[re] = struct{}{}
	r.mu.Unlock()
	var once sync.Once
	return func() { re.refresh() }, func() {
		once.Do(func() {
			// Under r.mu: a concurrent Total sees the count either
			// tracked or folded, never both or neither.
			r.mu.Lock()
			defer r.mu.Unlock()
			n := re.refresh()
			delete(r.remotes, re)
			r.folded += n
		})
	}
}

// ForContainer returns the error accounting of one container, to share
// between its stdout and stderr loggers ([WithWriteErrors]).
func (r *LogErrorReporter) ForContainer(id string) *ContainerLogErrors {
	e := &ContainerLogErrors{id: id, interval: DefaultLogErrorInterval, clock: clock.RealClock{}, logger: klog.Background()}
	if r == nil {
		return e
	}
	e.reporter = r
	e.counter = r.Counter
	if r.Interval > 0 {
		e.interval = r.Interval
	}
	if r.Clock != nil {
		e.clock = r.Clock
	}
	if r.Logger.GetSink() != nil {
		e.logger = r.Logger
	}
	return e
}

// ContainerLogErrors counts and rate-limits the log write errors of one
// container. It is safe for concurrent use.
type ContainerLogErrors struct {
	id       string
	reporter *LogErrorReporter // nil: not counted
	counter  Counter
	interval time.Duration
	clock    clock.PassiveClock
	logger   klog.Logger

	mu         sync.Mutex
	reported   bool      // an error was reported already
	lastReport time.Time // when
	dropped    int       // records dropped since the last report
}

// WithWriteErrors makes a CRILogger account its sink errors in errs (shared
// by the loggers of one container); nil: the errors are only logged, at most
// once per DefaultLogErrorInterval.
func WithWriteErrors(errs *ContainerLogErrors) crilog.LoggerOption {
	if errs == nil {
		errs = (*LogErrorReporter)(nil).ForContainer("")
	}
	return crilog.WithErrorHandler(errs.report)
}

func (e *ContainerLogErrors) report(stream crilog.Stream, err error) {
	if e.reporter != nil {
		e.reporter.local.Add(1)
	}
	if e.counter != nil {
		e.counter.Inc()
	}
	if dropped, ok := e.due(1); ok {
		e.logger.Error(err, "Failed to write container log records, dropping them", "containerID", e.id,
			"stream", stream, "droppedRecords", dropped, "reportInterval", e.interval)
	}
}

// reportRemote reports n records the container's remote writer could not
// write (counted in the reporter's Total, not in Counter).
func (e *ContainerLogErrors) reportRemote(n int64) {
	if dropped, ok := e.due(int(n)); ok {
		e.logger.Error(errRemoteWrite, "Failed to write container log records, dropping them", "containerID", e.id,
			"writer", "shim", "droppedRecords", dropped, "reportInterval", e.interval)
	}
}

var errRemoteWrite = errors.New("the shim log writer could not write to the log file")

// due adds n dropped records and says whether to report now, with how many
// records were dropped since the last report.
func (e *ContainerLogErrors) due(n int) (int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dropped += n
	now := e.clock.Now()
	if e.reported && now.Sub(e.lastReport) < e.interval {
		return 0, false
	}
	dropped := e.dropped
	e.reported, e.lastReport, e.dropped = true, now, 0
	return dropped, true
}
