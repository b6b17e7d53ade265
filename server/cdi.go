package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/cri-containerd/cri-containerd/config"
)

// cdiPollInterval is how often the CDI spec dirs are rescanned when no
// inotify watcher can be made (too many instances, say).
const cdiPollInterval = 5 * time.Second

// newCDICache is the CDI device registry over cfg.CDISpecDirs (nil when CDI
// is disabled). Spec files that cannot be parsed are logged, not fatal: the
// devices of the others work. The library's own auto-refresh is off: its
// watcher goroutine could be neither cancelled nor joined; watchCDI refreshes
// the cache instead, as one of the Service's background goroutines.
func newCDICache(cfg config.Config) *cdi.Cache {
	if !cfg.EnableCDI {
		return nil
	}
	cache, _ := cdi.NewCache(cdi.WithSpecDirs(cfg.CDISpecDirs...), cdi.WithAutoRefresh(false)) // never fails
	for path, errs := range cache.GetErrors() {
		klog.ErrorS(errors.Join(errs...), "CDI spec file not loaded", "path", path)
	}
	klog.InfoS("CDI enabled", "dirs", cfg.CDISpecDirs, "devices", len(cache.ListDevices()))
	return cache
}

// watchCDI adds the watcher of the CDI spec dirs to the Service's
// background goroutines (nothing when CDI is disabled).
func (s *Service) watchCDI(cache *cdi.Cache) {
	if cache == nil {
		return
	}
	dirs := cache.GetSpecDirectories()
	s.watchers = append(s.watchers, func(ctx context.Context) { watchCDISpecDirs(ctx, cache, dirs) })
}

// watchCDISpecDirs refreshes cache whenever a spec file in dirs is created,
// written, renamed or removed, until ctx ends. A spec dir that does not
// exist (yet) is picked up when it is created: its nearest existing parent
// is watched meanwhile.
func watchCDISpecDirs(ctx context.Context, cache *cdi.Cache, dirs []string) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		klog.ErrorS(err, "Cannot watch the CDI spec dirs; rescanning them periodically", "interval", cdiPollInterval)
		t := time.NewTicker(cdiPollInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				refreshCDI(cache)
			}
		}
	}
	defer fsw.Close()
	w := &cdiDirWatch{fsw: fsw, dirs: dirs, watched: map[string]bool{}, parents: map[string]bool{}}
	if w.sync() {
		refreshCDI(cache) // a dir appeared since the cache was made
	}
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-fsw.Errors:
			if !ok {
				return
			}
			klog.ErrorS(err, "Watching the CDI spec dirs")
		case ev, ok := <-fsw.Events:
			if !ok {
				return
			}
			if w.changed(ev) {
				refreshCDI(cache)
			}
		}
	}
}

func refreshCDI(cache *cdi.Cache) {
	if err := cache.Refresh(); err != nil {
		klog.ErrorS(err, "CDI spec files not loaded")
	}
	klog.V(2).InfoS("CDI spec dirs rescanned", "devices", len(cache.ListDevices()))
}

// cdiDirWatch tracks the inotify watches of the CDI spec dirs and of the
// parents of those missing.
type cdiDirWatch struct {
	fsw     *fsnotify.Watcher
	dirs    []string
	watched map[string]bool // spec dirs watched
	parents map[string]bool // parents watched for a missing spec dir
}

// sync watches every spec dir that exists, and the nearest existing parent
// of each that does not. It reports whether a dir became watched.
func (w *cdiDirWatch) sync() bool {
	added, missing, newParent := false, false, false
	for _, d := range w.dirs {
		if w.watched[d] {
			continue
		}
		if err := w.fsw.Add(d); err == nil {
			w.watched[d], added = true, true
			continue
		}
		missing = true
		for p := filepath.Dir(d); ; p = filepath.Dir(p) {
			if w.parents[p] {
				break
			}
			if fi, err := os.Stat(p); err == nil && fi.IsDir() && w.fsw.Add(p) == nil {
				w.parents[p], newParent = true, true
				break
			}
			if p == filepath.Dir(p) {
				break
			}
		}
	}
	if newParent && w.sync() {
		// What was created below a parent before its watch existed sent no
		// event: look again now that the watch is in place.
		added = true
	}
	if !missing {
		for p := range w.parents {
			if !w.isSpecDir(p) {
				_ = w.fsw.Remove(p)
			}
			delete(w.parents, p)
		}
	}
	return added
}

func (w *cdiDirWatch) isSpecDir(p string) bool {
	for _, d := range w.dirs {
		if d == p {
			return true
		}
	}
	return false
}

// changed updates the watches after ev and reports whether the cache must
// be refreshed.
func (w *cdiDirWatch) changed(ev fsnotify.Event) bool {
	if !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Rename) && !ev.Has(fsnotify.Remove) {
		return false
	}
	if w.isSpecDir(ev.Name) {
		// The dir itself went (or came back in a parent's watch).
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			_ = w.fsw.Remove(ev.Name)
			w.watched[ev.Name] = false
		}
		w.sync()
		return true
	}
	if len(w.parents) > 0 && ev.Has(fsnotify.Create) {
		for _, d := range w.dirs {
			if !w.watched[d] && (d == ev.Name || strings.HasPrefix(d, ev.Name+string(filepath.Separator))) {
				return w.sync()
			}
		}
	}
	if !w.watched[filepath.Dir(ev.Name)] {
		return false // an event of a watched parent
	}
	ext := filepath.Ext(ev.Name)
	return ext == ".json" || ext == ".yaml"
}
