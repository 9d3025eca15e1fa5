package telemetry

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// CheckOTLPEndpoint reports why endpoint cannot be NewOTLPTracerProvider's (nil when it can, ""
// included): a URL must be http or https with a host, "host:port" must have both.
func CheckOTLPEndpoint(endpoint string) error {
	switch {
	case endpoint == "":
		return nil
	case strings.Contains(endpoint, "://"):
		u, err := url.Parse(endpoint)
		if err != nil {
			return fmt.Errorf("OTLP endpoint %q: %w", endpoint, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("OTLP endpoint %q: want http://HOST:PORT, https://HOST:PORT or HOST:PORT", endpoint)
		}
	default:
		if host, port, err := net.SplitHostPort(endpoint); err != nil || host == "" || port == "" {
			return fmt.Errorf("OTLP endpoint %q: want http://HOST:PORT, https://HOST:PORT or HOST:PORT", endpoint)
		}
	}
	return nil
}

// NewOTLPTracerProvider returns a tracer provider that batches spans to an OTLP gRPC collector.
// endpoint is a URL ("http://127.0.0.1:4317"; http means no TLS) or "host:port" (TLS); "" takes
// the standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT variables. The
// caller shuts the provider down, which flushes the spans.
func NewOTLPTracerProvider(ctx context.Context, endpoint string) (*sdktrace.TracerProvider, error) {
	if err := CheckOTLPEndpoint(endpoint); err != nil {
		return nil, err
	}
	var opts []otlptracegrpc.Option
	switch {
	case strings.Contains(endpoint, "://"):
		opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
	case endpoint != "":
		opts = append(opts, otlptracegrpc.WithEndpoint(endpoint))
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter for %q: %w", endpoint, err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "mcpgate-extproc"))
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
