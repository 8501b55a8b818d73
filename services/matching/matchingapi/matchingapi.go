// Package matchingapi is what both sides of the matching service's API
// share: the partition (a typed key, so a partition is never a bare cell,
// integer or string), the NotOwner redirect a worker answers for a
// partition it does not own, and its conversion to and from a gRPC status.
// The matching server and matchingclient import it; other services reach
// it through matchingclient.
package matchingapi

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	"github.com/hexride/hexride/services/matching/ring"
)

// Partition is a matching partition: the H3 cell, at the partition
// resolution, that holds a position. Its owner is the ring's owner of its
// RoutingKey.
type Partition geo.Cell

// PartitionOf returns the partition holding p at resolution res.
func PartitionOf(p geo.LatLng, res int) (Partition, error) {
	c, err := geo.CellAt(p, res)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalidPosition, p)
	}
	return Partition(c), nil
}

// PartitionOfCell returns the partition holding cell c (c at res or finer).
func PartitionOfCell(c geo.Cell, res int) (Partition, error) {
	p, err := c.Parent(res)
	if err != nil {
		return 0, err
	}
	return Partition(p), nil
}

// ParsePartition reads a partition's String form.
func ParsePartition(s string) (Partition, error) {
	c, err := geo.ParseCell(s)
	if err != nil || !c.IsValid() {
		return 0, fmt.Errorf("%w: %q", ErrInvalidPartition, s)
	}
	return Partition(c), nil
}

// Cell is the partition's H3 cell.
func (p Partition) Cell() geo.Cell { return geo.Cell(p) }

// String is the H3 index in hex, as the API carries partitions.
func (p Partition) String() string { return geo.Cell(p).String() }

// RoutingKey is what the ring hashes to pick the owner. It is the cell
// itself, so Placement can tell the partition back from its key.
func (p Partition) RoutingKey() uint64 { return uint64(p) }

// Placement is the region map as the ring sees it: a partition may be owned
// by the workers of its home region (RegionOfPartition), else of the
// regions that region falls back to. Workers and every caller that routes
// to them (riders, driver gateways, the console) build their rings with
// it, so all compute the same owner.
func Placement(m *dispatch.RegionMap) ring.Placement { return regionPlacement{m} }

type regionPlacement struct{ m *dispatch.RegionMap }

func (p regionPlacement) Candidates(key uint64) []string {
	return p.m.FallbackChain(p.m.RegionOfPartition(geo.Cell(key)))
}

// Errors both sides match with errors.Is.
var (
	// ErrInvalidPosition: a position that is not a valid WGS84 point.
	ErrInvalidPosition = errors.New("position is not a valid latitude/longitude")
	// ErrInvalidPartition: a partition string that is not an H3 cell.
	ErrInvalidPartition = errors.New("partition is not an H3 cell")
	// ErrNoOwner: no passing matching worker is known for the partition.
	ErrNoOwner = errors.New("no matching worker is available for this area; retry shortly")
)

// NotOwnerError is a worker's answer for a partition it does not own; the
// caller retries once on Owner.
type NotOwnerError struct {
	Partition Partition
	Owner     ring.Member
}

func (e *NotOwnerError) Error() string {
	return fmt.Sprintf("partition %s is owned by %s", e.Partition, e.Owner.ID)
}

// notOwnerMessage is what a caller is told: no partition keys or addresses
// in the text (they are in the NotOwner detail, for clients).
const notOwnerMessage = "this matching worker does not own the request's area; retry on the owner named in the NotOwner detail"

// Status is the ABORTED status with a NotOwner detail that carries e.
func (e *NotOwnerError) Status() *status.Status {
	st := status.New(codes.Aborted, notOwnerMessage)
	withDetail, err := st.WithDetails(&commonv1.NotOwner{Partition: e.Partition.String(), OwnerId: e.Owner.ID, OwnerAddress: e.Owner.Address})
	if err != nil {
		return st
	}
	return withDetail
}

// NotOwnerOf extracts the redirect from an ABORTED status with a NotOwner
// detail (as a client receives it) or from a *NotOwnerError.
func NotOwnerOf(err error) (*NotOwnerError, bool) {
	var ne *NotOwnerError
	if errors.As(err, &ne) {
		return ne, true
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Aborted {
		return nil, false
	}
	for _, d := range st.Details() {
		if no, ok := d.(*commonv1.NotOwner); ok {
			p, perr := ParsePartition(no.GetPartition())
			if perr != nil {
				return nil, false
			}
			return &NotOwnerError{Partition: p, Owner: ring.Member{ID: no.GetOwnerId(), Address: no.GetOwnerAddress()}}, true
		}
	}
	return nil, false
}
