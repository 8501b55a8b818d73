package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/hexride/hexride/infra/telemetry"
)

// telemetryFlags binds the tracing flags; the returned function builds the
// providers after parsing. Defaults follow the standard OTEL_* variables
// (OTEL_EXPORTER_OTLP_ENDPOINT alone turns OTLP export on).
//
// The service name is OTEL_SERVICE_NAME when set, else what the command
// passes when it builds (serve: hexride-<its services>), else service.
func telemetryFlags(fs *flag.FlagSet, service string) func(ctx context.Context, name string) (*telemetry.Providers, error) {
	cfg := telemetry.DefaultConfig(service, os.Getenv)
	fs.StringVar(&cfg.TraceExporter, "trace-exporter", cfg.TraceExporter, "none, otlp-grpc, otlp-http or stdout")
	fs.StringVar(&cfg.Endpoint, "otlp-endpoint", "", "OTLP collector endpoint (host:port or URL; default: OTEL_EXPORTER_OTLP_ENDPOINT)")
	fs.Float64Var(&cfg.SampleRatio, "trace-sample", cfg.SampleRatio, "share of new traces kept, 0..1")
	return func(ctx context.Context, name string) (*telemetry.Providers, error) {
		if name != "" && os.Getenv("OTEL_SERVICE_NAME") == "" {
			cfg.ServiceName = name
		}
		cfg.ServiceVersion = version
		if cfg.Endpoint != "" && cfg.TraceExporter == telemetry.ExporterNone {
			cfg.TraceExporter = telemetry.ExporterOTLPGRPC
		}
		return telemetry.New(ctx, cfg)
	}
}

// telemetryFlushTimeout bounds the last flush of traces at exit: with the
// collector gone, the exporter would otherwise retry for tens of seconds
// after the process has drained.
const telemetryFlushTimeout = 5 * time.Second

// shutdownTelemetry flushes and stops the providers, within
// telemetryFlushTimeout, even after ctx (the process's signal context)
// has ended.
func shutdownTelemetry(ctx context.Context, tel *telemetry.Providers) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), telemetryFlushTimeout)
	defer cancel()
	_ = tel.Shutdown(sctx)
}
