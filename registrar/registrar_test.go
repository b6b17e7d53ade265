package registrar

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestReserveRelease(t *testing.T) {
	r := New()
	steps := []struct {
		op       string
		name, id string
		wantErr  error
	}{
		{"reserve", "pod_a", "1", nil},
		{"reserve", "pod_a", "1", nil}, // idempotent
		{"reserve", "pod_a", "2", errdefs.ErrAlreadyExists},
		{"reserve", "pod_b", "1", errdefs.ErrAlreadyExists},
		{"reserve", "", "3", errdefs.ErrInvalidArgument},
		{"releaseID", "", "1", nil},
		{"reserve", "pod_a", "2", nil},
		{"releaseName", "pod_a", "", nil},
		{"reserve", "pod_a", "3", nil},
	}
	for i, s := range steps {
		var err error
		switch s.op {
		case "reserve":
			err = r.Reserve(s.name, s.id)
		case "releaseID":
			r.ReleaseByID(s.id)
		case "releaseName":
			r.ReleaseByName(s.name)
		}
		if s.wantErr == nil && err != nil {
			t.Fatalf("step %d %s(%q,%q): unexpected error %v", i, s.op, s.name, s.id, err)
		}
		if s.wantErr != nil && !errdefsIs(err, s.wantErr) {
			t.Fatalf("step %d %s(%q,%q): error %v, want %v", i, s.op, s.name, s.id, err, s.wantErr)
		}
	}
	if r.Len() != 1 {
		t.Fatalf("Len = %d, want 1", r.Len())
	}
}

func errdefsIs(err, target error) bool {
	switch target {
	case errdefs.ErrAlreadyExists:
		return errdefs.IsAlreadyExists(err)
	case errdefs.ErrInvalidArgument:
		return errdefs.IsInvalidArgument(err)
	}
	return false
}
