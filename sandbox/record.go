package sandbox

import (
	"context"
	"errors"
	"fmt"

	ctrdsandbox "github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/errdefs"
)

// A pod's containerd sandbox record (Options.ShimGroups). containerd 2.x
// creates the task of a container made with a sandbox ID in the shim of the
// task named for that sandbox (our pause) when it holds a sandbox record of
// that name; otherwise it runs the shim binary once per container, which
// finds the pause's shim through the grouping annotation and exits (~8 ms
// of every StartContainer). The record carries no state of ours: it exists
// from RunPodSandbox to RemovePodSandbox, and recovery removes the records
// of sandboxes it does not know.

// errNoRecord: no record was asked for.
var errNoRecord = errors.New("no containerd sandbox record")

// createRecord makes the containerd sandbox record of sandbox id.
func (c *Controller) createRecord(ctx context.Context, id, runtimeType string) error {
	_, err := c.o.Deps.Containerd.SandboxStore().Create(ctx, ctrdsandbox.Sandbox{
		ID:      id,
		Labels:  map[string]string{LabelKind: KindSandbox},
		Runtime: ctrdsandbox.RuntimeOpts{Name: runtimeType},
	})
	if err != nil {
		return fmt.Errorf("creating containerd sandbox record %s: %w", id, err)
	}
	return nil
}

// deleteRecord removes the containerd sandbox record of sandbox id; a
// missing one is not an error, nor a containerd without records (one
// downgraded under a running pod).
func (c *Controller) deleteRecord(ctx context.Context, id string) error {
	if err := c.o.Deps.Containerd.SandboxStore().Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsNotImplemented(err) {
		return fmt.Errorf("deleting containerd sandbox record %s: %w", id, err)
	}
	return nil
}

// RemoveOrphanRecords removes the containerd sandbox records of ours that
// name no sandbox of the store (a daemon killed between a record's creation
// and its sandbox's, or after a removal deleted the container but not yet
// the record). Recovery calls it once the store is complete.
func (c *Controller) RemoveOrphanRecords(ctx context.Context) error {
	if !c.o.ShimGroups {
		return nil
	}
	recs, err := c.o.Deps.Containerd.SandboxStore().List(ctx, fmt.Sprintf("labels.%q==%q", LabelKind, KindSandbox))
	if err != nil {
		return fmt.Errorf("listing containerd sandbox records: %w", err)
	}
	for _, r := range recs {
		if _, err := c.o.Store.Get(r.ID); err == nil {
			continue
		}
		if err := c.deleteRecord(ctx, r.ID); err != nil {
			return err
		}
	}
	return nil
}
