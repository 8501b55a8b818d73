package ring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func members(n int) []Member {
	out := make([]Member, n)
	for i := range out {
		out[i] = Member{ID: fmt.Sprintf("matching-%d", i), Address: fmt.Sprintf("127.0.0.1:%d", 7000+i)}
	}
	return out
}

func TestOwnerEmpty(t *testing.T) {
	if _, ok := New(nil).Owner(42); ok {
		t.Fatal("empty ring has an owner")
	}
}

func TestOwnerIgnoresOrderAndDuplicates(t *testing.T) {
	ms := members(5)
	a := New(ms)
	b := New([]Member{ms[3], ms[1], ms[4], ms[0], ms[2], ms[1]})
	if !a.Equal(b) {
		t.Fatal("rings differ")
	}
	for p := uint64(0); p < 1000; p++ {
		oa, _ := a.Owner(p * 7919)
		ob, _ := b.Owner(p * 7919)
		if oa != ob {
			t.Fatalf("partition %d: %v vs %v", p, oa, ob)
		}
	}
}

// TestOwnerBalanceAndMinimalMoves checks the two properties partitioning
// relies on: partitions spread evenly, and removing a member moves only the
// partitions it owned (and adding one moves only partitions to it).
func TestOwnerBalanceAndMinimalMoves(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ms := members(4)
	full := New(ms)
	without := New(ms[:3])
	const n = 20000
	counts := map[string]int{}
	for range n {
		p := rng.Uint64()
		owner, _ := full.Owner(p)
		counts[owner.ID]++
		after, _ := without.Owner(p)
		if owner.ID != ms[3].ID && after != owner {
			t.Fatalf("seed %d: partition %x moved from %s to %s though its owner stayed", seed, p, owner.ID, after.ID)
		}
		if owner.ID == ms[3].ID && after.ID == ms[3].ID {
			t.Fatalf("seed %d: partition %x still owned by the removed member", seed, p)
		}
	}
	for _, m := range ms {
		share := float64(counts[m.ID]) / n
		if share < 0.2 || share > 0.3 {
			t.Errorf("seed %d: %s owns %.3f of partitions, want about 0.25", seed, m.ID, share)
		}
	}
}

func TestStaticNotifiesOnChange(t *testing.T) {
	s := NewStatic(members(1)...)
	r1, ch := s.Ring()
	s.Set(members(1)...) // same members: no change
	select {
	case <-ch:
		t.Fatal("notified without a change")
	default:
	}
	s.Set(members(2)...)
	select {
	case <-ch:
	default:
		t.Fatal("not notified")
	}
	r2, _ := s.Ring()
	if r1.Len() != 1 || r2.Len() != 2 {
		t.Fatalf("lens %d %d", r1.Len(), r2.Len())
	}
}

func BenchmarkOwner(b *testing.B) {
	r := New(members(8))
	for i := 0; b.Loop(); i++ {
		r.Owner(uint64(i))
	}
}

// twoRegions places even partition keys in "east" (falling back to
// "west") and odd ones in "west" (falling back to "east").
type twoRegions struct{}

func (twoRegions) Candidates(key uint64) []string {
	if key%2 == 0 {
		return []string{"east", "west"}
	}
	return []string{"west", "east"}
}

func regional(region string, n int) []Member {
	out := make([]Member, n)
	for i := range out {
		out[i] = Member{ID: fmt.Sprintf("%s-%d", region, i), Address: fmt.Sprintf("%s:%d", region, 7000+i), Region: region}
	}
	return out
}

func homeOf(key uint64) string { return twoRegions{}.Candidates(key)[0] }

// TestRegionalOwnership: with a placement, a partition is owned only by
// its region's workers while that region has any; when the last one
// leaves, its partitions move to the fallback region, and back to the
// same owners when the region's workers return; with no candidate region
// left the partition is unowned.
func TestRegionalOwnership(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	east, west := regional("east", 3), regional("west", 2)
	s := NewPlacedStatic(twoRegions{}, append(slices.Clone(east), west...)...)
	both, _ := s.Ring()
	keys := make([]uint64, 5000)
	for i := range keys {
		keys[i] = rng.Uint64()
	}
	counts := map[string]int{}
	for _, k := range keys {
		m, ok := both.Owner(k)
		if !ok || m.Region != homeOf(k) {
			t.Fatalf("seed %d: partition %x (home %s) owned by %+v (%v) while both regions have workers", seed, k, homeOf(k), m, ok)
		}
		counts[m.ID]++
	}
	for _, m := range append(slices.Clone(east), west...) {
		if counts[m.ID] == 0 {
			t.Errorf("seed %d: %s owns nothing", seed, m.ID)
		}
	}

	s.Set(west...) // east's workers all gone
	westOnly, _ := s.Ring()
	for _, k := range keys {
		before, _ := both.Owner(k)
		m, ok := westOnly.Owner(k)
		switch {
		case !ok || m.Region != "west":
			t.Fatalf("seed %d: partition %x owned by %+v (%v) with only west's workers", seed, k, m, ok)
		case homeOf(k) == "west" && m != before:
			t.Fatalf("seed %d: west's partition %x moved from %s to %s though its owner stayed", seed, k, before.ID, m.ID)
		}
	}

	s.Set(append(slices.Clone(west), east[1])...) // one of east's returns
	back, _ := s.Ring()
	for _, k := range keys {
		m, _ := back.Owner(k)
		want := east[1]
		if homeOf(k) == "west" {
			want, _ = both.Owner(k)
		}
		if m != want {
			t.Fatalf("seed %d: partition %x (home %s) owned by %s, want %s", seed, k, homeOf(k), m.ID, want.ID)
		}
	}

	s.Set(Member{ID: "elsewhere", Address: "x:1", Region: "north"})
	none, _ := s.Ring()
	if m, ok := none.Owner(keys[0]); ok {
		t.Fatalf("partition owned by %+v with no worker in its region or fallbacks", m)
	}
}

// TestRegionalOwnerNeverCrosses: for random member sets with workers in
// both regions, no partition is owned outside its home region.
func TestRegionalOwnerNeverCrosses(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	for range 50 {
		ms := append(regional("east", 1+rng.IntN(5)), regional("west", 1+rng.IntN(5))...)
		r := New(ms, WithPlacement(twoRegions{}))
		for range 200 {
			k := rng.Uint64()
			if m, ok := r.Owner(k); !ok || m.Region != homeOf(k) {
				t.Fatalf("seed %d: %d members: partition %x (home %s) owned by %+v", seed, len(ms), k, homeOf(k), m)
			}
		}
	}
}

func BenchmarkOwnerPlaced(b *testing.B) {
	r := New(append(regional("east", 4), regional("west", 4)...), WithPlacement(twoRegions{}))
	for i := 0; b.Loop(); i++ {
		r.Owner(uint64(i))
	}
}
