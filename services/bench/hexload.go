package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/infra/auth"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
)

// benchGateway is the gateway address the bench's ingested drivers carry
// (matching would push offers there; the bench never dispatches).
const benchGateway = "127.0.0.1:1"

// serviceConns dials n connections to addr acting as a hexride service
// (what a gateway or a rider instance is to matching).
func (b *bench) serviceConns(addr string, n int) ([]*grpc.ClientConn, error) {
	tok, err := b.mint(auth.RoleService, "hexride-bench")
	if err != nil {
		return nil, err
	}
	conns := make([]*grpc.ClientConn, 0, n)
	for range n {
		c, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.BearerCredentials{Source: auth.StaticToken(tok), AllowInsecure: true}))
		if err != nil {
			closeConns(conns)
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeConns(conns []*grpc.ClientConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// ingester sends IngestLocations batches on one stream, one batch in
// flight, like a gateway's batcher.
type ingester struct {
	stream grpc.BidiStreamingClient[matchingv1.IngestLocationsRequest, matchingv1.IngestLocationsResponse]
	cancel context.CancelFunc
	req    *matchingv1.IngestLocationsRequest
}

func newIngester(ctx context.Context, conn *grpc.ClientConn, batch int) (*ingester, error) {
	sctx, cancel := context.WithCancel(ctx)
	stream, err := matchingv1.NewMatchingServiceClient(conn).IngestLocations(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	req := &matchingv1.IngestLocationsRequest{Locations: make([]*matchingv1.DriverLocation, batch)}
	for i := range req.Locations {
		req.Locations[i] = &matchingv1.DriverLocation{
			Position:       &commonv1.LatLng{},
			Product:        commonv1.Product_PRODUCT_STANDARD,
			Status:         matchingv1.DriverStatus_DRIVER_STATUS_AVAILABLE,
			GatewayAddress: benchGateway,
		}
	}
	return &ingester{stream: stream, cancel: cancel, req: req}, nil
}

// send ingests drivers ids[i] at pos[i] (len ≤ batch), recorded now, and
// returns how many matching accepted.
func (in *ingester) send(ids []string, pos []point, speed float32, now time.Time) (int64, error) {
	at := timestamppb.New(now)
	locs := in.req.Locations[:len(ids)]
	for i, l := range locs {
		l.DriverId = ids[i]
		l.Position.Lat, l.Position.Lng = pos[i].Lat, pos[i].Lng
		l.SpeedMps = speed
		l.RecordedAt = at
	}
	in.req.Locations = locs
	in.req.BatchSeq++
	err := in.stream.Send(in.req)
	in.req.Locations = in.req.Locations[:cap(in.req.Locations)]
	if err != nil {
		return 0, err
	}
	resp, err := in.stream.Recv()
	if err != nil {
		return 0, err
	}
	if resp.GetBatchSeq() != in.req.BatchSeq {
		return 0, fmt.Errorf("ingest answered batch %d, want %d", resp.GetBatchSeq(), in.req.BatchSeq)
	}
	if n := len(resp.GetNotOwned()); n > 0 {
		return int64(resp.GetAccepted()), fmt.Errorf("ingest: %d groups not owned by the only worker", n)
	}
	return int64(resp.GetAccepted()), nil
}

func (in *ingester) close() {
	_ = in.stream.CloseSend()
	in.cancel()
}

// loadHexride indexes drivers [from, to) at their canonical positions
// over two streams with large batches (not measured).
func (b *bench) loadHexride(ctx context.Context, addr string, from, to int) error {
	conns, err := b.serviceConns(addr, 2)
	if err != nil {
		return err
	}
	defer closeConns(conns)
	const batch = 2000
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for w, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := newIngester(ctx, conn, batch)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			defer in.close()
			for lo := from + w*batch; lo < to; lo += len(conns) * batch {
				hi := min(lo+batch, to)
				n, err := in.send(b.ids[lo:hi], b.pos[lo:hi], 0, time.Now())
				if err == nil && n != int64(hi-lo) {
					err = fmt.Errorf("matching accepted %d of %d locations", n, hi-lo)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("load drivers %d..%d: %w", lo, hi, err))
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// mover hands out batches of drivers among the first n, each moved a few
// metres from where it last was (its own copy of the positions).
type mover struct {
	mu   sync.Mutex
	next int
	n    int
	ids  []string
	pos  []point
}

func newMover(ids []string, pos []point, n int) *mover {
	return &mover{n: n, ids: ids[:n], pos: slices.Clone(pos[:n])}
}

// take moves the next k drivers (wrapping) and returns them.
func (m *mover) take(k int, r *rand.Rand, ids []string, pos []point) ([]string, []point) {
	ids, pos = ids[:0], pos[:0]
	m.mu.Lock()
	defer m.mu.Unlock()
	for range k {
		i := m.next
		m.next = (m.next + 1) % m.n
		m.pos[i] = move(m.pos[i], 3+5*r.Float64(), r)
		ids = append(ids, m.ids[i])
		pos = append(pos, m.pos[i])
	}
	return ids, pos
}

// hexIngestLoad is batched ingest over conns streams.
func (b *bench) hexIngestLoad(ctx context.Context, addr string, conns int, mv *mover, c *counters, every time.Duration) (stop func(), err error) {
	cs, err := b.serviceConns(addr, conns)
	if err != nil {
		return nil, err
	}
	ins := make([]*ingester, conns)
	for i, conn := range cs {
		if ins[i], err = newIngester(ctx, conn, b.cfg.Batch); err != nil {
			for _, in := range ins[:i] {
				in.close()
			}
			closeConns(cs)
			return nil, err
		}
	}
	rngs := make([]*rand.Rand, conns)
	idBufs, posBufs := make([][]string, conns), make([][]point, conns)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(b.cfg.Seed, uint64(1000+i)))
		idBufs[i], posBufs[i] = make([]string, 0, b.cfg.Batch), make([]point, 0, b.cfg.Batch)
	}
	stopLoad := runLoad(ctx, c, conns, every, func(ctx context.Context, w int) (int64, error) {
		ids, pos := mv.take(b.cfg.Batch, rngs[w], idBufs[w], posBufs[w])
		return ins[w].send(ids, pos, 5, time.Now())
	})
	return func() {
		stopLoad()
		for _, in := range ins {
			in.close()
		}
		closeConns(cs)
	}, nil
}

// nearbyRequest is the query measured: nearest 10 STANDARD drivers
// within 3 km.
func nearbyRequest(p point) *matchingv1.NearbyDriversRequest {
	return &matchingv1.NearbyDriversRequest{
		Center:       &commonv1.LatLng{Lat: p.Lat, Lng: p.Lng},
		RadiusMeters: queryRadius,
		Limit:        queryLimit,
		Product:      commonv1.Product_PRODUCT_STANDARD,
	}
}

const (
	queryRadius = 3000
	queryLimit  = 10
)

// hexQueryLoad runs conns × callers closed-loop NearbyDrivers callers.
func (b *bench) hexQueryLoad(ctx context.Context, addr string, conns int, c *counters) (stop func(), err error) {
	cs, err := b.serviceConns(addr, conns)
	if err != nil {
		return nil, err
	}
	clients := make([]matchingv1.MatchingServiceClient, conns)
	for i, conn := range cs {
		clients[i] = matchingv1.NewMatchingServiceClient(conn)
	}
	callers := conns * b.cfg.CallersPerConn
	next := make([]int, callers)
	for w := range next {
		next[w] = w * len(b.queries) / callers
	}
	stopLoad := runLoad(ctx, c, callers, 0, func(ctx context.Context, w int) (int64, error) {
		p := b.queries[next[w]%len(b.queries)]
		next[w]++
		resp, err := clients[w%conns].NearbyDrivers(ctx, nearbyRequest(p))
		if err != nil {
			return 0, err
		}
		if len(resp.GetDrivers()) == 0 {
			return 0, fmt.Errorf("no driver within 3 km of %.5f,%.5f", p.Lat, p.Lng)
		}
		return 1, nil
	})
	return func() { stopLoad(); closeConns(cs) }, nil
}

// hexNearest is one NearbyDrivers answer's driver ids, nearest first.
func (b *bench) hexNearest(ctx context.Context, conn *grpc.ClientConn, p point) ([]string, error) {
	resp, err := matchingv1.NewMatchingServiceClient(conn).NearbyDrivers(ctx, nearbyRequest(p))
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(resp.GetDrivers()))
	for i, d := range resp.GetDrivers() {
		ids[i] = d.GetPosition().GetDriverId()
	}
	return ids, nil
}
