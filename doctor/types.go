// Package doctor audits a node the way an operator would after an incident:
// it lists what cri-containerd may have left behind (network namespace
// mounts, per-ID directories and FIFOs, host-local IP allocations, CNI result
// cache entries and iptables chains, containerd tasks, snapshots and leases,
// shim processes), decides from the truth (containerd's container records,
// not the daemon's caches) which of them no longer belong to anything, and
// optionally removes them.
//
// Ownership rules, in short: anything whose ID has a containerd container
// record in the daemon's namespace belongs to the daemon and is never
// touched (a record whose metadata cannot be decoded is reported, never
// deleted: it may be recoverable). Node-wide network objects (IP
// allocations, CNI cache entries, iptables chains) are only considered for
// the networks in the daemon's CNI config directory, and are live while a
// containerd container of that ID exists in any namespace. Objects younger
// than a grace period are skipped: a RunPodSandbox in progress makes its
// directories before its containerd record.
package doctor

import (
	"context"
	"time"

	"github.com/containerd/typeurl/v2"

	"github.com/cri-containerd/cri-containerd/shim"
)

// Kind names a class of finding.
type Kind string

// Finding kinds.
const (
	KindNetNS         Kind = "netns"          // a network namespace mount (or its directory) of no sandbox
	KindDir           Kind = "dir"            // a per-ID directory of no sandbox/container
	KindFIFO          Kind = "fifo"           // a FIFO of an unknown container or a finished exec
	KindContainer     Kind = "container"      // a containerd container record (report only)
	KindTask          Kind = "task"           // a containerd task without a container record
	KindShim          Kind = "shim"           // a shim process serving nothing known
	KindSnapshot      Kind = "snapshot"       // an active/view snapshot we made that nothing references
	KindLease         Kind = "lease"          // a lease we made for a sandbox that is gone
	KindSandboxRecord Kind = "sandbox-record" // a containerd sandbox record we made for a sandbox that is gone
	KindIPAM          Kind = "ipam"           // a host-local IP allocation of no live sandbox
	KindCNICache      Kind = "cni-cache"      // a libcni result cache entry of no live sandbox
	KindIPTables      Kind = "iptables"       // a CNI iptables chain of no live sandbox
)

// Finding is one thing that is orphaned (or suspicious) and why.
type Finding struct {
	Kind Kind `json:"kind"`
	// ID is the sandbox/container/task ID the object is named after, if any.
	ID string `json:"id,omitempty"`
	// Path is where the object is: a path, a "table chain", a snapshot key...
	Path string `json:"path"`
	// Reason says why the object is orphaned.
	Reason string `json:"reason"`
	// Repairable is false for findings --repair reports but never removes.
	Repairable bool `json:"repairable"`
	// Young is set when the object is younger than the grace period: it is
	// listed but neither counted as orphaned nor repaired.
	Young bool `json:"young,omitempty"`
	// Result is what --repair did: "removed", "gone", or "failed: ..."; empty
	// without --repair or for findings that are not repaired.
	Result string `json:"result,omitempty"`

	// Internals used by the repair.
	snapshotter string
	pid         int
	network     string
}

// Counts summarises what the daemon owns (containerd records in its namespace).
type Counts struct {
	Sandboxes  int `json:"sandboxes"`
	Containers int `json:"containers"`
	Tasks      int `json:"tasks"`
}

// Report is the result of an audit (and repair).
type Report struct {
	Namespace string    `json:"namespace"`
	Owned     Counts    `json:"owned"`
	Findings  []Finding `json:"findings"`
	// Warnings are parts of the audit that could not run (e.g. no iptables).
	Warnings []string `json:"warnings,omitempty"`
	Repaired bool     `json:"repaired"`
}

// Orphans counts the findings that are not young and, after a repair, were
// not removed: what makes the exit code 1.
func (r *Report) Orphans() int {
	n := 0
	for _, f := range r.Findings {
		if f.Young {
			continue
		}
		if r.Repaired && (f.Result == ResultRemoved || f.Result == ResultGone || f.Result == ResultOwned) {
			continue
		}
		n++
	}
	return n
}

// Repair results.
const (
	ResultRemoved = "removed"
	ResultGone    = "gone" // already gone when the repair got to it (idempotent)
)

// Options says where the daemon keeps its state; they come from the daemon's
// own configuration.
type Options struct {
	RootDir   string
	StateDir  string
	Namespace string
	// Endpoint is containerd's socket; shims of other containerd instances are ignored.
	Endpoint string
	// Snapshotters are the snapshotters the daemon uses.
	Snapshotters []string
	// CNIConfDir is the daemon's CNI config directory; its networks scope the
	// node-wide network objects.
	CNIConfDir string
	// CNICacheDir is libcni's cache directory (results/ holds the ADD arguments).
	CNICacheDir string
	// Grace: objects younger than this are skipped.
	Grace time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// Record is a containerd container record.
type Record struct {
	ID          string
	Labels      map[string]string
	Extensions  map[string]typeurl.Any
	Snapshotter string
	SnapshotKey string
	CreatedAt   time.Time
}

// Task is a containerd task (init process).
type Task struct {
	ID     string
	Pid    uint32
	Status string
}

// Snapshot is a snapshot's info.
type Snapshot struct {
	Key     string
	Kind    string // "active", "view", "committed"
	Created time.Time
}

// Lease is a containerd lease.
type Lease struct {
	ID        string
	Labels    map[string]string
	CreatedAt time.Time
}

// Containerd is what the doctor needs from containerd. Everything but
// AllContainerIDs is in the daemon's namespace.
type Containerd interface {
	Containers(ctx context.Context) ([]Record, error)
	// AllContainerIDs maps the ID of every container in every namespace to its namespace.
	AllContainerIDs(ctx context.Context) (map[string]string, error)
	Tasks(ctx context.Context) ([]Task, error)
	Snapshots(ctx context.Context, snapshotter string) ([]Snapshot, error)
	Leases(ctx context.Context) ([]Lease, error)
	// ProcessExists reports whether exec process execID of task id exists.
	ProcessExists(ctx context.Context, id, execID string) (bool, error)
	// DeleteTask kills and deletes task id; NotFound is not an error.
	DeleteTask(ctx context.Context, id string) error
	RemoveSnapshot(ctx context.Context, snapshotter, key string) error
	DeleteLease(ctx context.Context, id string) error
	// SandboxRecords lists containerd's sandbox records in the namespace
	// that we made (labelled as ours); none on a containerd without them.
	SandboxRecords(ctx context.Context) ([]Lease, error)
	// DeleteSandboxRecord removes one; NotFound is not an error.
	DeleteSandboxRecord(ctx context.Context, id string) error
}

// Mount is a mount point.
type Mount struct {
	Mountpoint string
	FSType     string
}

// Shim is a shim process (package shim finds them).
type Shim = shim.Process

// Host is what the doctor needs from the kernel besides the file system.
type Host interface {
	Mounts() ([]Mount, error)
	// Unmount detaches the mount at path.
	Unmount(path string) error
	Shims() ([]Shim, error)
	// Kill sends SIGKILL to pid.
	Kill(pid int) error
}

// IPTables runs iptables (or ip6tables, with v6).
type IPTables interface {
	// Rules returns `iptables -t table -S` (nil, nil when the binary is missing).
	Rules(ctx context.Context, v6 bool, table string) ([]string, error)
	Run(ctx context.Context, v6 bool, args ...string) error
}

// DelRequest is one CNI DEL.
type DelRequest struct {
	Network     string
	Config      []byte // the conflist
	ContainerID string
	IfName      string
	NetNS       string
	Args        [][2]string
	// CapabilityArgs are the runtime capabilities (portMappings, ...).
	CapabilityArgs map[string]any
}

// CNI runs CNI DEL.
type CNI interface {
	Del(ctx context.Context, r DelRequest) error
}
