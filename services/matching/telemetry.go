package matching

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/telemetry"
	"github.com/hexride/hexride/services/matching/matchingapi"
)

// engineMetrics are the dispatch-health instruments (names: infra/telemetry).
type engineMetrics struct {
	timeToMatch metric.Float64Histogram
	offers      metric.Int64Counter
	moves       metric.Int64Counter
	surgeShares metric.Int64Counter
	holds       metric.Int64Counter
}

func (e *Engine) initTelemetry(d Deps) error {
	if d.Tracer == nil {
		d.Tracer = tracenoop.NewTracerProvider()
	}
	if d.Meter == nil {
		d.Meter = metricnoop.NewMeterProvider()
	}
	if d.Propagator == nil {
		d.Propagator = propagation.TraceContext{}
	}
	e.tracer = d.Tracer.Tracer("github.com/hexride/hexride/services/matching")
	e.propagator = d.Propagator
	m := d.Meter.Meter("hexride")
	var err error
	if e.metrics.timeToMatch, err = m.Float64Histogram(telemetry.MetricTimeToMatch,
		metric.WithUnit("s"),
		metric.WithDescription("Time from a ride request to its driver's assignment."),
		metric.WithExplicitBucketBoundaries(telemetry.TimeToMatchBuckets...)); err != nil {
		return err
	}
	if e.metrics.offers, err = m.Int64Counter(telemetry.MetricOffers,
		metric.WithDescription("Offers made to drivers, by outcome (accepted, declined, expired, unreachable, lost_race).")); err != nil {
		return err
	}
	if e.metrics.moves, err = m.Int64Counter(telemetry.MetricPartitionMoves,
		metric.WithDescription("Partitions that moved away from this worker after membership changes.")); err != nil {
		return err
	}
	e.metrics.moves.Add(context.Background(), 0) // exported from the start, so rate() works
	if e.metrics.surgeShares, err = m.Int64Counter(telemetry.MetricSurgeShares,
		metric.WithDescription("Messages of border surge readings sent to the owners of neighbouring partitions, by outcome (ok, failed).")); err != nil {
		return err
	}

	if e.metrics.holds, err = m.Int64Counter(telemetry.MetricBatchHolds,
		metric.WithDescription("Batched requests a window held for a better match instead of offering them a long pickup (--batch-hold-pickup).")); err != nil {
		return err
	}

	if _, err = m.Int64ObservableGauge(telemetry.MetricIndexedDrivers,
		metric.WithDescription("Drivers in this worker's supply index, by partition."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for p, n := range e.driversPerPartition() {
				o.Observe(int64(n), metric.WithAttributes(attribute.String("partition", p.String())))
			}
			return nil
		})); err != nil {
		return err
	}
	if _, err = m.Int64ObservableGauge(telemetry.MetricNoOwnerPartitions,
		metric.WithDescription(telemetry.NoOwnerPartitionsDescription),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			r, _ := e.membership.Ring()
			if r.Len() > 0 {
				o.Observe(0, matchingService)
				return nil
			}
			o.Observe(int64(len(e.driversPerPartition())), matchingService)
			return nil
		})); err != nil {
		return err
	}
	_, err = m.Int64ObservableGauge(telemetry.MetricDispatchesInFlight,
		metric.WithDescription("Dispatches running on this worker."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(e.host.inFlight()))
			return nil
		}))
	return err
}

var matchingService = metric.WithAttributes(attribute.String("service", "matching"))

// driversPerPartition counts indexed drivers per partition (the gauge's
// callback, run on every metrics collection): O(cells) from the index's
// per-cell counters.
func (e *Engine) driversPerPartition() map[matchingapi.Partition]int {
	counts, _ := e.partitionSupply()
	return counts
}

// partitionSupply counts drivers (any status) per partition holding any,
// and the index's drivers per status, from the per-cell counters: one walk
// over the cells, no driver copied.
func (e *Engine) partitionSupply() (map[matchingapi.Partition]int, dispatch.SupplyCount) {
	counts := map[matchingapi.Partition]int{}
	var total dispatch.SupplyCount
	e.supply.eachCellSupply(func(c geo.Cell, n dispatch.SupplyCount) {
		total.Available += n.Available
		total.Busy += n.Busy
		total.Offline += n.Offline
		if p, err := e.partitionOfCell(c); err == nil {
			counts[p] += n.Total()
		}
	})
	return counts, total
}

func (e *Engine) countOffer(ctx context.Context, outcome string) {
	e.metrics.offers.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

// rankAttributes describes the top candidates and why they rank so.
func rankAttributes(ranked []dispatch.Ranked) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.Int("candidates", len(ranked))}
	for i, r := range ranked {
		if i == 3 {
			break
		}
		prefix := "rank." + string(rune('1'+i)) + "."
		attrs = append(attrs,
			attribute.String(prefix+"driver", r.ID),
			attribute.Float64(prefix+"eta_s", r.Parts.ETA.Seconds()),
			attribute.String(prefix+"eta_source", r.Parts.Source),
			attribute.Float64(prefix+"distance_m", r.Parts.Distance),
			attribute.Float64(prefix+"heading_off_deg", r.Parts.HeadingOff),
			attribute.Float64(prefix+"turn_penalty_s", r.Parts.TurnPenalty.Seconds()),
		)
	}
	return attrs
}

// spanParent carries a span context into a goroutine that outlives the RPC.
func spanParent(ctx context.Context) trace.SpanContext { return trace.SpanContextFromContext(ctx) }
