package image

import (
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

const (
	idA = "sha256:aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111"
	idB = "sha256:aaaaaaaaaaaa2222222222222222222222222222222222222222222222222222"
	idC = "sha256:cccccccccccc3333333333333333333333333333333333333333333333333333"
	mA  = "sha256:dddddddddddd4444444444444444444444444444444444444444444444444444"
	mB  = "sha256:eeeeeeeeeeee5555555555555555555555555555555555555555555555555555"
)

func testStore() *store {
	s := newStore([]string{"registry.k8s.io/pause:3.10"})
	a := Image{ID: idA, ChainID: "sha256:chainA", Size: 10}
	s.put(idA, a, false, mA)
	s.put("docker.io/library/busybox:latest", a, false, mA)
	s.put("docker.io/library/busybox:1.36", a, false, mA)
	s.put("docker.io/library/busybox@"+mA, a, false, mA)
	b := Image{ID: idB, Size: 20}
	s.put(idB, b, false, mB)
	s.put("registry.k8s.io/pause:3.10", b, false, mB)
	s.put("registry.k8s.io/pause@"+mB, b, false, mB)
	c := Image{ID: idC, Size: 30}
	s.put("quay.io/x/y:z", c, true, mA) // pinned by label
	return s
}

func TestStoreResolve(t *testing.T) {
	s := testStore()
	for _, tc := range []struct {
		ref    string
		want   string
		errIs  func(error) bool
		substr string
	}{
		{ref: idA, want: idA},
		{ref: strings.TrimPrefix(idA, "sha256:"), want: idA},          // full hex without algorithm
		{ref: "sha256:cccc", want: idC},                               // any prefix after sha256:
		{ref: "cccccccccccc", want: idC},                              // 12-digit short ID
		{ref: "aaaaaaaaaaaa", errIs: errdefs.IsInvalidArgument},       // ambiguous short ID
		{ref: "busybox", want: idA},                                   // normalized tag
		{ref: "docker.io/library/busybox:1.36", want: idA},            // full tag
		{ref: "busybox@" + mA, want: idA},                             // digest
		{ref: "docker.io/library/busybox:1.36@" + mA, want: idA},      // tag+digest: digest wins
		{ref: "registry.k8s.io/pause:3.10", want: idB},                //
		{ref: "registry.k8s.io/pause:3.9", errIs: errdefs.IsNotFound}, // unknown tag
		{ref: "sha256:" + strings.Repeat("0", 64), errIs: errdefs.IsNotFound},
		{ref: strings.Repeat("0", 64), errIs: errdefs.IsNotFound}, // critest idempotence fake ID
		{ref: "", errIs: errdefs.IsInvalidArgument},
		{ref: "Not/Valid", errIs: errdefs.IsInvalidArgument},
		{ref: "cccc", errIs: errdefs.IsNotFound}, // short hex is a repo name, unknown
	} {
		t.Run(tc.ref, func(t *testing.T) {
			img, err := s.resolve(tc.ref)
			if tc.errIs != nil {
				if !tc.errIs(err) {
					t.Fatalf("resolve(%q) = %v, %v; wrong error class", tc.ref, img.ID, err)
				}
				return
			}
			if err != nil || img.ID != tc.want {
				t.Fatalf("resolve(%q) = %v, %v; want %s", tc.ref, img.ID, err, tc.want)
			}
		})
	}
}

func TestStoreNamesAndPinning(t *testing.T) {
	s := testStore()
	a, _ := s.byID(idA)
	if want := []string{"docker.io/library/busybox:1.36", "docker.io/library/busybox:latest"}; !reflect.DeepEqual(a.RepoTags, want) {
		t.Errorf("RepoTags = %v, want %v", a.RepoTags, want)
	}
	if want := []string{"docker.io/library/busybox@" + mA}; !reflect.DeepEqual(a.RepoDigests, want) {
		t.Errorf("RepoDigests = %v, want %v", a.RepoDigests, want)
	}
	if len(a.References) != 4 || a.Pinned {
		t.Errorf("References = %v, Pinned = %v", a.References, a.Pinned)
	}
	b, _ := s.byID(idB)
	if !b.Pinned {
		t.Error("image named by the configured pinned reference is not pinned")
	}
	c, _ := s.byID(idC)
	if !c.Pinned {
		t.Error("image with the pinned label is not pinned")
	}

	// A tag moving to another image leaves the old one.
	s.put("docker.io/library/busybox:latest", b, false, mB)
	a, _ = s.byID(idA)
	b, _ = s.byID(idB)
	if reflect.DeepEqual(a.RepoTags, []string{"docker.io/library/busybox:1.36"}) == false {
		t.Errorf("old image tags after retag: %v", a.RepoTags)
	}
	if !contains(b.RepoTags, "docker.io/library/busybox:latest") {
		t.Errorf("new image tags after retag: %v", b.RepoTags)
	}

	// Dropping the pinned name unpins; dropping every name removes the image.
	s.drop("registry.k8s.io/pause:3.10")
	b, _ = s.byID(idB)
	if b.Pinned {
		t.Error("still pinned after its pinned name went")
	}
	for _, n := range s.names(idA) {
		s.drop(n)
	}
	if _, ok := s.byID(idA); ok {
		t.Error("image still cached without names")
	}
	if _, err := s.resolve("busybox:1.36"); !errdefs.IsNotFound(err) {
		t.Errorf("resolve removed tag: %v", err)
	}
	if got := s.targets(idB); !reflect.DeepEqual(got, []string{mB}) {
		t.Errorf("targets = %v", got)
	}
}

func TestStoreListOrderAndCopies(t *testing.T) {
	s := testStore()
	l := s.list()
	var ids []string
	for _, i := range l {
		ids = append(ids, i.ID)
	}
	// by first repo tag: docker.io/..., quay.io/..., registry.k8s.io/...
	if want := []string{idA, idC, idB}; !reflect.DeepEqual(ids, want) {
		t.Errorf("order = %v, want %v", ids, want)
	}
	l[0].RepoTags[0] = "mutated"
	if a, _ := s.byID(idA); a.RepoTags[0] == "mutated" {
		t.Error("list returned shared slices")
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestStoreApplyDetectsStaleReads(t *testing.T) {
	s := newStore(nil)
	img := Image{ID: idA}
	const name = "docker.io/library/busybox:latest"

	// A read taken before a removal must not resurrect the name.
	before := s.version()
	s.put(name, img, false, mA)
	s.drop(name) // Remove deleted it meanwhile
	if s.apply(name, &img, false, mA, before) {
		t.Fatal("stale read applied over a newer removal")
	}
	if _, err := s.resolve(name); !errdefs.IsNotFound(err) {
		t.Fatalf("name resurrected: %v", err)
	}

	// A stale read agreeing with the newer state is as good as applied.
	if !s.apply(name, nil, false, "", before) {
		t.Fatal("stale absence not taken though the name is absent")
	}
	s.put(name, img, false, mA)
	if s.apply(name, &img, true, mA, before) || s.apply(name, &img, false, mB, before) || s.apply(name, &Image{ID: idB}, false, mA, before) {
		t.Fatal("stale read applied though it differs from the newer state")
	}
	if !s.apply(name, &img, false, mA, before) {
		t.Fatal("stale read equal to the newer state not taken")
	}
	s.drop(name)

	// A fresh read applies; absence from a fresh read drops.
	if !s.apply(name, &img, false, mA, s.version()) {
		t.Fatal("fresh read not applied")
	}
	if _, err := s.resolve(name); err != nil {
		t.Fatal(err)
	}
	if !s.apply(name, nil, false, "", s.version()) {
		t.Fatal("fresh absence not applied")
	}
	if _, ok := s.byID(idA); ok {
		t.Fatal("image kept after its only name went")
	}

	// Changes to other names do not invalidate a read.
	v := s.version()
	s.put("other:1", Image{ID: idB}, false, mB)
	if !s.apply(name, &img, false, mA, v) {
		t.Fatal("unrelated change invalidated the read")
	}
	if got := s.allNames(); got[name] != mA || got["other:1"] != mB {
		t.Errorf("allNames = %v", got)
	}
}

func TestStoreInfoByTarget(t *testing.T) {
	s := testStore()
	if img, ok := s.infoByTarget(mA); !ok || (img.ID != idA && img.ID != idC) || img.References != nil {
		t.Errorf("infoByTarget(mA) = %+v, %v", img, ok)
	}
	if img, ok := s.infoByTarget(mB); !ok || img.ID != idB {
		t.Errorf("infoByTarget(mB) = %+v, %v", img, ok)
	}
	// Image C's only name moves to mB: mA is image A's alone.
	s.put("quay.io/x/y:z", Image{ID: idC}, false, mB)
	for _, n := range []string{idA, "docker.io/library/busybox:latest", "docker.io/library/busybox:1.36"} {
		s.drop(n)
		if img, ok := s.infoByTarget(mA); !ok || img.ID != idA {
			t.Fatalf("after dropping %s: infoByTarget(mA) = %+v, %v", n, img, ok)
		}
	}
	s.drop("docker.io/library/busybox@" + mA)
	if img, ok := s.infoByTarget(mA); ok {
		t.Errorf("infoByTarget(mA) with no name left = %+v", img)
	}
	if len(s.byTarget) != 1 || len(s.byTarget[mB]) != 2 {
		t.Errorf("target index %v, want mB -> {B, C}", s.byTarget)
	}
	if tg, ok := s.target("registry.k8s.io/pause:3.10"); !ok || tg != mB {
		t.Errorf("target(pause) = %q, %v", tg, ok)
	}
}
