package driver

import (
	"log/slog"
	"testing"

	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/matching/matchingclient"
)

// queued returns what the batcher would send next: each driver's pending
// location partition and the pending departures.
func queued(b *batcher) (map[string]matchingclient.Partition, []string) {
	locs := map[string]matchingclient.Partition{}
	for i := range b.shards {
		for id, l := range b.shards[i].locations {
			locs[id] = l.partition
		}
	}
	var deps []string
	for _, d := range b.departures {
		deps = append(deps, d.dep.GetDriverId()+"@"+d.partition.String())
	}
	return locs, deps
}

// TestBatcherOrdersDeparturesAndLocations: matching applies a batch's
// locations before its departures, so the batcher must never send both for
// one driver and partition: the later of the two wins.
func TestBatcherOrdersDeparturesAndLocations(t *testing.T) {
	const p, q = matchingclient.Partition(0x8628308280fffff), matchingclient.Partition(0x862830827ffffff)
	loc := func(id string, part matchingclient.Partition) pendingLocation {
		return pendingLocation{loc: &matchingv1.DriverLocation{DriverId: id}, partition: part}
	}
	dep := func(id string, part matchingclient.Partition) pendingDeparture {
		return pendingDeparture{dep: &matchingv1.DriverDeparture{DriverId: id, Partition: part.String()}, partition: part}
	}
	for _, tc := range []struct {
		name     string
		ops      func(b *batcher)
		wantLocs map[string]matchingclient.Partition
		wantDeps int
	}{
		{"reconnect: departure then location in the same partition", func(b *batcher) {
			b.addDeparture(dep("d1", p))
			b.addLocation(loc("d1", p))
		}, map[string]matchingclient.Partition{"d1": p}, 0},
		{"offline: location then departure", func(b *batcher) {
			b.addLocation(loc("d1", p))
			b.addDeparture(dep("d1", p))
		}, map[string]matchingclient.Partition{}, 1},
		{"border crossing keeps both", func(b *batcher) {
			b.addLocation(loc("d1", q))
			b.addDeparture(dep("d1", p))
		}, map[string]matchingclient.Partition{"d1": q}, 1},
		{"another driver's departure stays", func(b *batcher) {
			b.addDeparture(dep("d2", p))
			b.addLocation(loc("d1", p))
		}, map[string]matchingclient.Partition{"d1": p}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBatcher(DefaultConfig("127.0.0.1:1"), nil, slog.New(slog.DiscardHandler))
			tc.ops(b)
			locs, deps := queued(b)
			if len(locs) != len(tc.wantLocs) || len(deps) != tc.wantDeps {
				t.Fatalf("queued locations %v, departures %v; want %v and %d departures", locs, deps, tc.wantLocs, tc.wantDeps)
			}
			for id, part := range tc.wantLocs {
				if locs[id] != part {
					t.Fatalf("driver %s queued in %v, want %v", id, locs[id], part)
				}
			}
			if got := b.pending.Load(); got != int64(len(tc.wantLocs)) {
				t.Fatalf("pending count %d, want %d", got, len(tc.wantLocs))
			}
		})
	}
}
