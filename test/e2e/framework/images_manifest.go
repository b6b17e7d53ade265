package framework

import (
	"encoding/json"
	"os"
	"testing"
)

// ImagesManifest is the JSON manifest test/e2e/images writes
// ($IMAGES_MANIFEST): what it pushed to the local registry.
type ImagesManifest struct {
	Registry string `json:"registry"`
	Images   []struct {
		Upstream  []string `json:"upstream"`
		Local     []string `json:"local"`
		Digest    string   `json:"digest"`
		MediaType string   `json:"mediaType"`
		About     string   `json:"about"`
	} `json:"images"`
}

// LoadImagesManifest reads the manifest at path.
func LoadImagesManifest(t testing.TB, path string) ImagesManifest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("e2e images manifest not readable (push the test images first): %v", err)
	}
	var m ImagesManifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	return m
}

// Digest returns the manifest digest pushed for an upstream reference.
func (m ImagesManifest) Digest(upstream string) (string, bool) {
	for _, e := range m.Images {
		for _, u := range e.Upstream {
			if u == upstream {
				return e.Digest, true
			}
		}
	}
	return "", false
}
