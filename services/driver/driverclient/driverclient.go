// Package driverclient is how other services reach driver gateways: the
// internal DriverGatewayService of the gateway instance that holds a
// driver's stream (matching pushes offers and trip updates through it; the
// console takes drivers offline and lists flagged ones). Gateways are
// addressed by the address each driver's location samples carry, so every
// call names its gateway.
package driverclient

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/infra/rpcerror"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
)

// Errors a call can be matched against with errors.Is.
var (
	// ErrNoGateway: the driver's entry names no gateway to reach it by.
	ErrNoGateway = errors.New("no gateway address for the driver")
	// ErrNotConnected: the gateway holds no stream for the driver (it
	// disconnected or moved to another gateway).
	ErrNotConnected = errors.New("driver is not connected to this gateway")
	// ErrDriverBusy is a pushed offer refused because the driver holds
	// another (any worker's) that still binds it, or is on a trip.
	ErrDriverBusy = errors.New("driver holds another offer or is on a trip")
)

// Conns dials gateways by address (infra/dial.Pool does).
type Conns interface {
	Get(target string) (*grpc.ClientConn, error)
}

// Client calls driver gateways.
type Client struct {
	conns Conns
}

// New returns a client dialing through conns.
func New(conns Conns) *Client { return &Client{conns: conns} }

func (c *Client) at(gateway string) (driverv1.DriverGatewayServiceClient, error) {
	if gateway == "" {
		return nil, ErrNoGateway
	}
	cc, err := c.conns.Get(gateway)
	if err != nil {
		return nil, err
	}
	return driverv1.NewDriverGatewayServiceClient(cc), nil
}

// Push delivers msg on the driver's stream held by gateway.
func (c *Client) Push(ctx context.Context, gateway, driverID string, msg *driverv1.ConnectResponse) error {
	gw, err := c.at(gateway)
	if err != nil {
		return err
	}
	_, err = gw.PushToDriver(ctx, &driverv1.PushToDriverRequest{DriverId: driverID, Message: msg})
	return fromStatus(err)
}

// TakeOffline ends the driver's availability on gateway (a dispatcher's
// action).
func (c *Client) TakeOffline(ctx context.Context, gateway, driverID, reason string) error {
	gw, err := c.at(gateway)
	if err != nil {
		return err
	}
	_, err = gw.TakeOffline(ctx, &driverv1.TakeOfflineRequest{DriverId: driverID, Reason: reason})
	return fromStatus(err)
}

// ListFlagged lists up to limit drivers gateway refused implausible
// samples from.
func (c *Client) ListFlagged(ctx context.Context, gateway string, limit int32) ([]*driverv1.FlaggedDriver, error) {
	gw, err := c.at(gateway)
	if err != nil {
		return nil, err
	}
	resp, err := gw.ListFlaggedDrivers(ctx, &driverv1.ListFlaggedDriversRequest{Limit: limit})
	if err != nil {
		return nil, fromStatus(err)
	}
	return resp.GetDrivers(), nil
}

// WatchPosition calls fn with each position the driver's app reports
// through gateway until ctx ends (nil), fn fails (its error), or the stream
// ends: ErrNotConnected when the driver left that gateway (find its
// gateway again), another error otherwise.
func (c *Client) WatchPosition(ctx context.Context, gateway, driverID string, fn func(*commonv1.DriverPosition) error) error {
	gw, err := c.at(gateway)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := gw.WatchPosition(ctx, &driverv1.WatchPositionRequest{DriverId: driverID})
	if err != nil {
		return fromStatus(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return ErrNotConnected
			}
			return fromStatus(err)
		}
		if err := fn(resp.GetPosition()); err != nil {
			return err
		}
	}
}

func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	out := &rpcerror.Error{Status: st}
	switch st.Code() {
	case codes.NotFound:
		out.Err = ErrNotConnected
	case codes.FailedPrecondition:
		out.Err = ErrDriverBusy
	}
	return out
}
