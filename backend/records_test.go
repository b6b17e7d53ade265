package backend

import (
	"context"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// recordStore is a containers.Store holding one record per ID.
type recordStore struct {
	containers.Store
	recs map[string]containers.Container
}

func (s *recordStore) Create(_ context.Context, c containers.Container) (containers.Container, error) {
	s.recs[c.ID] = c
	return c, nil
}

func (s *recordStore) Get(_ context.Context, id string) (containers.Container, error) {
	return s.recs[id], nil
}

// TestSlimCreatesKeepsNoSpecInTheCreatedRecord: the record a Create
// returns (which the client's container object keeps) has no spec and no
// extensions; containerd's record, as Get returns it, has both.
func TestSlimCreatesKeepsNoSpecInTheCreatedRecord(t *testing.T) {
	ctx := context.Background()
	spec := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte(`{"ociVersion":"1.2.0"}`)}
	ext := map[string]typeurl.Any{"md": &anypb.Any{TypeUrl: "x", Value: []byte("{}")}}
	inner := &recordStore{recs: map[string]containers.Container{}}
	s := SlimCreates{Store: inner}
	r, err := s.Create(ctx, containers.Container{ID: "c1", Spec: spec, Extensions: ext, SnapshotKey: "c1", Snapshotter: "overlayfs"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Spec != nil || r.Extensions != nil {
		t.Errorf("created record keeps spec %v, extensions %v", r.Spec, r.Extensions)
	}
	if r.ID != "c1" || r.SnapshotKey != "c1" || r.Snapshotter != "overlayfs" {
		t.Errorf("created record lost its other fields: %+v", r)
	}
	g, _ := s.Get(ctx, "c1")
	if g.Spec == nil || len(g.Extensions) != 1 {
		t.Errorf("Get = %+v, want the whole record", g)
	}
}
