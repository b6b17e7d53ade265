// Package extension decodes the typed extensions cri-containerd stores on
// containerd container records (sandbox and container metadata), for the
// daemon's recovery and for doctor alike.
package extension

import (
	"fmt"

	"github.com/containerd/typeurl/v2"
)

// Decode returns extension name of a record's extensions as a *T.
func Decode[T any](exts map[string]typeurl.Any, name string) (*T, error) {
	a, ok := exts[name]
	if !ok {
		return nil, fmt.Errorf("no %s extension", name)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", name, err)
	}
	md, ok := v.(*T)
	if !ok {
		return nil, fmt.Errorf("extension %s has unexpected type %T", name, v)
	}
	return md, nil
}
