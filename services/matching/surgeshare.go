package matching

// Surge at partition borders.
//
// dispatch.Surge smooths a cell's multiplier with its ring-1 neighbours. A
// worker counts demand and supply only in the partitions it owns, so a
// neighbour in another worker's partition has no counts here and would read
// as the minimum, diluting surge along every partition (and region) border.
// So on every sampling tick each worker sends the raw readings of its cells
// that touch a partition another worker owns to that owner (ShareSurge, over
// the peer pool cross-border searches use), and the owner keeps them as
// foreign readings (dispatch.Surge.SetForeign) for surgeReadingTTL. A peer
// that cannot be reached costs accuracy only: its readings expire and the
// border reads as it did before.
//
// The sender pushes rather than the receiver pulling: the sender knows which
// of its cells have counts, so one message per neighbouring owner per tick
// carries exactly what the receiver needs for every one of its border cells,
// including cells where the receiver itself has no counts (a quote there is
// still smoothed with the hot cell across the border).

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/matching/matchingapi"
	"github.com/hexride/hexride/services/matching/ring"
)

// surgeReadingTTL is how long a reading from a neighbour's owner stays
// valid: two sampling ticks, so one late or lost message does not drop it.
func (e *Engine) surgeReadingTTL() time.Duration { return 2 * e.cfg.ExpireInterval }

// surgeBorder remembers, per surge cell, the partitions other than its own
// that its neighbours lie in (nil: an interior cell), so a tick computes a
// cell's neighbours once while the cell stays active. Only the cells of the
// last tick are kept.
type surgeBorder struct {
	mu    sync.Mutex
	cells map[geo.Cell][]matchingapi.Partition
}

// borderPartitions returns the partitions other than c's own (p) that c's
// neighbours lie in, from last tick's cache or computed; next is the
// cache being built this tick.
func (e *Engine) borderPartitions(c geo.Cell, p matchingapi.Partition, next map[geo.Cell][]matchingapi.Partition) ([]matchingapi.Partition, error) {
	if ps, ok := e.border.cells[c]; ok {
		next[c] = ps
		return ps, nil
	}
	nbrs, err := geo.Neighbors(c)
	if err != nil {
		return nil, err
	}
	var ps []matchingapi.Partition
	for _, n := range nbrs {
		np, err := e.partitionOfCell(n)
		if err != nil {
			return nil, err
		}
		if np != p && !slices.Contains(ps, np) {
			ps = append(ps, np)
		}
	}
	next[c] = ps
	return ps, nil
}

// borderReadings groups the readings of cells this worker owns that
// neighbour a partition another worker owns by that worker (one view of
// the membership). Readings of cells it does not own (left over from a
// partition that moved away) are not sent: their new owner sends its own.
func (e *Engine) borderReadings(readings []dispatch.SurgeReading, now time.Time) map[ring.Member]*matchingv1.ShareSurgeRequest {
	r, _ := e.membership.Ring()
	owners := map[matchingapi.Partition]ring.Member{}
	ownerOf := func(p matchingapi.Partition) (ring.Member, bool) {
		m, ok := owners[p]
		if !ok {
			var found bool
			if m, found = r.Owner(p.RoutingKey()); !found {
				m = ring.Member{}
			}
			owners[p] = m
		}
		return m, m.ID != ""
	}
	e.border.mu.Lock()
	defer e.border.mu.Unlock()
	next := make(map[geo.Cell][]matchingapi.Partition, len(readings))
	out := map[ring.Member]*matchingv1.ShareSurgeRequest{}
	asOf := timestamppb.New(now)
	for _, rd := range readings {
		p, err := e.partitionOfCell(rd.Cell)
		if err != nil {
			continue
		}
		if m, ok := ownerOf(p); !ok || m.ID != e.cfg.Self.ID {
			continue
		}
		ps, err := e.borderPartitions(rd.Cell, p, next)
		if err != nil || len(ps) == 0 {
			continue
		}
		var sent []string // at most six neighbours: a slice beats a map
		for _, np := range ps {
			m, ok := ownerOf(np)
			if !ok || m.ID == e.cfg.Self.ID || slices.Contains(sent, m.ID) {
				continue
			}
			sent = append(sent, m.ID)
			req := out[m]
			if req == nil {
				req = &matchingv1.ShareSurgeRequest{FromId: e.cfg.Self.ID}
				out[m] = req
			}
			req.Readings = append(req.Readings, &matchingv1.SurgeReading{
				Cell: rd.Cell.String(), RawMultiplier: rd.Raw, Demand: int32(rd.Demand), Supply: rd.Supply, AsOf: asOf,
			})
		}
	}
	e.border.cells = next
	return out
}

// maxShareBatch bounds one ShareSurge message (the API's max_items).
const maxShareBatch = 10000

// startSurgeShare sends this tick's border readings in the background (a
// tick must not wait on peers); if the previous tick's are still in
// flight, this tick's are skipped (the receivers' readings stay valid for
// two ticks).
func (e *Engine) startSurgeShare(batches map[ring.Member]*matchingv1.ShareSurgeRequest) {
	if len(batches) == 0 {
		return
	}
	if !e.sharing.CompareAndSwap(false, true) {
		e.logger.Warn("surge readings of the previous tick still in flight; skipping this tick's")
		return
	}
	ctx := e.baseContext()
	e.goJob(func() {
		defer e.sharing.Store(false)
		e.shareSurge(ctx, batches)
	})
}

// shareSurge sends each owner its readings, all in parallel, each call
// bounded by CallTimeout and the sampling interval. Failures are logged
// and counted; they never reach a quote.
func (e *Engine) shareSurge(ctx context.Context, batches map[ring.Member]*matchingv1.ShareSurgeRequest) {
	timeout := min(e.cfg.CallTimeout, e.cfg.ExpireInterval)
	var wg sync.WaitGroup
	for m, req := range batches {
		wg.Go(func() {
			err := e.sendSurge(ctx, m.Address, req, timeout)
			outcome := "ok"
			if err != nil {
				outcome = "failed"
				e.logger.WarnContext(ctx, "sharing surge readings with a neighbouring owner failed",
					"peer", m.ID, "cells", len(req.GetReadings()), "err", err)
			}
			e.metrics.surgeShares.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
		})
	}
	wg.Wait()
}

// sendSurge delivers readings to the worker at addr, in messages of at
// most maxShareBatch readings.
func (e *Engine) sendSurge(ctx context.Context, addr string, req *matchingv1.ShareSurgeRequest, timeout time.Duration) error {
	cc, err := e.peers.Get(addr)
	if err != nil {
		return err
	}
	client := matchingv1.NewMatchingServiceClient(cc)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for rs := req.GetReadings(); len(rs) > 0; {
		n := min(len(rs), maxShareBatch)
		if _, err := client.ShareSurge(cctx, &matchingv1.ShareSurgeRequest{FromId: req.GetFromId(), Readings: rs[:n]}); err != nil {
			return err
		}
		rs = rs[n:]
	}
	return nil
}

// ShareSurge keeps the readings of cells another worker owns as foreign
// surge readings, valid for surgeReadingTTL from when they were computed
// (or received, if the sender's clock runs ahead). Readings for cells this
// worker owns are not kept: its own counts win. It returns how many it
// kept; a malformed reading refuses the whole message.
func (e *Engine) ShareSurge(from string, readings []*matchingv1.SurgeReading) (int, error) {
	type parsed struct {
		cell  geo.Cell
		raw   float64
		until time.Time
	}
	now := e.clock.Now()
	ttl := e.surgeReadingTTL()
	owned := e.ownedFunc()
	keep := make([]parsed, 0, len(readings))
	for _, r := range readings {
		c, err := geo.ParseCell(r.GetCell())
		if err != nil || !c.IsValid() {
			return 0, fmt.Errorf("%w: %q", errInvalidCell, r.GetCell())
		}
		if c.Resolution() != e.cfg.Surge.Resolution {
			return 0, fmt.Errorf("%w: %s is at resolution %d, surge cells at %d", errInvalidReading, c, c.Resolution(), e.cfg.Surge.Resolution)
		}
		raw := r.GetRawMultiplier()
		if math.IsNaN(raw) || math.IsInf(raw, 0) || raw < 0 {
			return 0, fmt.Errorf("%w: multiplier %v for %s", errInvalidReading, raw, c)
		}
		p, err := e.partitionOfCell(c)
		if err != nil {
			return 0, fmt.Errorf("%w: %s", errCellTooCoarse, c)
		}
		if owned(p) {
			continue
		}
		until := now.Add(ttl)
		if asOf := r.GetAsOf().AsTime(); r.GetAsOf() != nil && asOf.Before(now) {
			until = asOf.Add(ttl)
		}
		if !now.Before(until) {
			continue // already stale
		}
		keep = append(keep, parsed{c, raw, until})
	}
	for _, k := range keep {
		if err := e.surge.SetForeign(k.cell, k.raw, k.until); err != nil {
			return 0, fmt.Errorf("%w: %s: %w", errInvalidReading, k.cell, err)
		}
	}
	if len(keep) < len(readings) {
		e.logger.Debug("surge readings not kept", "from", from, "received", len(readings), "kept", len(keep))
	}
	return len(keep), nil
}
