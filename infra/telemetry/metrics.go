package telemetry

import (
	"go.opentelemetry.io/otel/metric"
)

// Metric names hexride exports (Prometheus names after the exporter adds
// unit and _total suffixes). Dashboards and alert rules in infra/ may only
// use these and the standard RPC and runtime metrics; a test checks it.
const (
	MetricTimeToMatch        = "hexride_time_to_match"        // histogram, seconds
	MetricOffers             = "hexride_offers"               // counter{outcome}
	MetricLocationUpdates    = "hexride_location_updates"     // counter
	MetricIndexedDrivers     = "hexride_indexed_drivers"      // gauge{partition}
	MetricPartitionMoves     = "hexride_partition_moves"      // counter
	MetricTripTransitions    = "hexride_trip_transitions"     // counter{from,to}
	MetricDBTxRetries        = "hexride_db_tx_retries"        // counter
	MetricActiveStreams      = "hexride_active_streams"       // up-down counter{service}
	MetricStreamDisconnects  = "hexride_stream_disconnects"   // counter{service}
	MetricNoOwnerPartitions  = "hexride_no_owner_partitions"  // gauge{service}: matching workers and gateways
	MetricDispatchesInFlight = "hexride_dispatches_in_flight" // gauge
	MetricSurgeShares        = "hexride_surge_shares"         // counter{outcome}
	MetricBatchHolds         = "hexride_batch_holds"          // counter
)

// NoOwnerPartitionsDescription describes MetricNoOwnerPartitions; matching
// workers and driver gateways export it with one description, so a process
// running both exports one metric.
const NoOwnerPartitionsDescription = "Partitions with drivers and no matching owner, in this process's view (by service)."

// TimeToMatchBuckets are the histogram bounds of time to match, seconds.
var TimeToMatchBuckets = []float64{0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120}

// HexrideMeter returns the meter hexride's own instruments use (scope "hexride").
func (p *Providers) HexrideMeter() metric.Meter { return p.Meter.Meter("hexride") }
