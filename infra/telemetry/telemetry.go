// Package telemetry builds a process's OpenTelemetry providers: traces
// (OTLP over gRPC or HTTP, stdout, or none, sampled by ratio) and metrics
// (exposed for Prometheus on /metrics through the OTel Prometheus
// exporter), plus a slog handler that stamps trace and span ids on every
// line logged inside a request. Libraries receive the providers; nothing
// here sets OTel globals.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Trace exporters.
const (
	ExporterNone     = "none"
	ExporterOTLPGRPC = "otlp-grpc"
	ExporterOTLPHTTP = "otlp-http"
	ExporterStdout   = "stdout"
)

// Config chooses exporters and sampling.
type Config struct {
	// ServiceName and ServiceVersion describe the process (resource).
	ServiceName    string
	ServiceVersion string
	// TraceExporter is none, otlp-grpc, otlp-http or stdout. The OTLP
	// exporters read the standard OTEL_EXPORTER_OTLP_* variables (endpoint,
	// headers, TLS); Endpoint overrides the endpoint.
	TraceExporter string
	Endpoint      string
	// SampleRatio of new traces kept, 0..1; a request's parent decides for
	// its children (parent-based sampling).
	SampleRatio float64
	// Stdout is where the stdout exporter writes (default os.Stdout).
	Stdout io.Writer
}

// Config errors.
var (
	ErrBadExporter = errors.New("telemetry: trace exporter must be none, otlp-grpc, otlp-http or stdout")
	ErrBadRatio    = errors.New("telemetry: sample ratio must be in [0, 1]")
)

// DefaultConfig reads the standard OTEL_* variables where they apply:
// OTEL_SERVICE_NAME replaces service;
// OTEL_TRACES_EXPORTER=otlp picks OTLP (OTEL_EXPORTER_OTLP_PROTOCOL
// http/protobuf picks HTTP), and an OTEL_EXPORTER_OTLP_ENDPOINT alone turns
// OTLP on.
func DefaultConfig(service string, getenv func(string) string) Config {
	c := Config{ServiceName: service, TraceExporter: ExporterNone, SampleRatio: 1}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		c.ServiceName = name
	}
	exporter := getenv("OTEL_TRACES_EXPORTER")
	if exporter == "" && getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
		exporter = "otlp"
	}
	switch exporter {
	case "otlp":
		c.TraceExporter = ExporterOTLPGRPC
		if strings.HasPrefix(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http") {
			c.TraceExporter = ExporterOTLPHTTP
		}
	case "console":
		c.TraceExporter = ExporterStdout
	}
	return c
}

// Validate reports the first problem.
func (c Config) Validate() error {
	switch c.TraceExporter {
	case ExporterNone, ExporterOTLPGRPC, ExporterOTLPHTTP, ExporterStdout:
	default:
		return fmt.Errorf("%w: %q", ErrBadExporter, c.TraceExporter)
	}
	if !(c.SampleRatio >= 0 && c.SampleRatio <= 1) {
		return ErrBadRatio
	}
	return nil
}

// Providers are a process's telemetry: pass them to every component.
type Providers struct {
	Tracer     trace.TracerProvider
	Meter      metric.MeterProvider
	Propagator propagation.TextMapPropagator

	registry *prometheus.Registry
	shutdown []func(context.Context) error
}

// New builds the providers; call Shutdown to flush them.
func New(ctx context.Context, cfg Config) (*Providers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(cfg.ServiceName),
		semconv.ServiceVersion(cfg.ServiceVersion),
	))
	if err != nil {
		return nil, err
	}
	p := &Providers{
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		registry:   prometheus.NewRegistry(),
	}
	p.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exporter, err := otelprom.New(otelprom.WithRegisterer(p.registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(exporter))
	p.Meter = mp
	p.shutdown = append(p.shutdown, mp.Shutdown)

	spanExporter, err := newSpanExporter(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if spanExporter == nil {
		p.Tracer = noop.NewTracerProvider()
		return p, nil
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithBatcher(spanExporter),
	)
	p.Tracer = tp
	p.shutdown = append(p.shutdown, tp.Shutdown)
	return p, nil
}

// NewForTest returns providers that record spans with sp (e.g. a
// tracetest.SpanRecorder) and keep every trace.
func NewForTest(sp sdktrace.SpanProcessor) *Providers {
	p := &Providers{
		Propagator: propagation.TraceContext{},
		registry:   prometheus.NewRegistry(),
	}
	exporter, err := otelprom.New(otelprom.WithRegisterer(p.registry), otelprom.WithoutScopeInfo())
	if err != nil {
		panic(err) // only a duplicate registration can fail, on a fresh registry
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	p.Meter, p.Tracer = mp, tp
	p.shutdown = []func(context.Context) error{mp.Shutdown, tp.Shutdown}
	return p
}

// Disabled returns providers that record nothing (metrics still serve an
// empty /metrics).
func Disabled() *Providers {
	p, err := New(context.Background(), Config{ServiceName: "hexride", TraceExporter: ExporterNone, SampleRatio: 1})
	if err != nil {
		panic(err)
	}
	return p
}

func newSpanExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	switch cfg.TraceExporter {
	case ExporterOTLPGRPC:
		var opts []otlptracegrpc.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpointURL(cfg.Endpoint)))
		}
		return otlptracegrpc.New(ctx, opts...)
	case ExporterOTLPHTTP:
		var opts []otlptracehttp.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(endpointURL(cfg.Endpoint)))
		}
		return otlptracehttp.New(ctx, opts...)
	case ExporterStdout:
		w := cfg.Stdout
		if w == nil {
			w = os.Stdout
		}
		return stdouttrace.New(stdouttrace.WithWriter(w))
	}
	return nil, nil
}

// endpointURL accepts host:port (plaintext, the local collector case) or a
// full URL.
func endpointURL(e string) string {
	if strings.Contains(e, "://") {
		return e
	}
	return "http://" + e
}

// MetricsHandler serves the Prometheus exposition of every metric.
func (p *Providers) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Gather returns the current metric families (tests read them).
func (p *Providers) Gather() ([]string, error) {
	families, err := p.registry.Gather()
	if err != nil {
		return nil, err
	}
	names := make([]string, len(families))
	for i, f := range families {
		names[i] = f.GetName()
	}
	return names, nil
}

// Shutdown flushes and stops the providers.
func (p *Providers) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range p.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}
