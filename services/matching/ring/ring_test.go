package ring

import (
	"fmt"
	"math/rand/v2"
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
