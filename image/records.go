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
	"github.com/opencontainers/image-spec/identity"
	"k8s.io/klog/v2"
)

// createOrUpdateRecord makes the containerd image record name point at the
// target of img, carrying labels (merged into existing labels).
func (s *Service) createOrUpdateRecord(ctx context.Context, name string, img containerd.Image, labels map[string]string) error {
	is := s.client.ImageService()
	rec := images.Image{Name: name, Target: img.Target(), Labels: labels}
	if _, err := is.Create(ctx, rec); err == nil || !errdefs.IsAlreadyExists(err) {
		return err
	}
	old, err := is.Get(ctx, name)
	if err != nil {
		return err
	}
	var paths []string
	if old.Target.Digest != rec.Target.Digest || old.Target.MediaType != rec.Target.MediaType || old.Target.Size != rec.Target.Size {
		paths = append(paths, "target")
	}
	for k, v := range labels {
		if old.Labels[k] != v {
			paths = append(paths, "labels."+k)
		}
	}
	if len(paths) == 0 {
		return nil
	}
	_, err = is.Update(ctx, rec, paths...)
	return err
}

// refreshName re-reads the containerd record name and updates the cache:
// gone from containerd means gone from the cache. Refreshes of one name may
// race (pull, remove, events); a refresh whose read is older than a change
// applied meanwhile reads again, so the cache ends on containerd's latest
// state.
func (s *Service) refreshName(ctx context.Context, name string) error {
	for attempt := 0; ; attempt++ {
		since := s.store.version()
		rec, err := s.client.ImageService().Get(ctx, name)
		if err != nil {
			if !errdefs.IsNotFound(err) {
				return err
			}
			if s.store.apply(name, nil, false, "", since) || attempt >= 5 {
				return nil
			}
			continue
		}
		img, err := s.imageInfo(ctx, rec)
		if err != nil {
			return err
		}
		if s.store.apply(name, &img, rec.Labels[PinnedLabelKey] == PinnedLabelValue, rec.Target.Digest.String(), since) || attempt >= 5 {
			return nil
		}
	}
}

// imageInfo reads the ID-level facts of a record's image (config, chain ID,
// size) for the default platform.
func (s *Service) imageInfo(ctx context.Context, rec images.Image) (Image, error) {
	ci := containerd.NewImageWithPlatform(s.client, rec, platforms.Default())
	configDesc, err := ci.Config(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("reading config descriptor of %q: %w", rec.Name, err)
	}
	id := configDesc.Digest.String()
	if cached, ok := s.store.byID(id); ok && s.store.hasTarget(id, rec.Target.Digest.String()) {
		return cached, nil
	}
	spec, err := ci.Spec(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("reading config of %q: %w", rec.Name, err)
	}
	diffIDs, err := ci.RootFS(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("reading rootfs of %q: %w", rec.Name, err)
	}
	size, err := ci.Size(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("computing size of %q: %w", rec.Name, err)
	}
	return Image{
		ID:      id,
		ChainID: identity.ChainID(diffIDs).String(),
		Size:    size,
		Config:  spec,
	}, nil
}

// Recover rebuilds the cache from containerd's image records in the
// namespace. Images whose content is incomplete are skipped (a pull that
// died half way); images missing the managed label (imported by other
// tools) are adopted: they get the label and an ID record, as containerd's
// CRI does; images not unpacked into the default snapshotter are unpacked.
func (s *Service) Recover(ctx context.Context) error {
	start := time.Now()
	recs, err := s.client.ImageService().List(ctx)
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
	info, err := s.imageInfo(ctx, first)
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
			if err := s.createOrUpdateRecord(ctx, r.Name, containerd.NewImage(s.client, r), labels); err != nil {
				klog.ErrorS(err, "Failed to label image as managed", "image", r.Name)
			}
			adopted = true
		}
		s.store.put(r.Name, info, r.Labels[PinnedLabelKey] == PinnedLabelValue, r.Target.Digest.String())
	}
	if adopted {
		if err := s.createOrUpdateRecord(ctx, info.ID, ci, map[string]string{ImageLabelKey: ImageLabelValue}); err != nil {
			klog.ErrorS(err, "Failed to create image ID record", "image", first.Name, "id", info.ID)
		} else {
			s.store.put(info.ID, info, false, first.Target.Digest.String())
		}
	}
}

// Remove removes the image (given by ID or any reference) with every name it
// has in containerd: the names this cache knows and any other record with
// the same target. The last deletion is synchronous so that containerd
// garbage-collects content and snapshots before Remove returns. Absent
// images are not an error.
func (s *Service) Remove(ctx context.Context, id string) error {
	img, err := s.store.resolve(id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	is := s.client.ImageService()
	names := map[string]bool{}
	for _, n := range s.store.names(img.ID) {
		names[n] = true
	}
	for _, t := range s.store.targets(img.ID) {
		recs, err := is.List(ctx, fmt.Sprintf("target.digest==%s", t))
		if err != nil {
			return fmt.Errorf("listing records of image %s: %w", img.ID, err)
		}
		for _, r := range recs {
			names[r.Name] = true
		}
	}
	ordered := make([]string, 0, len(names))
	for n := range names {
		ordered = append(ordered, n)
	}
	sort.Strings(ordered)
	for i, n := range ordered {
		var opts []images.DeleteOpt
		if i == len(ordered)-1 {
			opts = append(opts, images.SynchronousDelete())
		}
		if err := is.Delete(ctx, n, opts...); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("removing name %q of image %s: %w", n, img.ID, err)
		}
		s.store.drop(n)
	}
	s.invalidateFsInfo()
	klog.V(2).InfoS("Removed image", "id", img.ID, "names", ordered)
	return nil
}
