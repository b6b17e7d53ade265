package server

import (
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/sandbox"
)

const runtimeapiStopped = runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT

// eventBroadcaster fans container lifecycle events out to GetContainerEvents
// streams. A subscriber that cannot keep up loses events rather than
// blocking the runtime.
type eventBroadcaster struct {
	mu   sync.Mutex
	subs map[chan *runtimeapi.ContainerEventResponse]struct{}
}

func newEventBroadcaster() *eventBroadcaster {
	return &eventBroadcaster{subs: map[chan *runtimeapi.ContainerEventResponse]struct{}{}}
}

func (b *eventBroadcaster) subscribe() (chan *runtimeapi.ContainerEventResponse, func()) {
	ch := make(chan *runtimeapi.ContainerEventResponse, 1000)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}

func (b *eventBroadcaster) publish(e *runtimeapi.ContainerEventResponse) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
			klog.V(2).InfoS("Dropping container event for slow subscriber", "containerID", e.ContainerId)
		}
	}
}

// GetContainerEvents streams container and sandbox lifecycle events (evented PLEG).
func (s *Service) GetContainerEvents(r *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	ch, cancel := s.events.subscribe()
	defer cancel()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case <-s.bg.Stopping(): // the daemon stops: end the stream
			return nil
		case e := <-ch:
			if err := stream.Send(e); err != nil {
				return err
			}
		}
	}
}

func (s *Service) emitSandboxEvent(sb *sandbox.Sandbox, t runtimeapi.ContainerEventType) {
	s.samplePodEvent(sb, t)
	if s.events == nil {
		return
	}
	s.events.publish(&runtimeapi.ContainerEventResponse{
		ContainerId:        sb.ID,
		ContainerEventType: t,
		CreatedAt:          time.Now().UnixNano(),
		PodSandboxStatus:   sandboxStatus(sb),
		ContainersStatuses: s.sandboxContainerStatuses(sb.ID),
	})
}
