// Package backendtest holds fakes of the lifecycle dependencies of package
// backend, shared by the unit tests of the controllers and of the server:
//
//   - Ctrd, Container, Task: containerd as the create/start/stop paths see it
//     (new containers and tasks, images, leases, snapshots), recording what
//     was done so tests can assert that a failed call undid every step;
//   - State, StateContainer, StateTask: containerd as recovery and the event
//     monitor see it (listed containers with records, tasks that can hang,
//     the task event stream); CtrdWithState joins the two;
//   - Images, Network, Host: the image store, CNI, and netns/shm mounts.
//
// Failures are injected by setting the exported *Err fields.
package backendtest

import (
	"testing"
	"time"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/image"
)

// NewImages is an empty image store.
func NewImages() *Images { return &Images{images: map[string]image.Image{}} }

// CtrdWithState is containerd whose containers and events are those of the
// State (shallower, so they win) and whose other calls go to the Ctrd.
type CtrdWithState struct {
	*Ctrd
	*State
}

var (
	_ backend.Containerd = CtrdWithState{}
	_ backend.Images     = (*Images)(nil)
	_ backend.Network    = (*Network)(nil)
	_ backend.Host       = (*Host)(nil)
)

// WaitFor polls cond for up to a generous bound.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
