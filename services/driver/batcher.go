package driver

import (
	"context"
	"log/slog"
	"sync"
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

	mu         sync.Mutex
	locations  map[string]pendingLocation // latest per driver
	departures []pendingDeparture
	kick       chan struct{}

	streamsMu sync.Mutex
	streams   map[string]*ownerStream
	seq       uint64
}

type ownerStream struct {
	stream matchingv1.MatchingService_IngestLocationsClient
	cancel context.CancelFunc
	done   chan struct{}
}

func newBatcher(cfg Config, matching *matchingclient.Client, logger *slog.Logger) *batcher {
	return &batcher{
		cfg:       cfg,
		matching:  matching,
		logger:    logger,
		locations: map[string]pendingLocation{},
		kick:      make(chan struct{}, 1),
		streams:   map[string]*ownerStream{},
	}
}

func (b *batcher) addLocation(l pendingLocation) {
	b.mu.Lock()
	b.locations[l.loc.GetDriverId()] = l
	full := len(b.locations) >= b.cfg.BatchSize
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

func (b *batcher) addDeparture(d pendingDeparture) {
	b.mu.Lock()
	b.departures = append(b.departures, d)
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
	b.mu.Lock()
	locs, deps := b.locations, b.departures
	b.locations, b.departures = map[string]pendingLocation{}, nil
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
				b.mu.Lock()
				if _, newer := b.locations[loc.GetDriverId()]; !newer {
					b.locations[loc.GetDriverId()] = pendingLocation{loc: proto.Clone(loc).(*matchingv1.DriverLocation), target: target}
				}
				b.mu.Unlock()
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
