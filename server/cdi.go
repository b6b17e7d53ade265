package server

import (
	"errors"

	"k8s.io/klog/v2"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/cri-containerd/cri-containerd/config"
)

// newCDICache is the CDI device registry over cfg.CDISpecDirs, refreshed
// when a spec file changes (nil when CDI is disabled). Spec files that
// cannot be parsed are logged, not fatal: the devices of the others work.
func newCDICache(cfg config.Config) *cdi.Cache {
	if !cfg.EnableCDI {
		return nil
	}
	cache, _ := cdi.NewCache(cdi.WithSpecDirs(cfg.CDISpecDirs...), cdi.WithAutoRefresh(true)) // never fails
	for path, errs := range cache.GetErrors() {
		klog.ErrorS(errors.Join(errs...), "CDI spec file not loaded", "path", path)
	}
	klog.InfoS("CDI enabled", "dirs", cfg.CDISpecDirs, "devices", len(cache.ListDevices()))
	return cache
}
