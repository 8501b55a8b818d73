// Package ring decides which matching worker owns which partition: rendezvous
// (highest-random-weight) hashing of the partition over the healthy members.
// Every process computes the same owner from the same member list, and when a
// member leaves only its partitions move.
//
// With a Placement (the region map) ownership is regional: a partition is
// hashed only over the members of the first region in its placement's list
// (its home region, then the home's fallbacks) that has any member, so a
// worker never owns a partition of another region while that region has
// workers of its own.
package ring

import (
	"hash/fnv"
	"slices"
	"sync"
)

// Member is one matching worker.
type Member struct {
	// ID is stable for the life of the worker (its discovery service id).
	ID string
	// Address is its gRPC host:port.
	Address string
	// Region is the region the worker runs in (its --region, registered in
	// Consul as the "region" meta key); with a Placement only partitions
	// placed in its region (or falling back to it) can be its.
	Region string
}

// Placement says where a partition may be owned.
type Placement interface {
	// Candidates returns the regions whose workers may own the partition
	// with routing key key, most preferred first: the partition's home
	// region, then the regions it falls back to. The caller does not
	// modify the slice.
	Candidates(key uint64) []string
}

// Ring is an immutable member list with owner lookup.
type Ring struct {
	members   []Member
	seeds     []uint64 // hash of each member id, so Owner hashes 8 bytes per member
	placement Placement
	byRegion  map[string][]int // member indexes per region (with a placement)
}

// Option configures a Ring.
type Option func(*Ring)

// WithPlacement makes ownership regional (see the package comment). Every
// process of a deployment must use the same placement (the same region
// map), or they disagree on owners.
func WithPlacement(p Placement) Option { return func(r *Ring) { r.placement = p } }

// New builds a ring; member order does not matter, duplicates by ID collapse.
func New(members []Member, opts ...Option) *Ring {
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	ms = slices.CompactFunc(ms, func(a, b Member) bool { return a.ID == b.ID })
	seeds := make([]uint64, len(ms))
	for i, m := range ms {
		h := fnv.New64a()
		h.Write([]byte(m.ID))
		seeds[i] = h.Sum64()
	}
	r := &Ring{members: ms, seeds: seeds}
	for _, o := range opts {
		o(r)
	}
	if r.placement != nil {
		r.byRegion = map[string][]int{}
		for i, m := range ms {
			r.byRegion[m.Region] = append(r.byRegion[m.Region], i)
		}
	}
	return r
}

// Members returns the members sorted by ID.
func (r *Ring) Members() []Member { return slices.Clone(r.members) }

// Len is the number of members.
func (r *Ring) Len() int { return len(r.members) }

// Owner returns the member with the highest weight for the partition key;
// false when the ring is empty. With a placement: among the members of the
// first of the partition's candidate regions that has any; false when none
// has (the partition is unowned until a worker of one of them joins).
func (r *Ring) Owner(partition uint64) (Member, bool) {
	if r.placement == nil {
		if len(r.members) == 0 {
			return Member{}, false
		}
		best, bestW := 0, uint64(0)
		for i, seed := range r.seeds {
			w := mix(seed ^ partition)
			if i == 0 || w > bestW {
				best, bestW = i, w
			}
		}
		return r.members[best], true
	}
	for _, region := range r.placement.Candidates(partition) {
		idx := r.byRegion[region]
		if len(idx) == 0 {
			continue
		}
		// The same weights as without a placement, over a subset: within a
		// region, a member leaving moves only its own partitions.
		best, bestW := idx[0], mix(r.seeds[idx[0]]^partition)
		for _, i := range idx[1:] {
			if w := mix(r.seeds[i] ^ partition); w > bestW {
				best, bestW = i, w
			}
		}
		return r.members[best], true
	}
	return Member{}, false
}

// Equal reports whether both rings have the same members at the same
// addresses and regions.
func (r *Ring) Equal(o *Ring) bool {
	return slices.Equal(r.members, o.members)
}

// mix is splitmix64's finalizer: a bijection that spreads every input bit
// over the output, so nearby partition keys get unrelated weights.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Membership is the live list of healthy matching workers.
type Membership interface {
	// Ring returns the current ring and a channel closed when it changes.
	Ring() (*Ring, <-chan struct{})
}

// Static is a Membership whose members change only when Set is called (used
// by `hexride dev`, where one worker owns every partition, by tests, and
// fed from Consul by the node).
type Static struct {
	mu      sync.Mutex
	ring    *Ring
	opts    []Option
	changed chan struct{}
}

var _ Membership = (*Static)(nil)

// NewStatic starts with the given members.
func NewStatic(members ...Member) *Static {
	return &Static{ring: New(members), changed: make(chan struct{})}
}

// NewPlacedStatic starts with the given members; every ring it hands out
// has placement p.
func NewPlacedStatic(p Placement, members ...Member) *Static {
	opts := []Option{WithPlacement(p)}
	return &Static{ring: New(members, opts...), opts: opts, changed: make(chan struct{})}
}

// Ring implements Membership.
func (s *Static) Ring() (*Ring, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ring, s.changed
}

// Set replaces the members and wakes watchers.
func (s *Static) Set(members ...Member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := New(members, s.opts...)
	if next.Equal(s.ring) {
		return
	}
	s.ring = next
	close(s.changed)
	s.changed = make(chan struct{})
}
