package image

import (
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
)

func TestStoreFilter(t *testing.T) {
	s := testStore()
	s.put("docker.io/library/busybox:musl", Image{ID: idC}, true, mA)
	for _, tc := range []struct {
		filter  string
		want    []string
		invalid bool
	}{
		{filter: "", want: []string{idA, idC, idB}},
		{filter: idB, want: []string{idB}},
		{filter: "cccccccccccc", want: []string{idC}},
		{filter: "busybox:1.36", want: []string{idA}},
		{filter: "docker.io/library/busybox@" + mA, want: []string{idA}},
		// "busybox" is busybox:latest, a known tag: exactly that image.
		{filter: "busybox", want: []string{idA}},
		// a repository with no :latest: every image in it.
		{filter: "registry.k8s.io/pause", want: []string{idB}},
		{filter: "quay.io/x/y", want: []string{idC}},
		{filter: "registry.k8s.io/pause:3.9", want: nil},
		{filter: "nothing/here", want: nil},
		{filter: "UPPER", invalid: true},
	} {
		t.Run(tc.filter, func(t *testing.T) {
			got, err := s.filter(tc.filter)
			if tc.invalid {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, i := range got {
				ids = append(ids, i.ID)
			}
			if !reflect.DeepEqual(ids, tc.want) {
				t.Fatalf("filter(%q) = %v, want %v", tc.filter, ids, tc.want)
			}
		})
	}
}
