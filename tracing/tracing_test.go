package tracing

import (
	"context"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in       string
		hostport string
		insecure bool
		err      bool
	}{
		{in: "127.0.0.1:4317", hostport: "127.0.0.1:4317", insecure: true},
		{in: "http://collector:4317", hostport: "collector:4317", insecure: true},
		{in: "https://collector:4317", hostport: "collector:4317"},
		{in: "https://collector:4317/", hostport: "collector:4317"},
		{in: "grpc://collector:4317", err: true},
		{in: "http://collector:4317/v1/traces", err: true},
		{in: "http://", err: true},
		{in: "collector 4317", err: true},
		{in: "", err: true},
	} {
		hp, insecure, err := ParseEndpoint(tc.in)
		if (err != nil) != tc.err || hp != tc.hostport || insecure != tc.insecure {
			t.Errorf("ParseEndpoint(%q) = %q, %v, %v; want %q, %v (err %v)", tc.in, hp, insecure, err, tc.hostport, tc.insecure, tc.err)
		}
	}
}

func TestDisabledIsNoop(t *testing.T) {
	tr, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() || tr.ServerOptions() != nil || tr.DialOptions() != nil {
		t.Error("tracing without an endpoint must add nothing")
	}
	_, span := tr.Tracer("x").Start(context.Background(), "s")
	if span.SpanContext().IsValid() {
		t.Error("a disabled tracer made a real span")
	}
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	var nilTr *Tracing
	if nilTr.Enabled() || nilTr.Shutdown(context.Background()) != nil {
		t.Error("nil Tracing must be disabled")
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Endpoint: "127.0.0.1:4317", SamplingRatio: 1.5},
		{Endpoint: "ftp://x:1", SamplingRatio: 1},
	} {
		if _, err := New(context.Background(), cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	tr, err := New(context.Background(), Config{Endpoint: "127.0.0.1:1", SamplingRatio: 1})
	if err != nil || !tr.Enabled() || len(tr.ServerOptions()) != 1 || len(tr.DialOptions()) != 1 {
		t.Fatalf("enabled tracing: %v", err)
	}
	_ = tr.Shutdown(context.Background())
}
