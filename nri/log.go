package nri

import (
	"context"
	"fmt"
	"sync"

	nrilog "github.com/containerd/nri/pkg/log"
	"k8s.io/klog/v2"
)

// klogger sends the NRI library's logging to klog.
type klogger struct{}

func (klogger) Debugf(_ context.Context, format string, args ...any) {
	klog.V(4).InfoS("NRI: " + fmt.Sprintf(format, args...))
}

func (klogger) Infof(_ context.Context, format string, args ...any) {
	klog.V(2).InfoS("NRI: " + fmt.Sprintf(format, args...))
}

func (klogger) Warnf(_ context.Context, format string, args ...any) {
	klog.InfoS("NRI warning: " + fmt.Sprintf(format, args...))
}

func (klogger) Errorf(_ context.Context, format string, args ...any) {
	klog.ErrorS(nil, "NRI: "+fmt.Sprintf(format, args...))
}

var setLoggerOnce sync.Once

// setLogger installs klogger as the NRI library's (process-wide) logger.
func setLogger() { setLoggerOnce.Do(func() { nrilog.Set(klogger{}) }) }
