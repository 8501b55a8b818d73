package trip

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/hexride/hexride/infra/telemetry"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
)

// WithMeter records trip transitions and open watch streams with mp
// (default: not recorded).
func WithMeter(mp metric.MeterProvider) Option { return func(s *Server) { s.meterProvider = mp } }

type tripMetrics struct {
	transitions metric.Int64Counter
	streams     metric.Int64UpDownCounter
}

func newTripMetrics(mp metric.MeterProvider) (tripMetrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter("hexride")
	transitions, err := m.Int64Counter(telemetry.MetricTripTransitions, metric.WithDescription("Trip state changes committed, by from and to state."))
	if err != nil {
		return tripMetrics{}, err
	}
	streams, err := m.Int64UpDownCounter(telemetry.MetricActiveStreams, metric.WithDescription("Open long-lived streams, by service."))
	if err != nil {
		return tripMetrics{}, err
	}
	return tripMetrics{transitions: transitions, streams: streams}, nil
}

var streamAttrs = metric.WithAttributes(attribute.String("service", "trip"))

func (m tripMetrics) transition(ctx context.Context, ev store.Event) {
	from := ev.From
	if from == "" {
		from = lifecycle.State("NONE")
	}
	m.transitions.Add(ctx, 1, metric.WithAttributes(attribute.String("from", string(from)), attribute.String("to", string(ev.To))))
}
