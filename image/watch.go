package image

import (
	"context"
	"fmt"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/typeurl/v2"
	"k8s.io/klog/v2"
)

// Watch keeps the cache in step with image records that others change in
// containerd (ctr, another client): it follows containerd's /images/ events
// for the namespace and, after every (re)subscription, reconciles the whole
// cache with containerd to cover events missed while disconnected. It
// returns when ctx (which must carry the namespace) is done.
func (s *Service) Watch(ctx context.Context) {
	filter := fmt.Sprintf(`topic~="/images/",namespace==%q`, s.opts.Namespace)
	backoff := time.Second
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		evCh, errCh := s.client.Subscribe(sctx, filter)
		if err := s.resync(ctx); err != nil {
			klog.ErrorS(err, "Failed to reconcile image cache with containerd")
		}
		err := s.follow(ctx, evCh, errCh)
		cancel()
		if ctx.Err() != nil {
			return
		}
		klog.ErrorS(err, "Image event stream from containerd ended; resubscribing", "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (s *Service) follow(ctx context.Context, evCh <-chan *events.Envelope, errCh <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errCh:
			return err
		case e, ok := <-evCh:
			if !ok {
				return fmt.Errorf("event channel closed")
			}
			s.handleEvent(ctx, e)
		}
	}
}

func (s *Service) handleEvent(ctx context.Context, e *events.Envelope) {
	if e == nil || e.Event == nil {
		return
	}
	v, err := typeurl.UnmarshalAny(e.Event)
	if err != nil {
		klog.V(4).InfoS("Ignoring undecodable image event", "topic", e.Topic, "err", err)
		return
	}
	var name string
	switch ev := v.(type) {
	case *eventtypes.ImageCreate:
		name = ev.Name
	case *eventtypes.ImageUpdate:
		name = ev.Name
	case *eventtypes.ImageDelete:
		name = ev.Name
	default:
		return
	}
	klog.V(4).InfoS("Image event", "topic", e.Topic, "name", name)
	if err := s.refreshName(ctx, name); err != nil {
		klog.V(2).InfoS("Failed to update image cache from event", "topic", e.Topic, "name", name, "err", err)
	}
	s.invalidateFsInfo()
}

// resync reconciles the cache with containerd's records.
func (s *Service) resync(ctx context.Context) error {
	recs, err := s.images.List(ctx)
	if err != nil {
		return err
	}
	cached := s.store.allNames()
	present := make(map[string]bool, len(recs))
	for _, r := range recs {
		present[r.Name] = true
		if t, ok := cached[r.Name]; ok && t == r.Target.Digest.String() {
			continue
		}
		if err := s.refreshName(ctx, r.Name); err != nil {
			klog.V(2).InfoS("Skipping image record", "name", r.Name, "err", err)
		}
	}
	for n := range cached {
		if !present[n] {
			s.store.drop(n)
		}
	}
	return nil
}
