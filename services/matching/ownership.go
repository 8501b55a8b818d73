package matching

import (
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/services/matching/matchingapi"
	"github.com/hexride/hexride/services/matching/ring"
)

// ownership answers which worker owns a partition, in this worker's view
// of the membership. It owns no state: the membership does; the engine,
// search and recovery each ask it the same way, so they agree on the owner.
type ownership struct {
	membership   ring.Membership
	self         ring.Member
	partitionRes int
}

// partitionOf returns the partition of a position.
func (o ownership) partitionOf(p geo.LatLng) (matchingapi.Partition, error) {
	return matchingapi.PartitionOf(p, o.partitionRes)
}

// partitionOfCell returns the partition holding an index cell.
func (o ownership) partitionOfCell(c geo.Cell) (matchingapi.Partition, error) {
	return matchingapi.PartitionOfCell(c, o.partitionRes)
}

// owner returns the owner of partition and whether it is this worker.
func (o ownership) owner(partition matchingapi.Partition) (ring.Member, bool, bool) {
	r, _ := o.membership.Ring()
	m, ok := r.Owner(partition.RoutingKey())
	return m, ok, ok && m.ID == o.self.ID
}

// checkOwner returns the partition of p if this worker owns it, else a
// *matchingapi.NotOwnerError naming the owner (ErrNoOwner if none).
func (o ownership) checkOwner(p geo.LatLng) (matchingapi.Partition, error) {
	partition, err := o.partitionOf(p)
	if err != nil {
		return 0, err
	}
	return partition, o.ownsPartition(partition)
}

// ownsPartition is nil if this worker owns partition, else the redirect.
func (o ownership) ownsPartition(partition matchingapi.Partition) error {
	m, found, mine := o.owner(partition)
	switch {
	case mine:
		return nil
	case !found:
		return matchingapi.ErrNoOwner
	}
	return &matchingapi.NotOwnerError{Partition: partition, Owner: m}
}

// ownedFunc reports whether this worker owns a partition, in one view of
// the membership, remembering each partition's answer.
func (o ownership) ownedFunc() func(matchingapi.Partition) bool {
	r, _ := o.membership.Ring()
	owned := map[matchingapi.Partition]bool{}
	return func(p matchingapi.Partition) bool {
		mine, ok := owned[p]
		if !ok {
			m, found := r.Owner(p.RoutingKey())
			mine = found && m.ID == o.self.ID
			owned[p] = mine
		}
		return mine
	}
}

// alone reports whether this worker is the only one (nothing to ask).
func (o ownership) alone() bool {
	r, _ := o.membership.Ring()
	if r.Len() != 1 {
		return r.Len() == 0
	}
	// Not r.Owner: with a region map the owner depends on the partition.
	return r.Members()[0].ID == o.self.ID
}
