package image

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	pulls      *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	bytes      prometheus.Counter
	inProgress prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cri_containerd_image_pulls_total",
			Help: "Image pulls, by result (success or failure).",
		}, []string{"result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cri_containerd_image_pull_duration_seconds",
			Help:    "Time to pull and unpack an image, by result.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cri_containerd_image_pull_bytes_total",
			Help: "Bytes received from registries by image pulls (cached layers are not fetched and not counted).",
		}),
		inProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cri_containerd_image_pulls_in_progress",
			Help: "Image pulls currently running.",
		}),
	}
	if reg != nil {
		m.pulls = register(reg, m.pulls)
		m.duration = register(reg, m.duration)
		m.bytes = register(reg, m.bytes)
		m.inProgress = register(reg, m.inProgress)
	}
	return m
}

// register registers c, reusing an identical collector registered earlier
// (a second Service on the same registry, as in tests).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
