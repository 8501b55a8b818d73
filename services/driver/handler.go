package driver

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hexride/hexride/infra/auth"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
)

// Handler serves DriverService (driver apps) and DriverGatewayService
// (internal: matching pushing offers, dispatchers' actions; the
// authorization interceptor's policy table decides who may call it).
// Handlers take the caller's identity, delegate to the Gateway and map
// errors; the Gateway holds the logic.
type Handler struct {
	driverv1.UnimplementedDriverServiceServer
	driverv1.UnimplementedDriverGatewayServiceServer
	gw       *Gateway
	draining <-chan struct{}
}

var (
	_ driverv1.DriverServiceServer        = (*Handler)(nil)
	_ driverv1.DriverGatewayServiceServer = (*Handler)(nil)
)

// NewHandler serves gw; streams end with UNAVAILABLE when draining closes.
func NewHandler(gw *Gateway, draining <-chan struct{}) *Handler {
	return &Handler{gw: gw, draining: draining}
}

// Register adds both services to r.
func (h *Handler) Register(r grpc.ServiceRegistrar) {
	driverv1.RegisterDriverServiceServer(r, h)
	driverv1.RegisterDriverGatewayServiceServer(r, h)
}

// StreamValidatedByHandler lists the stream messages Connect validates one by
// one (a bad sample is refused in its Ack; the stream stays up).
func StreamValidatedByHandler() []protoreflect.MessageType {
	return []protoreflect.MessageType{(&driverv1.ConnectRequest{}).ProtoReflect().Type()}
}

// Connect implements DriverService.
func (h *Handler) Connect(stream grpc.BidiStreamingServer[driverv1.ConnectRequest, driverv1.ConnectResponse]) error {
	p, err := auth.Require(stream.Context(), auth.RoleDriver)
	if err != nil {
		return err
	}
	return toStatus(h.gw.serve(stream.Context(), p.Subject, stream.Recv, stream.Send, h.draining))
}

// PushToDriver implements DriverGatewayService.
func (h *Handler) PushToDriver(ctx context.Context, req *driverv1.PushToDriverRequest) (*driverv1.PushToDriverResponse, error) {
	if err := h.gw.push(req.GetDriverId(), req.GetMessage()); err != nil {
		return nil, toStatus(err)
	}
	return &driverv1.PushToDriverResponse{}, nil
}

// TakeOffline implements DriverGatewayService (a dispatcher's action).
func (h *Handler) TakeOffline(ctx context.Context, req *driverv1.TakeOfflineRequest) (*driverv1.TakeOfflineResponse, error) {
	if err := h.gw.takeOffline(req.GetDriverId()); err != nil {
		return nil, toStatus(err)
	}
	return &driverv1.TakeOfflineResponse{}, nil
}

// WatchPosition implements DriverGatewayService.
func (h *Handler) WatchPosition(req *driverv1.WatchPositionRequest, stream grpc.ServerStreamingServer[driverv1.WatchPositionResponse]) error {
	return toStatus(h.gw.watchPosition(stream.Context(), req.GetDriverId(), h.draining, func(p *commonv1.DriverPosition) error {
		return stream.Send(&driverv1.WatchPositionResponse{Position: p})
	}))
}

// ListFlaggedDrivers implements DriverGatewayService.
func (h *Handler) ListFlaggedDrivers(ctx context.Context, req *driverv1.ListFlaggedDriversRequest) (*driverv1.ListFlaggedDriversResponse, error) {
	return &driverv1.ListFlaggedDriversResponse{Drivers: h.gw.flagged.list(int(req.GetLimit()))}, nil
}

func (h *Handler) action(ctx context.Context, tripID, key, reason string, event commonv1.TripEventType) (*commonv1.Trip, error) {
	p, err := auth.Require(ctx, auth.RoleDriver)
	if err != nil {
		return nil, err
	}
	// Trip errors already carry the right codes (NotFound, FailedPrecondition,
	// PermissionDenied for someone else's trip); pass them through.
	t, err := h.gw.act(ctx, p.Subject, tripID, key, reason, event)
	return t, toStatus(err)
}

// ArriveAtPickup implements DriverService.
func (h *Handler) ArriveAtPickup(ctx context.Context, req *driverv1.ArriveAtPickupRequest) (*driverv1.ArriveAtPickupResponse, error) {
	t, err := h.action(ctx, req.GetTripId(), req.GetIdempotencyKey(), "", commonv1.TripEventType_TRIP_EVENT_TYPE_ARRIVED)
	if err != nil {
		return nil, err
	}
	return &driverv1.ArriveAtPickupResponse{Trip: t}, nil
}

// StartTrip implements DriverService.
func (h *Handler) StartTrip(ctx context.Context, req *driverv1.StartTripRequest) (*driverv1.StartTripResponse, error) {
	t, err := h.action(ctx, req.GetTripId(), req.GetIdempotencyKey(), "", commonv1.TripEventType_TRIP_EVENT_TYPE_STARTED)
	if err != nil {
		return nil, err
	}
	return &driverv1.StartTripResponse{Trip: t}, nil
}

// CompleteTrip implements DriverService.
func (h *Handler) CompleteTrip(ctx context.Context, req *driverv1.CompleteTripRequest) (*driverv1.CompleteTripResponse, error) {
	t, err := h.action(ctx, req.GetTripId(), req.GetIdempotencyKey(), "", commonv1.TripEventType_TRIP_EVENT_TYPE_COMPLETED)
	if err != nil {
		return nil, err
	}
	return &driverv1.CompleteTripResponse{Trip: t}, nil
}

// CancelTrip implements DriverService. Before pickup the trip store turns a
// driver's cancel into an unassign, so the rider goes back to dispatch.
func (h *Handler) CancelTrip(ctx context.Context, req *driverv1.CancelTripRequest) (*driverv1.CancelTripResponse, error) {
	t, err := h.action(ctx, req.GetTripId(), req.GetIdempotencyKey(), req.GetReason(), commonv1.TripEventType_TRIP_EVENT_TYPE_CANCELLED)
	if err != nil {
		return nil, err
	}
	return &driverv1.CancelTripResponse{Trip: t}, nil
}
