// Package matchingclient is how other services reach the matching workers:
// it computes the owner of the partition a request is about from the live
// member list (the same rendezvous hash every process runs), calls it, and
// when the worker answers ABORTED with a NotOwner detail (its view of the
// membership differs for a moment) re-resolves and retries once.
package matchingclient

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/dial"
	"github.com/hexride/hexride/infra/rpcerror"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/matching/matchingapi"
	"github.com/hexride/hexride/services/matching/ring"
)

// What callers of the matching service share with it (matchingapi).
type (
	// Partition is a matching partition (a typed H3 parent cell).
	Partition = matchingapi.Partition
	// Member is a matching worker.
	Member = ring.Member
	// NotOwnerError is a worker's redirect to a partition's owner.
	NotOwnerError = matchingapi.NotOwnerError
)

// Placement is the region map as the ring sees it (matchingapi.Placement):
// build the Membership given to New with it, as the workers do.
func Placement(m *dispatch.RegionMap) ring.Placement { return matchingapi.Placement(m) }

// ErrNoOwner means no matching worker is known for the area (none healthy
// yet); the status it travels as is Unavailable.
var ErrNoOwner = matchingapi.ErrNoOwner

// errNoOwner is ErrNoOwner as a status, for callers passing it on.
var errNoOwner = rpcerror.New(status.New(codes.Unavailable, ErrNoOwner.Error()), ErrNoOwner)

// invalidPosition is a position the client cannot route, as InvalidArgument.
func invalidPosition(err error) error {
	return rpcerror.New(status.New(codes.InvalidArgument, err.Error()), err)
}

// Client routes calls to partition owners.
type Client struct {
	membership ring.Membership
	pool       *dial.Pool
	partRes    int
}

// New returns a client for partitions at partitionResolution.
func New(membership ring.Membership, pool *dial.Pool, partitionResolution int) *Client {
	return &Client{membership: membership, pool: pool, partRes: partitionResolution}
}

// PartitionOf returns the partition a position lies in.
func (c *Client) PartitionOf(p geo.LatLng) (Partition, error) {
	part, err := matchingapi.PartitionOf(p, c.partRes)
	if err != nil {
		return 0, invalidPosition(err)
	}
	return part, nil
}

// Owner returns the member owning partition in the current membership.
func (c *Client) Owner(partition Partition) (ring.Member, error) {
	r, _ := c.membership.Ring()
	m, ok := r.Owner(partition.RoutingKey())
	if !ok {
		return ring.Member{}, errNoOwner
	}
	return m, nil
}

// At returns a client for the worker at addr (no routing).
func (c *Client) At(addr string) (matchingv1.MatchingServiceClient, error) {
	cc, err := c.pool.Get(addr)
	if err != nil {
		return nil, err
	}
	return matchingv1.NewMatchingServiceClient(cc), nil
}

// Members returns the current matching workers.
func (c *Client) Members() []ring.Member {
	r, _ := c.membership.Ring()
	return r.Members()
}

// NotOwnerOf extracts a worker's redirect from an error a call returned.
func NotOwnerOf(err error) (*NotOwnerError, bool) { return matchingapi.NotOwnerOf(err) }

// route calls fn on the owner of the partition holding p, retrying once on
// the owner a NotOwner answer names (or on the re-resolved owner).
func route[T any](ctx context.Context, c *Client, p *commonv1.LatLng, fn func(context.Context, matchingv1.MatchingServiceClient) (T, error)) (T, error) {
	var zero T
	if p == nil {
		return zero, invalidPosition(matchingapi.ErrInvalidPosition)
	}
	partition, err := c.PartitionOf(geo.LatLng{Lat: p.GetLat(), Lng: p.GetLng()})
	if err != nil {
		return zero, err
	}
	owner, err := c.Owner(partition)
	if err != nil {
		return zero, err
	}
	client, err := c.At(owner.Address)
	if err != nil {
		return zero, err
	}
	out, err := fn(ctx, client)
	no, ok := NotOwnerOf(err)
	if !ok {
		return out, err
	}
	// Our view and the worker's differ. Prefer a fresh resolution if it moved;
	// otherwise trust the worker's view.
	next := no.Owner.Address
	if again, rerr := c.Owner(partition); rerr == nil && again.Address != owner.Address {
		next = again.Address
	}
	if next == "" || next == owner.Address {
		return out, err
	}
	client, cerr := c.At(next)
	if cerr != nil {
		return zero, errors.Join(err, cerr)
	}
	return fn(ctx, client)
}

// Dispatch hands a trip to the owner of its pickup.
func (c *Client) Dispatch(ctx context.Context, req *matchingv1.DispatchRequest, opts ...grpc.CallOption) (*matchingv1.DispatchResponse, error) {
	return route(ctx, c, req.GetTrip().GetPickup(), func(ctx context.Context, mc matchingv1.MatchingServiceClient) (*matchingv1.DispatchResponse, error) {
		return mc.Dispatch(ctx, req, opts...)
	})
}

// CancelDispatch stops the dispatch of a trip on the owner of its pickup.
func (c *Client) CancelDispatch(ctx context.Context, req *matchingv1.CancelDispatchRequest, opts ...grpc.CallOption) (*matchingv1.CancelDispatchResponse, error) {
	return route(ctx, c, req.GetPickup(), func(ctx context.Context, mc matchingv1.MatchingServiceClient) (*matchingv1.CancelDispatchResponse, error) {
		return mc.CancelDispatch(ctx, req, opts...)
	})
}

// ReplyOffer delivers a driver's reply to the owner of the trip's pickup.
func (c *Client) ReplyOffer(ctx context.Context, req *matchingv1.ReplyOfferRequest, opts ...grpc.CallOption) (*matchingv1.ReplyOfferResponse, error) {
	return route(ctx, c, req.GetPickup(), func(ctx context.Context, mc matchingv1.MatchingServiceClient) (*matchingv1.ReplyOfferResponse, error) {
		return mc.ReplyOffer(ctx, req, opts...)
	})
}

// NearbyDrivers asks the owner of the centre, which merges answers from the
// owners of neighbouring partitions.
func (c *Client) NearbyDrivers(ctx context.Context, req *matchingv1.NearbyDriversRequest, opts ...grpc.CallOption) (*matchingv1.NearbyDriversResponse, error) {
	return route(ctx, c, req.GetCenter(), func(ctx context.Context, mc matchingv1.MatchingServiceClient) (*matchingv1.NearbyDriversResponse, error) {
		return mc.NearbyDrivers(ctx, req, opts...)
	})
}

// CellStats asks the owner of the cell's partition about one cell.
func (c *Client) CellStats(ctx context.Context, cell geo.Cell, opts ...grpc.CallOption) (*matchingv1.CellStat, error) {
	center, err := cell.Center()
	if err != nil {
		return nil, invalidPosition(fmt.Errorf("%w: cell %s", matchingapi.ErrInvalidPosition, cell))
	}
	resp, err := route(ctx, c, &commonv1.LatLng{Lat: center.Lat, Lng: center.Lng}, func(ctx context.Context, mc matchingv1.MatchingServiceClient) (*matchingv1.CellStatsResponse, error) {
		return mc.CellStats(ctx, &matchingv1.CellStatsRequest{Cells: []string{cell.String()}}, opts...)
	})
	if err != nil {
		return nil, err
	}
	for _, s := range resp.GetCells() {
		if s.GetCell() == cell.String() {
			return s, nil
		}
	}
	return &matchingv1.CellStat{Cell: cell.String(), SurgeMultiplier: 1}, nil
}
