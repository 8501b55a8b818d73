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
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/dial"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/matching/ring"
)

// ErrNoOwner means no matching worker is known (none healthy yet).
var ErrNoOwner = status.Error(codes.Unavailable, "no matching worker is available")

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
func (c *Client) PartitionOf(p *commonv1.LatLng) (geo.Cell, error) {
	return PartitionOf(p, c.partRes)
}

// PartitionOf returns the partition (H3 cell at res) of a position.
func PartitionOf(p *commonv1.LatLng, res int) (geo.Cell, error) {
	if p == nil {
		return 0, status.Error(codes.InvalidArgument, "position is required")
	}
	cell, err := geo.CellAt(geo.LatLng{Lat: p.GetLat(), Lng: p.GetLng()}, res)
	if err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "position: %v", err)
	}
	return cell, nil
}

// Owner returns the member owning partition in the current membership.
func (c *Client) Owner(partition geo.Cell) (ring.Member, error) {
	r, _ := c.membership.Ring()
	m, ok := r.Owner(uint64(partition))
	if !ok {
		return ring.Member{}, ErrNoOwner
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

// NotOwnerOf extracts the NotOwner detail of an ABORTED status.
func NotOwnerOf(err error) (*commonv1.NotOwner, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Aborted {
		return nil, false
	}
	for _, d := range st.Details() {
		if no, ok := d.(*commonv1.NotOwner); ok {
			return no, true
		}
	}
	return nil, false
}

// NotOwnerError builds the ABORTED status a worker returns for a partition
// it does not own.
func NotOwnerError(partition geo.Cell, owner ring.Member, found bool) error {
	st := status.New(codes.Aborted, fmt.Sprintf("partition %s is not owned here", partition))
	if !found {
		return status.Errorf(codes.Unavailable, "partition %s has no owner", partition)
	}
	withDetail, err := st.WithDetails(&commonv1.NotOwner{Partition: partition.String(), OwnerId: owner.ID, OwnerAddress: owner.Address})
	if err != nil {
		return st.Err()
	}
	return withDetail.Err()
}

// route calls fn on the owner of the partition holding p, retrying once on
// the owner a NotOwner answer names (or on the re-resolved owner).
func route[T any](ctx context.Context, c *Client, p *commonv1.LatLng, fn func(context.Context, matchingv1.MatchingServiceClient) (T, error)) (T, error) {
	var zero T
	partition, err := c.PartitionOf(p)
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
	next := no.GetOwnerAddress()
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
		return nil, status.Errorf(codes.InvalidArgument, "cell: %v", err)
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

// ProductKey is a product's name in the supply index and price tables
// ("standard", "xl", …); "" for UNSPECIFIED.
func ProductKey(p commonv1.Product) string {
	if p == commonv1.Product_PRODUCT_UNSPECIFIED {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(p.String(), "PRODUCT_"))
}

// ProductOf is the inverse of ProductKey (UNSPECIFIED for unknown keys).
func ProductOf(key string) commonv1.Product {
	return commonv1.Product(commonv1.Product_value["PRODUCT_"+strings.ToUpper(key)])
}
