package server

import "testing"

// TestControllersBuiltOnce: the handlers share one sandbox and one
// container controller (they were built anew on every call).
func TestControllersBuiltOnce(t *testing.T) {
	e := newTestEnv(t)
	if a, b := e.s.sandboxController(), e.s.sandboxController(); a != b {
		t.Error("sandbox controller built more than once")
	}
	if a, b := e.s.ctrs(), e.s.ctrs(); a != b {
		t.Error("container controller built more than once")
	}
}
