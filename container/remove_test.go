package container

import (
	"context"
	"testing"
	"time"
)

// TestRemoveDeletesRecordAndSnapshotDirectlyWhenNoTask: a container whose
// task is known to be gone (never started, or deleted by the exit handler)
// is removed with the record and snapshot calls alone
// (backend.DeleteContainer); one whose task is not known to be gone (a
// container recovery loaded) goes through the client, which deletes a task
// left first. Either way the record and the snapshot are gone.
func TestRemoveDeletesRecordAndSnapshotDirectlyWhenNoTask(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, e *ctlEnv, c *Container)
		wantRaw bool
	}{
		{"never started", func(*testing.T, *ctlEnv, *Container) {}, true},
		{"exited", func(t *testing.T, e *ctlEnv, c *Container) {
			if err := e.c.Start(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			e.c.HandleExit(context.Background(), c.ID, 0, time.Unix(1700000002, 0))
		}, true},
		{"task not known gone", func(t *testing.T, e *ctlEnv, c *Container) {
			if err := e.c.Start(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			e.c.HandleExit(context.Background(), c.ID, 0, time.Unix(1700000002, 0))
			// As recovery loads it: a task may be left.
			c.noTask.Store(false)
			if _, err := e.ctrd.Lookup(c.ID).NewTask(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCtlEnv(t)
			c := e.create(t, "app")
			fc := e.ctrd.Lookup(c.ID)
			tc.prepare(t, e, c)
			if err := e.c.Remove(context.Background(), c); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			fc.Mu.Lock()
			deleted, cleanup, raw := fc.Deleted, fc.SnapshotCleanup, fc.RawDelete
			fc.Mu.Unlock()
			if !deleted || !cleanup {
				t.Errorf("record deleted %v, snapshot removed %v", deleted, cleanup)
			}
			if raw != tc.wantRaw {
				t.Errorf("deleted through the container service: %v, want %v", raw, tc.wantRaw)
			}
			_, _, tasks := fc.State()
			for _, task := range tasks {
				if _, gone, _ := task.State(); !gone {
					t.Error("a task is left")
				}
			}
			if _, err := e.o.Store.Get(c.ID); err == nil {
				t.Error("still in the store")
			}
		})
	}
}
