package sandbox

import (
	"context"
	"errors"
	"testing"

	ctrdsandbox "github.com/containerd/containerd/v2/core/sandbox"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
)

// TestShimGroupRecord: with ShimGroups, a pod has a containerd sandbox
// record from Run to Remove (its metadata says so); a Run that fails leaves
// none; a record that cannot be made is not an error (the pod just has no
// shim group); recovery's RemoveOrphanRecords drops records of no sandbox.
func TestShimGroupRecord(t *testing.T) {
	ctx := context.Background()
	newEnv := func(t *testing.T) *runEnv {
		e := newRunEnv(t)
		e.o.ShimGroups = true
		e.c = NewController(e.o)
		return e
	}
	t.Run("run and remove", func(t *testing.T) {
		e := newEnv(t)
		id, err := e.c.Run(ctx, testPod("web"), "")
		if err != nil {
			t.Fatal(err)
		}
		sb, _ := e.o.Store.Get(id)
		if !sb.GetMetadata().ShimGroup {
			t.Error("metadata: ShimGroup not set")
		}
		if r, ok := e.ctrd.Records[id]; !ok || r.Labels[LabelKind] != KindSandbox || r.Runtime.Name != "io.containerd.runc.v2" {
			t.Errorf("record = %+v (present %v)", r, ok)
		}
		if err := e.c.Remove(ctx, sb); err != nil {
			t.Fatal(err)
		}
		if len(e.ctrd.Records) != 0 {
			t.Errorf("records left: %v", e.ctrd.Records)
		}
	})
	t.Run("failed run", func(t *testing.T) {
		e := newEnv(t)
		e.ctrd.Configure = func(c *backendtest.Container) { c.TaskStartErr = backendtest.ErrInjected }
		if _, err := e.c.Run(ctx, testPod("web"), ""); !errors.Is(err, backendtest.ErrInjected) {
			t.Fatalf("Run: %v", err)
		}
		if len(e.ctrd.Records) != 0 {
			t.Errorf("records left: %v", e.ctrd.Records)
		}
	})
	t.Run("record refused", func(t *testing.T) {
		e := newEnv(t)
		e.ctrd.RecordCreateErr = backendtest.ErrInjected
		id, err := e.c.Run(ctx, testPod("web"), "")
		if err != nil {
			t.Fatal(err)
		}
		if sb, _ := e.o.Store.Get(id); sb.GetMetadata().ShimGroup {
			t.Error("ShimGroup set without a record")
		}
	})
	// Chaos run of 924f1da: a RunPodSandbox cut by a daemon kill -9 left
	// a half-made sandbox whose metadata (written before the record was
	// made) had no ShimGroup; recovery kept it NOTREADY, RemovePodSandbox
	// skipped the record, and it leaked.
	t.Run("removal of a kept half-made sandbox deletes its record", func(t *testing.T) {
		e := newEnv(t)
		id, err := e.c.Run(ctx, testPod("web"), "")
		if err != nil {
			t.Fatal(err)
		}
		sb, _ := e.o.Store.Get(id)
		sb.UpdateMetadata(func(m *Metadata) { m.ShimGroup, m.Phase = false, PhaseCreating })
		if err := e.c.Remove(ctx, sb); err != nil {
			t.Fatal(err)
		}
		if len(e.ctrd.Records) != 0 {
			t.Errorf("records left: %v", e.ctrd.Records)
		}
	})
	t.Run("orphans", func(t *testing.T) {
		e := newEnv(t)
		id, err := e.c.Run(ctx, testPod("web"), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.ctrd.SandboxStore().Create(ctx, backendtestRecord("gone")); err != nil {
			t.Fatal(err)
		}
		if err := e.c.RemoveOrphanRecords(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.ctrd.Records["gone"]; ok {
			t.Error("orphan record kept")
		}
		if _, ok := e.ctrd.Records[id]; !ok {
			t.Error("live sandbox's record removed")
		}
	})
}

func backendtestRecord(id string) ctrdsandbox.Sandbox {
	return ctrdsandbox.Sandbox{ID: id, Labels: map[string]string{LabelKind: KindSandbox}}
}
