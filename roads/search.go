package roads

// searchSpace is the per-search state of a Dijkstra: tentative costs with
// generation stamps (so a reset costs nothing) and a binary heap with lazy
// deletion.
type searchSpace struct {
	lab  []label
	gen  uint32
	heap costHeap
}

// label keeps a node's cost, stamp and the node it was reached from in 16
// bytes (the parent fills what would be padding; Path follows it).
type label struct {
	d     uint64
	stamp uint32
	par   uint32
}

// noParent marks a node a search started at (an endpoint of a snap).
const noParent = ^uint32(0)

func newSearchSpace(n int) *searchSpace {
	return &searchSpace{lab: make([]label, n), gen: 1}
}

func (s *searchSpace) reset() {
	s.gen++
	if s.gen == 0 { // wrapped: clear the stamps once
		clear(s.lab)
		s.gen = 1
	}
	s.heap.items = s.heap.items[:0]
}

// dist returns v's tentative cost in this search.
func (s *searchSpace) dist(v uint32) (uint64, bool) {
	l := &s.lab[v]
	if l.stamp != s.gen {
		return noArc, false
	}
	return l.d, true
}

// relax lowers v's cost to d if that is an improvement and queues it; v is
// a start of the search.
func (s *searchSpace) relax(v uint32, d uint64) { s.relaxFrom(v, d, noParent) }

// relaxFrom is relax for v reached over an arc from node from.
func (s *searchSpace) relaxFrom(v uint32, d uint64, from uint32) {
	l := &s.lab[v]
	if l.stamp == s.gen && l.d <= d {
		return
	}
	l.stamp, l.d, l.par = s.gen, d, from
	s.heap.push(heapItem{d, v})
}

type heapItem struct {
	cost uint64
	node uint32
}

// costHeap is a binary min-heap; stale entries are skipped by the caller.
type costHeap struct{ items []heapItem }

func (h *costHeap) empty() bool     { return len(h.items) == 0 }
func (h *costHeap) minCost() uint64 { return h.items[0].cost }

func (h *costHeap) push(it heapItem) {
	h.items = append(h.items, it)
	i := len(h.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h.items[p].cost <= it.cost {
			break
		}
		h.items[i] = h.items[p]
		i = p
	}
	h.items[i] = it
}

func (h *costHeap) pop() (uint32, uint64) {
	top := h.items[0]
	last := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	n := len(h.items)
	if n > 0 {
		i := 0
		for {
			l := 2*i + 1
			if l >= n {
				break
			}
			m := l
			if r := l + 1; r < n && h.items[r].cost < h.items[l].cost {
				m = r
			}
			if h.items[m].cost >= last.cost {
				break
			}
			h.items[i] = h.items[m]
			i = m
		}
		h.items[i] = last
	}
	return top.node, top.cost
}
