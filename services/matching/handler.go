package matching

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/grpcserver"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
)

// Handler serves MatchingService over an Engine. Every RPC is internal;
// which roles may call which is the authorization interceptor's policy
// table (infra/auth), applied before any handler runs.
type Handler struct {
	matchingv1.UnimplementedMatchingServiceServer
	engine   *Engine
	draining <-chan struct{}
}

var _ matchingv1.MatchingServiceServer = (*Handler)(nil)

// NewHandler serves e; ingest streams end with UNAVAILABLE when draining
// closes, so gateways move them to the partitions' next owners.
func NewHandler(e *Engine, draining <-chan struct{}) *Handler {
	return &Handler{engine: e, draining: draining}
}

// Register adds the service to r.
func (h *Handler) Register(r grpc.ServiceRegistrar) { matchingv1.RegisterMatchingServiceServer(r, h) }

// IngestLocations implements MatchingService.
func (h *Handler) IngestLocations(stream grpc.BidiStreamingServer[matchingv1.IngestLocationsRequest, matchingv1.IngestLocationsResponse]) error {
	type received struct {
		req *matchingv1.IngestLocationsRequest
		err error
	}
	batches := make(chan received)
	go func() {
		for {
			req, err := stream.Recv()
			select {
			case batches <- received{req, err}:
			case <-stream.Context().Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case b := <-batches:
			if errors.Is(b.err, io.EOF) {
				return nil
			}
			if b.err != nil {
				return toStatus(b.err)
			}
			if err := stream.Send(h.engine.Ingest(b.req)); err != nil {
				return err
			}
		case <-h.draining:
			return toStatus(grpcserver.ErrDraining)
		}
	}
}

// Dispatch implements MatchingService.
func (h *Handler) Dispatch(ctx context.Context, req *matchingv1.DispatchRequest) (*matchingv1.DispatchResponse, error) {
	var deadline time.Time
	if req.GetDeadline() != nil {
		deadline = req.GetDeadline().AsTime()
	}
	resp, err := h.engine.Dispatch(ctx, req.GetTrip(), deadline)
	return resp, toStatus(err)
}

// CancelDispatch implements MatchingService.
func (h *Handler) CancelDispatch(ctx context.Context, req *matchingv1.CancelDispatchRequest) (*matchingv1.CancelDispatchResponse, error) {
	resp, err := h.engine.CancelDispatch(req)
	return resp, toStatus(err)
}

// ReplyOffer implements MatchingService.
func (h *Handler) ReplyOffer(ctx context.Context, req *matchingv1.ReplyOfferRequest) (*matchingv1.ReplyOfferResponse, error) {
	resp, err := h.engine.ReplyOffer(ctx, req)
	return resp, toStatus(err)
}

// NearbyDrivers implements MatchingService.
func (h *Handler) NearbyDrivers(ctx context.Context, req *matchingv1.NearbyDriversRequest) (*matchingv1.NearbyDriversResponse, error) {
	resp, err := h.engine.NearbyDrivers(ctx, req)
	return resp, toStatus(err)
}

// CellStats implements MatchingService.
func (h *Handler) CellStats(ctx context.Context, req *matchingv1.CellStatsRequest) (*matchingv1.CellStatsResponse, error) {
	cells := make([]geo.Cell, 0, len(req.GetCells()))
	for _, s := range req.GetCells() {
		c, err := geo.ParseCell(s)
		if err != nil || !c.IsValid() {
			return nil, toStatus(fmt.Errorf("%w: %q", errInvalidCell, s))
		}
		cells = append(cells, c)
	}
	resp, err := h.engine.CellStats(cells)
	return resp, toStatus(err)
}

// ShareSurge implements MatchingService.
func (h *Handler) ShareSurge(ctx context.Context, req *matchingv1.ShareSurgeRequest) (*matchingv1.ShareSurgeResponse, error) {
	n, err := h.engine.ShareSurge(req.GetFromId(), req.GetReadings())
	if err != nil {
		return nil, toStatus(err)
	}
	return &matchingv1.ShareSurgeResponse{Accepted: int32(n)}, nil
}

// Partitions implements MatchingService.
func (h *Handler) Partitions(ctx context.Context, _ *matchingv1.PartitionsRequest) (*matchingv1.PartitionsResponse, error) {
	return h.engine.Partitions(), nil
}

// ListDrivers implements MatchingService.
func (h *Handler) ListDrivers(ctx context.Context, req *matchingv1.ListDriversRequest) (*matchingv1.ListDriversResponse, error) {
	return h.engine.ListDrivers(int(req.GetLimit())), nil
}
