package driver

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"

	"github.com/hexride/hexride/infra/telemetry"
)

// Telemetry is what the gateway records with (zero value: nothing).
type Telemetry struct {
	Meter      metric.MeterProvider
	Propagator propagation.TextMapPropagator
}

type gatewayMetrics struct {
	locations   metric.Int64Counter
	streams     metric.Int64UpDownCounter
	disconnects metric.Int64Counter
}

var driverStreams = metric.WithAttributes(attribute.String("service", "driver"))

func newGatewayMetrics(mp metric.MeterProvider) (gatewayMetrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter("hexride")
	var g gatewayMetrics
	var err error
	if g.locations, err = m.Int64Counter(telemetry.MetricLocationUpdates,
		metric.WithDescription("Driver location samples accepted by the gateway.")); err != nil {
		return g, err
	}
	if g.streams, err = m.Int64UpDownCounter(telemetry.MetricActiveStreams,
		metric.WithDescription("Open long-lived streams, by service.")); err != nil {
		return g, err
	}
	g.disconnects, err = m.Int64Counter(telemetry.MetricStreamDisconnects,
		metric.WithDescription("Driver streams that ended, by service."))
	return g, err
}

// observeUnowned exports hexride_no_owner_partitions from the gateway's
// view (attribute service="driver"; matching workers export their own).
func (g *Gateway) observeUnowned(mp metric.MeterProvider) error {
	if mp == nil {
		return nil
	}
	_, err := mp.Meter("hexride").Int64ObservableGauge(telemetry.MetricNoOwnerPartitions,
		metric.WithDescription(telemetry.NoOwnerPartitionsDescription),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(g.unownedPartitions()), driverStreams)
			return nil
		}))
	return err
}

// offerContext returns ctx carrying the trace of the dispatch that made
// the offer, so the driver's reply joins the trip's trace.
func (g *Gateway) offerContext(ctx context.Context, carrier map[string]string) context.Context {
	if len(carrier) == 0 {
		return ctx
	}
	return g.propagator.Extract(ctx, propagation.MapCarrier(carrier))
}
