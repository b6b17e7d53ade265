package main

import "testing"

func TestLocalRef(t *testing.T) {
	for in, want := range map[string]string{
		"registry.k8s.io/e2e-test-images/busybox:1.29-2":          "127.0.0.1:5000/e2e-test-images/busybox:1.29-2",
		"docker.io/library/busybox:latest":                        "127.0.0.1:5000/library/busybox:latest",
		"public.ecr.aws/docker/library/busybox:1-musl":            "127.0.0.1:5000/docker/library/busybox:1-musl",
		"gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest": "127.0.0.1:5000/k8s-staging-cri-tools/hostnet-nginx-amd64:latest",
		"k8s.gcr.io/pause:3.9":                                    "127.0.0.1:5000/pause:3.9",
	} {
		got, err := localRef("127.0.0.1:5000", in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got.String() != want {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
	}
}

func TestCatalogHasNoConflictingTags(t *testing.T) {
	seen := map[string]int{}
	for i, d := range catalog {
		if len(d.refs) == 0 || d.build == nil {
			t.Fatalf("catalog entry %d is incomplete", i)
		}
		for _, r := range d.refs {
			l, err := localRef("127.0.0.1:5000", r)
			if err != nil {
				t.Fatal(err)
			}
			if j, ok := seen[l.String()]; ok && j != i {
				// Only allowed when both entries are meant to be one image,
				// which the catalog expresses by listing both refs in one entry.
				t.Errorf("%s (entry %d) and entry %d map to the same local tag %s", r, i, j, l)
			}
			seen[l.String()] = i
		}
	}
}
