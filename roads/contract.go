package roads

import (
	"context"
	"fmt"
	"time"
)

// Contraction hierarchies (Geisberger et al. 2008), the plain version:
//
//   - Nodes are contracted one at a time, cheapest first. The priority is
//     2×(shortcuts needed − arcs removed) + contracted neighbours + level
//     (1 + the highest level among contracted neighbours), kept in an
//     indexed heap; when a node is contracted its neighbours' priorities are
//     recomputed, and a popped node whose priority went up is pushed back
//     (lazy update).
//   - Contracting v adds a shortcut u→w for each pair of remaining
//     neighbours u→v→w unless a witness search from u (Dijkstra that avoids
//     v, bounded by the via cost and by a settled-node limit) finds a path
//     no longer than the one via v. A bounded search only ever adds
//     unneeded shortcuts, never loses a path, so queries stay exact.
//   - The node's arcs to still-uncontracted nodes become its upward arcs.
//
// Nodes are then renumbered by contraction order, so the query graph is two
// flat arrays where every arc points to a higher id.

const (
	witnessLimitSimulate = 60   // settled nodes per witness search when estimating a priority
	witnessLimitContract = 1000 // … and when actually contracting
)

type chArc struct {
	to uint32
	w  uint64
}

type contractor struct {
	out, in  [][]chArc
	done     []bool
	deleted  []int32
	level    []int32
	heap     prioHeap
	wit      *searchSpace
	shortcut int
}

func contract(ctx context.Context, b *baseGraph, progress func(string)) (*Graph, int, error) {
	n := len(b.lat)
	c := &contractor{
		out:     make([][]chArc, n),
		in:      make([][]chArc, n),
		done:    make([]bool, n),
		deleted: make([]int32, n),
		level:   make([]int32, n),
		wit:     newSearchSpace(n),
	}
	for _, a := range b.edges() {
		c.addArc(a.from, a.to, a.w)
	}
	upOut := make([][]chArc, n) // v → higher, for forward searches
	upIn := make([][]chArc, n)  // higher → v, stored at v, for backward searches
	rank := make([]uint32, n)

	c.heap.init(n)
	for v := range n {
		c.heap.push(uint32(v), c.priority(uint32(v)))
	}
	lastNote := time.Now()
	for order := 0; c.heap.len() > 0; {
		v, p := c.heap.pop()
		if np := c.priority(v); np > p && c.heap.len() > 0 && np > c.heap.minPrio() {
			c.heap.push(v, np) // lazy update
			continue
		}
		if order%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, 0, err
			}
			if time.Since(lastNote) > 2*time.Second {
				progress(fmt.Sprintf("contracting: %d of %d nodes, %d shortcuts", order, n, c.shortcut))
				lastNote = time.Now()
			}
		}
		rank[v] = uint32(order)
		order++
		upOut[v] = append([]chArc(nil), c.out[v]...)
		upIn[v] = append([]chArc(nil), c.in[v]...)
		c.contractNode(v)
		for _, a := range upOut[v] {
			c.level[a.to] = max(c.level[a.to], c.level[v]+1)
			c.deleted[a.to]++
			c.heap.update(a.to, c.priority(a.to))
		}
		for _, a := range upIn[v] {
			c.level[a.to] = max(c.level[a.to], c.level[v]+1)
			c.deleted[a.to]++
			c.heap.update(a.to, c.priority(a.to))
		}
	}

	// Renumber by rank.
	g := &Graph{lat: make([]int32, n), lng: make([]int32, n)}
	for v := range n {
		g.lat[rank[v]], g.lng[rank[v]] = b.lat[v], b.lng[v]
	}
	g.segs = make([]segment, len(b.segs))
	for i, s := range b.segs {
		g.segs[i] = segment{rank[s.u], rank[s.v], s.fwd, s.bwd}
	}
	g.upFirst, g.upHead, g.upW = flatten(n, rank, upOut)
	g.dnFirst, g.dnHead, g.dnW = flatten(n, rank, upIn)
	return g, c.shortcut, nil
}

func flatten(n int, rank []uint32, lists [][]chArc) (first, head []uint32, w []uint64) {
	byRank := make([][]chArc, n)
	total := 0
	for v, l := range lists {
		byRank[rank[v]] = l
		total += len(l)
	}
	first = make([]uint32, n+1)
	head = make([]uint32, 0, total)
	w = make([]uint64, 0, total)
	for r, l := range byRank {
		for _, a := range l {
			head = append(head, rank[a.to])
			w = append(w, a.w)
		}
		first[r+1] = uint32(len(head))
	}
	return first, head, w
}

// addArc inserts u→v or lowers its weight.
func (c *contractor) addArc(u, v uint32, w uint64) bool {
	for i := range c.out[u] {
		if c.out[u][i].to == v {
			if w >= c.out[u][i].w {
				return false
			}
			c.out[u][i].w = w
			for j := range c.in[v] {
				if c.in[v][j].to == u {
					c.in[v][j].w = w
				}
			}
			return true
		}
	}
	c.out[u] = append(c.out[u], chArc{v, w})
	c.in[v] = append(c.in[v], chArc{u, w})
	return true
}

func removeArc(l []chArc, to uint32) []chArc {
	for i := range l {
		if l[i].to == to {
			l[i] = l[len(l)-1]
			return l[:len(l)-1]
		}
	}
	return l
}

// shortcuts calls add(u, w, weight) for every shortcut contracting v needs
// and returns how many there are.
func (c *contractor) shortcuts(v uint32, limit int, add func(u, w uint32, weight uint64)) int {
	count := 0
	for _, ia := range c.in[v] {
		u := ia.to
		var maxVia uint64
		any := false
		for _, oa := range c.out[v] {
			if oa.to != u {
				maxVia = max(maxVia, ia.w+oa.w)
				any = true
			}
		}
		if !any {
			continue
		}
		c.witness(u, v, maxVia, limit)
		for _, oa := range c.out[v] {
			if oa.to == u {
				continue
			}
			via := ia.w + oa.w
			if d, ok := c.wit.dist(oa.to); ok && d <= via {
				continue
			}
			count++
			if add != nil {
				add(u, oa.to, via)
			}
		}
	}
	return count
}

// witness runs a Dijkstra from u in the remaining graph without skip, until
// it passes maxCost or has settled limit nodes.
func (c *contractor) witness(u, skip uint32, maxCost uint64, limit int) {
	s := c.wit
	s.reset()
	s.relax(u, 0)
	settled := 0
	for !s.heap.empty() {
		x, d := s.heap.pop()
		if d > s.lab[x].d {
			continue // stale entry
		}
		if d > maxCost || settled >= limit {
			return
		}
		settled++
		for _, a := range c.out[x] {
			if a.to != skip {
				s.relax(a.to, d+a.w)
			}
		}
	}
}

func (c *contractor) priority(v uint32) int32 {
	added := c.shortcuts(v, witnessLimitSimulate, nil)
	removed := len(c.in[v]) + len(c.out[v])
	return int32(2*(added-removed)) + c.deleted[v] + c.level[v]
}

func (c *contractor) contractNode(v uint32) {
	type sc struct {
		u, w uint32
		wt   uint64
	}
	var add []sc
	c.shortcuts(v, witnessLimitContract, func(u, w uint32, wt uint64) { add = append(add, sc{u, w, wt}) })
	for _, a := range c.out[v] {
		c.in[a.to] = removeArc(c.in[a.to], v)
	}
	for _, a := range c.in[v] {
		c.out[a.to] = removeArc(c.out[a.to], v)
	}
	c.out[v], c.in[v] = nil, nil
	c.done[v] = true
	for _, s := range add {
		if c.addArc(s.u, s.w, s.wt) {
			c.shortcut++
		}
	}
}

// prioHeap is an indexed binary min-heap of nodes by int32 priority.
type prioHeap struct {
	nodes []uint32
	prio  []int32
	pos   []int32 // index in nodes, -1 if absent
}

func (h *prioHeap) init(n int) {
	h.pos = make([]int32, n)
	for i := range h.pos {
		h.pos[i] = -1
	}
}

func (h *prioHeap) len() int       { return len(h.nodes) }
func (h *prioHeap) minPrio() int32 { return h.prio[h.nodes[0]] }
func (h *prioHeap) less(i, j int) bool {
	pi, pj := h.prio[h.nodes[i]], h.prio[h.nodes[j]]
	return pi < pj || (pi == pj && h.nodes[i] < h.nodes[j])
}

func (h *prioHeap) push(v uint32, p int32) {
	if len(h.prio) < len(h.pos) {
		h.prio = make([]int32, len(h.pos))
	}
	h.prio[v] = p
	h.nodes = append(h.nodes, v)
	h.pos[v] = int32(len(h.nodes) - 1)
	h.up(len(h.nodes) - 1)
}

func (h *prioHeap) pop() (uint32, int32) {
	v := h.nodes[0]
	last := len(h.nodes) - 1
	h.swap(0, last)
	h.nodes = h.nodes[:last]
	h.pos[v] = -1
	if last > 0 {
		h.down(0)
	}
	return v, h.prio[v]
}

// update changes v's priority if v is in the heap.
func (h *prioHeap) update(v uint32, p int32) {
	i := h.pos[v]
	if i < 0 {
		return
	}
	old := h.prio[v]
	h.prio[v] = p
	if p < old {
		h.up(int(i))
	} else {
		h.down(int(i))
	}
}

func (h *prioHeap) swap(i, j int) {
	h.nodes[i], h.nodes[j] = h.nodes[j], h.nodes[i]
	h.pos[h.nodes[i]] = int32(i)
	h.pos[h.nodes[j]] = int32(j)
}

func (h *prioHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *prioHeap) down(i int) {
	n := len(h.nodes)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h.swap(i, m)
		i = m
	}
}
