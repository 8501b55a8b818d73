package driver

import (
	"context"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/matching/matchingclient"
)

// pendingLocation is one location waiting for its batch; target, when set,
// overrides routing (an owner named by a NotOwner answer).
type pendingLocation struct {
	loc       *matchingv1.DriverLocation
	partition matchingclient.Partition
	target    string
}

type pendingDeparture struct {
	dep       *matchingv1.DriverDeparture
	partition matchingclient.Partition
}

// batcher groups location updates per owning matching worker and sends each
// group as one message on a long-lived IngestLocations stream to that
// worker. Locations are soft state: a batch lost with a broken stream is
// refilled by the drivers' next samples, so nothing here retries.
type batcher struct {
	cfg      Config
	matching *matchingclient.Client
	logger   *slog.Logger

	// Latest location per driver, sharded by driver so concurrent streams
	// do not queue on one lock; pending counts them for the size trigger.
	shards  [batchShards]locationShard
	pending atomic.Int64

	mu         sync.Mutex // departures
	departures []pendingDeparture
	nDeps      atomic.Int64 // len(departures), read without the lock
	kick       chan struct{}

	streamsMu sync.Mutex
	streams   map[string]*ownerStream
	seq       uint64
}

// batchShards is how many locks the pending locations are spread over.
const batchShards = 16

type locationShard struct {
	mu        sync.Mutex
	locations map[string]pendingLocation
}

func (b *batcher) shard(driverID string) *locationShard {
	return &b.shards[maphash.String(batchSeed, driverID)%batchShards]
}

var batchSeed = maphash.MakeSeed()

type ownerStream struct {
	stream matchingv1.MatchingService_IngestLocationsClient
	cancel context.CancelFunc
	done   chan struct{}
}

func newBatcher(cfg Config, matching *matchingclient.Client, logger *slog.Logger) *batcher {
	b := &batcher{
		cfg:      cfg,
		matching: matching,
		logger:   logger,
		kick:     make(chan struct{}, 1),
		streams:  map[string]*ownerStream{},
	}
	for i := range b.shards {
		b.shards[i].locations = map[string]pendingLocation{}
	}
	return b
}

// addLocation queues l as its driver's latest, unless keepNewer and a
// newer one is already queued.
func (b *batcher) addLocation(l pendingLocation) { b.put(l, false) }

func (b *batcher) put(l pendingLocation, keepNewer bool) {
	if !keepNewer && b.nDeps.Load() > 0 {
		// A location supersedes a pending departure of its driver from the
		// same partition (a reconnect, or back online): matching applies a
		// batch's locations before its departures, so both in one batch
		// would drop the driver.
		b.mu.Lock()
		b.departures = slices.DeleteFunc(b.departures, func(d pendingDeparture) bool {
			return d.dep.GetDriverId() == l.loc.GetDriverId() && d.partition == l.partition
		})
		b.nDeps.Store(int64(len(b.departures)))
		b.mu.Unlock()
	}
	sh := b.shard(l.loc.GetDriverId())
	sh.mu.Lock()
	_, had := sh.locations[l.loc.GetDriverId()]
	if !had || !keepNewer {
		sh.locations[l.loc.GetDriverId()] = l
	}
	sh.mu.Unlock()
	if had {
		return
	}
	if b.pending.Add(1) >= int64(b.cfg.BatchSize) {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// addDeparture queues d; a pending location of the driver in the partition
// it leaves is older than the departure and is dropped.
func (b *batcher) addDeparture(d pendingDeparture) {
	sh := b.shard(d.dep.GetDriverId())
	sh.mu.Lock()
	if l, ok := sh.locations[d.dep.GetDriverId()]; ok && l.partition == d.partition && l.target == "" {
		delete(sh.locations, d.dep.GetDriverId())
		b.pending.Add(-1)
	}
	sh.mu.Unlock()
	b.mu.Lock()
	b.departures = append(b.departures, d)
	b.nDeps.Store(int64(len(b.departures)))
	b.mu.Unlock()
}

// run flushes every BatchInterval (or when a batch fills) until ctx ends,
// then closes its streams.
func (b *batcher) run(ctx context.Context) {
	t := time.NewTicker(b.cfg.BatchInterval)
	defer t.Stop()
	defer b.closeStreams()
	for {
		select {
		case <-ctx.Done():
			b.flush(ctx)
			return
		case <-t.C:
		case <-b.kick:
		}
		b.flush(ctx)
	}
}

func (b *batcher) flush(ctx context.Context) {
	var locs []pendingLocation
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		if n := len(sh.locations); n > 0 {
			for _, l := range sh.locations {
				locs = append(locs, l)
			}
			clear(sh.locations)
			b.pending.Add(-int64(n))
		}
		sh.mu.Unlock()
	}
	b.mu.Lock()
	deps := b.departures
	b.departures = nil
	b.nDeps.Store(0)
	b.mu.Unlock()
	if len(locs) == 0 && len(deps) == 0 {
		return
	}
	batches := map[string]*matchingv1.IngestLocationsRequest{}
	batchFor := func(addr string) *matchingv1.IngestLocationsRequest {
		req, ok := batches[addr]
		if !ok {
			req = &matchingv1.IngestLocationsRequest{}
			batches[addr] = req
		}
		return req
	}
	for _, l := range locs {
		addr := l.target
		if addr == "" {
			owner, err := b.matching.Owner(l.partition)
			if err != nil {
				continue // no worker yet: the next sample retries
			}
			addr = owner.Address
		}
		req := batchFor(addr)
		req.Locations = append(req.Locations, l.loc)
	}
	for _, d := range deps {
		owner, err := b.matching.Owner(d.partition)
		if err != nil {
			continue
		}
		req := batchFor(owner.Address)
		req.Departures = append(req.Departures, d.dep)
	}
	for addr, req := range batches {
		b.send(ctx, addr, req)
	}
}

func (b *batcher) send(ctx context.Context, addr string, req *matchingv1.IngestLocationsRequest) {
	os, err := b.stream(ctx, addr)
	if err != nil {
		b.logger.Warn("ingest stream unavailable", "owner", addr, "err", err)
		return
	}
	b.streamsMu.Lock()
	b.seq++
	req.BatchSeq = b.seq
	b.streamsMu.Unlock()
	if err := os.stream.Send(req); err != nil {
		b.logger.Warn("ingest batch lost", "owner", addr, "locations", len(req.Locations), "err", err)
		b.dropStream(addr, os)
	}
}

// stream returns the open ingest stream to addr, opening one if needed.
func (b *batcher) stream(ctx context.Context, addr string) (*ownerStream, error) {
	b.streamsMu.Lock()
	defer b.streamsMu.Unlock()
	if os, ok := b.streams[addr]; ok {
		select {
		case <-os.done:
			delete(b.streams, addr)
		default:
			return os, nil
		}
	}
	client, err := b.matching.At(addr)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := client.IngestLocations(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	os := &ownerStream{stream: stream, cancel: cancel, done: make(chan struct{})}
	b.streams[addr] = os
	go b.readAcks(addr, os)
	return os, nil
}

// readAcks re-queues entries a worker says another owns, addressed to that
// owner, for the next flush.
func (b *batcher) readAcks(addr string, os *ownerStream) {
	defer close(os.done)
	for {
		resp, err := os.stream.Recv()
		if err != nil {
			return
		}
		for _, no := range resp.GetNotOwned() {
			target := no.GetOwner().GetOwnerAddress()
			if target == "" || target == addr {
				continue
			}
			for _, loc := range no.GetLocations() {
				b.put(pendingLocation{loc: proto.Clone(loc).(*matchingv1.DriverLocation), target: target}, true)
			}
		}
	}
}

func (b *batcher) dropStream(addr string, os *ownerStream) {
	b.streamsMu.Lock()
	if b.streams[addr] == os {
		delete(b.streams, addr)
	}
	b.streamsMu.Unlock()
	os.cancel()
}

func (b *batcher) closeStreams() {
	b.streamsMu.Lock()
	streams := b.streams
	b.streams = map[string]*ownerStream{}
	b.streamsMu.Unlock()
	for _, os := range streams {
		_ = os.stream.CloseSend()
		os.cancel()
		<-os.done
	}
}
