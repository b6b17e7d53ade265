package image

import (
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
)

// ListFiltered applies the CRI ListImages filter (ImageFilter.Image.Image).
// An empty filter returns every image. A filter naming an image (ID, short
// ID, tag or digest reference) returns that image; a bare repository name
// ("busybox", "registry.k8s.io/pause") that is not itself a known tag
// returns every image with a tag or digest in that repository. A malformed
// filter wraps errdefs.ErrInvalidArgument; an unknown one gives an empty list.
func (s *Service) ListFiltered(filter string) ([]Image, error) {
	return s.store.filter(filter)
}

func (s *store) filter(want string) ([]Image, error) {
	if want == "" {
		return s.list(), nil
	}
	img, err := s.resolve(want)
	if err == nil {
		return []Image{img}, nil
	}
	if !errdefs.IsNotFound(err) {
		return nil, err
	}
	named, perr := reference.ParseNormalizedNamed(want)
	if perr != nil || !reference.IsNameOnly(named) {
		return nil, nil
	}
	var out []Image
	for _, img := range s.list() {
		if inRepo(img, named.Name()) {
			out = append(out, img)
		}
	}
	return out, nil
}

func inRepo(img Image, repo string) bool {
	for _, names := range [][]string{img.RepoTags, img.RepoDigests} {
		for _, n := range names {
			if named, err := reference.ParseNormalizedNamed(n); err == nil && named.Name() == repo {
				return true
			}
		}
	}
	return false
}
