package image

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/klog/v2"
)

// createOrUpdateRecord makes the containerd image record name point at
// target, carrying labels (merged into existing labels), and returns the
// record as it is now. A name the cache knows is read first (re-pulls find
// it as wanted: one read, no write); others are created first.
func (s *Service) createOrUpdateRecord(ctx context.Context, name string, target ocispec.Descriptor, labels map[string]string) (images.Image, error) {
	rec := images.Image{Name: name, Target: target, Labels: labels}
	_, known := s.store.target(name)
	for attempt := 0; ; attempt++ {
		if !known {
			created, err := s.images.Create(ctx, rec)
			if err == nil || !errdefs.IsAlreadyExists(err) || attempt >= 3 {
				return created, err
			}
		}
		known = false
		old, err := s.images.Get(ctx, name)
		if errdefs.IsNotFound(err) && attempt < 3 {
			continue // removed meanwhile (or never there): create it
		}
		if err != nil {
			return images.Image{}, err
		}
		var paths []string
		if old.Target.Digest != target.Digest || old.Target.MediaType != target.MediaType || old.Target.Size != target.Size {
			paths = append(paths, "target")
		}
		for k, v := range labels {
			if old.Labels[k] != v {
				paths = append(paths, "labels."+k)
			}
		}
		if len(paths) == 0 {
			return old, nil
		}
		updated, err := s.images.Update(ctx, rec, paths...)
		if errdefs.IsNotFound(err) && attempt < 3 {
			continue
		}
		return updated, err
	}
}

// hasLabels reports whether rec carries every label of labels.
func hasLabels(rec images.Image, labels map[string]string) bool {
	for k, v := range labels {
		if rec.Labels[k] != v {
			return false
		}
	}
	return true
}

// refreshName re-reads the containerd record name and updates the cache:
// gone from containerd means gone from the cache. Refreshes of one name may
// race (pull, remove, events); a refresh whose read is older than a change
// applied meanwhile reads again, so the cache ends on containerd's latest
// state.
func (s *Service) refreshName(ctx context.Context, name string) error {
	for attempt := 0; ; attempt++ {
		since := s.store.version()
		rec, err := s.images.Get(ctx, name)
		if err != nil {
			if !errdefs.IsNotFound(err) {
				return err
			}
			if s.store.apply(name, nil, false, "", since) || attempt >= 5 {
				return nil
			}
			continue
		}
		img, err := s.imageInfo(ctx, rec.Name, rec.Target, false)
		if err != nil {
			return err
		}
		if s.store.apply(name, &img, rec.Labels[PinnedLabelKey] == PinnedLabelValue, rec.Target.Digest.String(), since) || attempt >= 5 {
			return nil
		}
	}
}

// Recover rebuilds the cache from containerd's image records in the
// namespace. Images whose content is incomplete are skipped (a pull that
// died half way); images missing the managed label (imported by other
// tools) are adopted: they get the label and an ID record, as containerd's
// CRI does; images not unpacked into the default snapshotter are unpacked.
func (s *Service) Recover(ctx context.Context) error {
	start := time.Now()
	if s.client != nil {
		// Pulls and creates of a killed daemon left their leases behind.
		if _, err := RemoveTemporaryLeases(ctx, s.client.LeasesService()); err != nil {
			klog.ErrorS(err, "Removing temporary leases of a previous run")
		}
	}
	recs, err := s.images.List(ctx)
	if err != nil {
		return fmt.Errorf("listing images in containerd: %w", err)
	}
	// Records sharing a target share all the work; handle each target once.
	byTarget := map[string][]images.Image{}
	var targets []string
	for _, r := range recs {
		d := r.Target.Digest.String()
		if _, ok := byTarget[d]; !ok {
			targets = append(targets, d)
		}
		byTarget[d] = append(byTarget[d], r)
	}
	sort.Strings(targets)

	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, d := range targets {
		group := byTarget[d]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.recoverTarget(ctx, group)
		})
	}
	wg.Wait()
	klog.InfoS("Recovered images from containerd", "records", len(recs), "images", len(s.store.list()), "duration", time.Since(start))
	return nil
}

func (s *Service) recoverTarget(ctx context.Context, recs []images.Image) {
	first := recs[0]
	ci := containerd.NewImageWithPlatform(s.client, first, platforms.Default())
	ok, _, _, missing, err := images.Check(ctx, ci.ContentStore(), first.Target, platforms.Default())
	if err != nil || !ok {
		klog.InfoS("Skipping image with incomplete content", "image", first.Name, "missing", len(missing), "err", err)
		return
	}
	info, err := s.imageInfo(ctx, first.Name, first.Target, false)
	if err != nil {
		klog.ErrorS(err, "Skipping unreadable image", "image", first.Name)
		return
	}
	if unpacked, err := ci.IsUnpacked(ctx, s.opts.Snapshotter); err == nil && !unpacked {
		klog.InfoS("Unpacking recovered image", "image", first.Name, "snapshotter", s.opts.Snapshotter)
		if err := ci.Unpack(ctx, s.opts.Snapshotter); err != nil {
			klog.ErrorS(err, "Failed to unpack recovered image", "image", first.Name)
		}
	}
	adopted := false
	for _, r := range recs {
		if r.Labels[ImageLabelKey] != ImageLabelValue {
			labels := map[string]string{ImageLabelKey: ImageLabelValue}
			if _, err := s.createOrUpdateRecord(ctx, r.Name, r.Target, labels); err != nil {
				klog.ErrorS(err, "Failed to label image as managed", "image", r.Name)
			}
			adopted = true
		}
		s.store.put(r.Name, info, r.Labels[PinnedLabelKey] == PinnedLabelValue, r.Target.Digest.String())
	}
	if adopted {
		if _, err := s.createOrUpdateRecord(ctx, info.ID, first.Target, map[string]string{ImageLabelKey: ImageLabelValue}); err != nil {
			klog.ErrorS(err, "Failed to create image ID record", "image", first.Name, "id", info.ID)
		} else {
			s.store.put(info.ID, info, false, first.Target.Digest.String())
		}
	}
}

// Remove removes the image (given by ID or any reference) with every name it
// has in containerd: the names this cache knows and any other record with
// the same target (listed while the known names are being deleted). As in
// containerd's CRI, only the last deletion is synchronous, so that
// containerd garbage-collects content and snapshots before Remove returns.
// Absent images are not an error.
func (s *Service) Remove(ctx context.Context, id string) error {
	img, err := s.store.resolve(id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	known := s.store.names(img.ID) // sorted
	if len(known) == 0 {
		return nil
	}
	targets := s.store.targets(img.ID)
	last := known[len(known)-1]

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		deleted = map[string]uint64{} // name -> store version before its deletion
		others  []string              // names of the targets the cache does not know
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	del := func(n string, opts ...images.DeleteOpt) {
		since := s.store.version()
		if err := s.images.Delete(ctx, n, opts...); err != nil && !errdefs.IsNotFound(err) {
			fail(fmt.Errorf("removing name %q of image %s: %w", n, img.ID, err))
			return
		}
		mu.Lock()
		deleted[n] = since
		mu.Unlock()
	}
	wg.Go(func() {
		isKnown := map[string]bool{}
		for _, n := range known {
			isKnown[n] = true
		}
		for _, t := range targets {
			recs, err := s.images.List(ctx, fmt.Sprintf("target.digest==%s", t))
			if err != nil {
				fail(fmt.Errorf("listing records of image %s: %w", img.ID, err))
				return
			}
			for _, r := range recs {
				if !isKnown[r.Name] {
					isKnown[r.Name] = true
					others = append(others, r.Name)
				}
			}
		}
	})
	for _, n := range known[:len(known)-1] {
		wg.Go(func() { del(n) })
	}
	wg.Wait()
	for _, n := range others {
		wg.Go(func() { del(n) })
	}
	wg.Wait()
	if len(errs) == 0 {
		del(last, images.SynchronousDelete())
	}
	// The cache follows what was deleted, unless a name changed in the
	// cache during its deletion (then it is read again).
	names := append(append([]string(nil), known...), others...)
	sort.Strings(names)
	for _, n := range names {
		since, ok := deleted[n]
		if !ok {
			continue
		}
		if !s.store.apply(n, nil, false, "", since) {
			if err := s.refreshName(ctx, n); err != nil {
				klog.V(2).InfoS("Failed to update image cache after removal", "name", n, "err", err)
			}
		}
	}
	s.invalidateFsInfo()
	if len(errs) > 0 {
		return errs[0]
	}
	klog.V(2).InfoS("Removed image", "id", img.ID, "names", names)
	return nil
}
