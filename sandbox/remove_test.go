package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
)

// podFiles are the files and per-pod directories left under the
// controller's root and state dirs (the top-level kind dirs excluded).
func (e *runEnv) podFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, base := range []string{e.o.Config.RootDir, e.o.Config.StateDir} {
		err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(base, p)
			if rel == "." || (d.IsDir() && filepath.Dir(rel) == ".") {
				return nil
			}
			out = append(out, p)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestControllerRemove(t *testing.T) {
	e, iv := newLifecycleEnv(t)
	var reaped []string
	var mu sync.Mutex
	e.o.ReapShims = func(id, handler string) {
		mu.Lock()
		reaped = append(reaped, id)
		mu.Unlock()
	}
	e.c = NewController(e.o)
	sb := e.run(t, "web")
	sb.MarkImageVolumes() // as a container with an image volume does

	// Not stopped first: Remove stops it (pause task, network, shm).
	if err := e.c.Remove(context.Background(), sb); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := e.o.Store.Get(sb.ID); err == nil {
		t.Error("sandbox still in the store")
	}
	if n := e.o.Names.Len(); n != 0 {
		t.Errorf("%d names still reserved", n)
	}
	deleted, cleanup, tasks := e.ctrd.Lookup(sb.ID).State()
	if !deleted || !cleanup {
		t.Errorf("containerd container deleted %v with snapshot cleanup %v", deleted, cleanup)
	}
	if len(tasks) != 1 {
		t.Fatalf("%d pause tasks", len(tasks))
	}
	if _, tdeleted, _ := tasks[0].State(); !tdeleted {
		t.Error("pause task not deleted")
	}
	if _, removes := e.net.Calls(); len(removes) != 1 {
		t.Errorf("CNI DELs %+v, want one", removes)
	}
	if got := e.host.MountedShm(); len(got) != 0 {
		t.Errorf("shm still mounted: %v", got)
	}
	if left := e.podFiles(t); len(left) != 0 {
		t.Errorf("files left behind: %v", left)
	}
	if got := fmt.Sprint(iv.removes); got != "["+sb.ID+"@"+e.o.Config.Snapshotter+"]" {
		t.Errorf("image volume removes = %s", got)
	}
	if got := fmt.Sprint(reaped); got != "["+sb.ID+"]" {
		t.Errorf("shims reaped for %s, want the sandbox's", got)
	}
	if got := fmt.Sprint(e.takeEvents()); got != "[CONTAINER_STOPPED_EVENT CONTAINER_DELETED_EVENT]" {
		t.Errorf("events = %s", got)
	}

	// Idempotent: removing it again does nothing more.
	if err := e.c.Remove(context.Background(), sb); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if got := e.takeEvents(); len(got) != 0 {
		t.Errorf("second Remove emitted %v", got)
	}
	if _, removes := e.net.Calls(); len(removes) != 1 {
		t.Errorf("second Remove ran CNI DEL again: %+v", removes)
	}
	// The name is free again.
	e.run(t, "web")
}

// TestRemovePodSandboxRetriesAfterTeardownFailure: a CNI DEL that fails
// fails the removal before anything is deleted; the retry finishes it.
func TestRemovePodSandboxRetriesAfterTeardownFailure(t *testing.T) {
	e, _ := newLifecycleEnv(t)
	sb := e.run(t, "web")
	e.net.RemoveErrs = 1
	if err := e.c.Remove(context.Background(), sb); !errors.Is(err, backendtest.ErrInjected) {
		t.Fatalf("err = %v, want the CNI DEL failure", err)
	}
	if _, err := e.o.Store.Get(sb.ID); err != nil {
		t.Fatalf("sandbox left the store although removal failed: %v", err)
	}
	if deleted, _, _ := e.ctrd.Lookup(sb.ID).State(); deleted {
		t.Fatal("containerd container deleted before the network was torn down")
	}
	if n := e.o.Names.Len(); n != 1 {
		t.Errorf("%d names reserved, want the sandbox's still held", n)
	}
	if err := e.c.Remove(context.Background(), sb); err != nil {
		t.Fatalf("retried Remove: %v", err)
	}
	if _, err := e.o.Store.Get(sb.ID); err == nil {
		t.Error("sandbox still in the store")
	}
	if left := e.podFiles(t); len(left) != 0 {
		t.Errorf("files left behind: %v", left)
	}
}

// TestControllerRemoveRetriesAfterDeleteFailure: containerd failing the
// container delete (after the network is down) keeps the sandbox, its
// files and its name; the retry finishes the job.
func TestControllerRemoveRetriesAfterDeleteFailure(t *testing.T) {
	e, _ := newLifecycleEnv(t)
	sb := e.run(t, "web")
	ctr := e.ctrd.Lookup(sb.ID)
	ctr.DeleteErr = backendtest.ErrInjected
	if err := e.c.Remove(context.Background(), sb); !errors.Is(err, backendtest.ErrInjected) {
		t.Fatalf("err = %v, want the delete failure", err)
	}
	if _, err := e.o.Store.Get(sb.ID); err != nil {
		t.Fatalf("sandbox left the store although removal failed: %v", err)
	}
	if n := e.o.Names.Len(); n != 1 {
		t.Errorf("%d names reserved, want the sandbox's still held", n)
	}
	if left := e.podFiles(t); len(left) == 0 {
		t.Error("pod files removed although the containerd container is still there")
	}
	ctr.DeleteErr = nil
	if err := e.c.Remove(context.Background(), sb); err != nil {
		t.Fatalf("retried Remove: %v", err)
	}
	if deleted, _, _ := ctr.State(); !deleted {
		t.Error("containerd container not deleted by the retry")
	}
	if _, err := e.o.Store.Get(sb.ID); err == nil {
		t.Error("sandbox still in the store")
	}
	if left := e.podFiles(t); len(left) != 0 {
		t.Errorf("files left behind: %v", left)
	}
	if _, removes := e.net.Calls(); len(removes) != 1 {
		t.Errorf("CNI DELs %+v, want one", removes)
	}
}

// TestRemoveReleasesImageVolumesOnlyWhenMaybeMounted: the removal of a pod
// none of whose containers mounted an image volume skips their release (a
// listing of every snapshot and a lease deletion); a sandbox recovery
// loaded may have some, and releases them.
func TestRemoveReleasesImageVolumesOnlyWhenMaybeMounted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(sb *Sandbox)
		want    bool
	}{
		{"none mounted", func(*Sandbox) {}, false},
		{"a container mounted one", func(sb *Sandbox) { sb.MarkImageVolumes() }, true},
		{"not known (recovered)", func(sb *Sandbox) { sb.imageVolumes.Store(true) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, iv := newLifecycleEnv(t)
			sb := e.run(t, "web")
			tc.prepare(sb)
			if err := e.c.Remove(context.Background(), sb); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if got := len(iv.removes) == 1; got != tc.want {
				t.Errorf("image volumes released: %v (%v), want %v", got, iv.removes, tc.want)
			}
		})
	}
}
