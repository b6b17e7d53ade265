package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/registrar"
	"github.com/cri-containerd/cri-containerd/spec"
)

// Options is what a Controller works with. Everything external goes
// through Deps; the server keeps the CRI events and metrics and hears of
// them through the callbacks.
type Options struct {
	Config config.Config
	Deps   backend.Deps
	// Store and Names are the sandboxes and their reserved CRI names.
	Store *Store
	Names *registrar.Registrar
	// SpecGen builds the pause container's OCI spec.
	SpecGen *spec.Generator
	// Hooks are told of a pod before it is visible (NRI); nil: none.
	Hooks Hooks
	// RestrictOOMScoreAdj clamps oom_score_adj to the daemon's own.
	RestrictOOMScoreAdj bool
	// PodCIDRs are the node's pod CIDRs of the moment (may be nil).
	PodCIDRs func() []string
	// ObserveCNI, when set, is told of each CNI call (op "setup"/"teardown").
	ObserveCNI func(op string, start time.Time, err error)
	// OnEvent, when set, is told of each lifecycle change of a sandbox.
	OnEvent func(sb *Sandbox, kind runtimeapi.ContainerEventType)
}

// Controller owns the lifecycle of pod sandboxes: create and start (Run).
type Controller struct {
	o Options
}

// NewController is a controller working with o.
func NewController(o Options) *Controller {
	return &Controller{o: o}
}

func (c *Controller) podCIDRs() []string {
	if c.o.PodCIDRs == nil {
		return nil
	}
	return c.o.PodCIDRs()
}

func (c *Controller) observeCNI(op string, start time.Time, err error) {
	if c.o.ObserveCNI != nil {
		c.o.ObserveCNI(op, start, err)
	}
}

func (c *Controller) emit(sb *Sandbox, kind runtimeapi.ContainerEventType) {
	if c.o.OnEvent != nil {
		c.o.OnEvent(sb, kind)
	}
}

// NewID is a new random sandbox or container ID (64 hex digits).
func NewID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Name is the unique CRI name of a pod sandbox.
func Name(md *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{md.GetName(), md.GetNamespace(), md.GetUid(), fmt.Sprint(md.GetAttempt())}, "_")
}

// Annotations are the CRI annotations of a pause container's spec.
func Annotations(id string, cfg *runtimeapi.PodSandboxConfig) map[string]string {
	return map[string]string{
		"io.kubernetes.cri.container-type":        "sandbox",
		"io.kubernetes.cri.sandbox-id":            id,
		"io.kubernetes.cri.sandbox-name":          cfg.GetMetadata().GetName(),
		"io.kubernetes.cri.sandbox-namespace":     cfg.GetMetadata().GetNamespace(),
		"io.kubernetes.cri.sandbox-uid":           cfg.GetMetadata().GetUid(),
		"io.kubernetes.cri.sandbox-log-directory": cfg.GetLogDirectory(),
	}
}
