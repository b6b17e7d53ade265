// Package tracing is the daemon's OpenTelemetry tracing: an OTLP/gRPC
// exporter, a sampler, and the gRPC stats handlers that make one span per
// CRI request (server side) with a child span per containerd call (client
// side, the W3C trace context propagated to containerd). Tracing is off
// unless an endpoint is configured. Nothing here is global: the provider is
// passed to whoever makes spans.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
)

// Config says where spans go.
type Config struct {
	// Endpoint of an OTLP/gRPC trace receiver: "host:port" or
	// "http://host:port" (plain text), "https://host:port" (TLS). Empty
	// disables tracing.
	Endpoint string
	// SamplingRatio of new traces, 0..1 (a request that carries a sampled
	// parent is always traced).
	SamplingRatio float64
	// ServiceName is the resource's service.name.
	ServiceName string
	// BatchTimeout bounds how long a finished span waits before export
	// (default 5s).
	BatchTimeout time.Duration
}

// Tracing is the daemon's tracer provider, or a no-op one when disabled.
type Tracing struct {
	provider   trace.TracerProvider
	sdk        *sdktrace.TracerProvider // nil when disabled
	propagator propagation.TextMapPropagator
}

// ParseEndpoint splits an endpoint into host:port and whether it is plain text.
func ParseEndpoint(endpoint string) (hostport string, insecure bool, err error) {
	if !strings.Contains(endpoint, "://") {
		if endpoint == "" || strings.ContainsAny(endpoint, "/ ") {
			return "", false, fmt.Errorf("tracing endpoint %q: want host:port or http(s)://host:port", endpoint)
		}
		return endpoint, true, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false, fmt.Errorf("tracing endpoint %q: %w", endpoint, err)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", false, fmt.Errorf("tracing endpoint %q: want http(s)://host:port", endpoint)
	}
	switch u.Scheme {
	case "http":
		return u.Host, true, nil
	case "https":
		return u.Host, false, nil
	}
	return "", false, fmt.Errorf("tracing endpoint %q: scheme must be http or https", endpoint)
}

// New sets up tracing as cfg says. The exporter connects lazily: an
// unreachable receiver never blocks the daemon (spans are dropped).
func New(ctx context.Context, cfg Config) (*Tracing, error) {
	t := &Tracing{
		provider:   noop.NewTracerProvider(),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	if cfg.Endpoint == "" {
		return t, nil
	}
	if cfg.SamplingRatio < 0 || cfg.SamplingRatio > 1 {
		return nil, fmt.Errorf("tracing sampling ratio %v is not within 0..1", cfg.SamplingRatio)
	}
	hostport, insecure, err := ParseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(hostport)}
	if insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP trace exporter for %s: %w", cfg.Endpoint, err)
	}
	name := cfg.ServiceName
	if name == "" {
		name = "cri-containerd"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(name)))
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	var batch []sdktrace.BatchSpanProcessorOption
	if cfg.BatchTimeout > 0 {
		batch = append(batch, sdktrace.WithBatchTimeout(cfg.BatchTimeout))
	}
	t.sdk = sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, batch...),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SamplingRatio))),
	)
	t.provider = t.sdk
	return t, nil
}

// Enabled reports whether spans are exported.
func (t *Tracing) Enabled() bool { return t != nil && t.sdk != nil }

// Tracer returns a named tracer (a no-op one when disabled).
func (t *Tracing) Tracer(name string) trace.Tracer {
	if t == nil {
		return noop.NewTracerProvider().Tracer(name)
	}
	return t.provider.Tracer(name)
}

// ServerOptions make one span per CRI request; none when disabled.
func (t *Tracing) ServerOptions() []grpc.ServerOption {
	if !t.Enabled() {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.provider), otelgrpc.WithPropagators(t.propagator)))}
}

// DialOptions make a child span per call on a client connection (containerd)
// and propagate the trace context in its metadata; none when disabled.
func (t *Tracing) DialOptions() []grpc.DialOption {
	if !t.Enabled() {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(t.provider), otelgrpc.WithPropagators(t.propagator)))}
}

// Shutdown exports what is buffered, within ctx.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.sdk.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("flushing traces: %w", err)
	}
	return nil
}
