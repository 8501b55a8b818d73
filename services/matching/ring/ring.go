// Package ring decides which matching worker owns which partition: rendezvous
// (highest-random-weight) hashing of the partition over the healthy members.
// Every process computes the same owner from the same member list, and when a
// member leaves only its partitions move.
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
}

// Ring is an immutable member list with owner lookup.
type Ring struct {
	members []Member
	seeds   []uint64 // hash of each member id, so Owner hashes 8 bytes per member
}

// New builds a ring; member order does not matter, duplicates by ID collapse.
func New(members []Member) *Ring {
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
	return &Ring{members: ms, seeds: seeds}
}

// Members returns the members sorted by ID.
func (r *Ring) Members() []Member { return slices.Clone(r.members) }

// Len is the number of members.
func (r *Ring) Len() int { return len(r.members) }

// Owner returns the member with the highest weight for the partition key;
// false when the ring is empty.
func (r *Ring) Owner(partition uint64) (Member, bool) {
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

// Equal reports whether both rings have the same members at the same
// addresses.
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
// by `hexride dev`, where one worker owns every partition, and by tests).
type Static struct {
	mu      sync.Mutex
	ring    *Ring
	changed chan struct{}
}

var _ Membership = (*Static)(nil)

// NewStatic starts with the given members.
func NewStatic(members ...Member) *Static {
	return &Static{ring: New(members), changed: make(chan struct{})}
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
	next := New(members)
	if next.Equal(s.ring) {
		return
	}
	s.ring = next
	close(s.changed)
	s.changed = make(chan struct{})
}
