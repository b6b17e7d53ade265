package server

import (
	"strconv"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidatePort(t *testing.T) {
	for _, p := range []int32{0, -1, 65536} {
		if err := validatePort(p); !errdefs.IsInvalidArgument(err) {
			t.Errorf("port %d: %v", p, err)
		}
	}
	for _, p := range []int32{1, 80, 65535} {
		if err := validatePort(p); err != nil {
			t.Errorf("port %s: %v", strconv.Itoa(int(p)), err)
		}
	}
}
