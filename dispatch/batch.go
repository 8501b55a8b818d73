package dispatch

import (
	"cmp"
	"container/heap"
	"fmt"
	"math"
	"slices"
)

// BatchOption is one driver a request may get, at a cost (seconds of pickup
// time; lower is better). Drivers not listed are impossible for the request
// ("infinite cost"): sparse lists of the nearest N drivers keep batches fast.
type BatchOption struct {
	DriverID string
	Cost     float64
}

// BatchRequest is one trip in a batching window.
type BatchRequest struct {
	TripID  string
	Options []BatchOption
}

// BatchOptionsFromRanked turns a ranked candidate list into options.
func BatchOptionsFromRanked(ranked []Ranked) []BatchOption {
	out := make([]BatchOption, len(ranked))
	for i, r := range ranked {
		out[i] = BatchOption{DriverID: r.ID, Cost: r.Score}
	}
	return out
}

// BatchConfig configures AssignBatch.
type BatchConfig struct {
	// MaxExact is the largest number of requests solved exactly; larger
	// batches fall back to greedy (default 2000).
	MaxExact int
}

// DefaultBatchConfig returns the defaults.
func DefaultBatchConfig() BatchConfig { return BatchConfig{MaxExact: 2000} }

// Validate checks the config.
func (c BatchConfig) Validate() error {
	if c.MaxExact < 0 {
		return fmt.Errorf("%w: max exact %d", ErrInvalidConfig, c.MaxExact)
	}
	return nil
}

// Assignment pairs a trip with a driver.
type Assignment struct {
	TripID, DriverID string
	Cost             float64
}

// BatchResult is the plan for one window. The host commits each assignment
// with trip.Assign; a lost race sends that trip back to its cascade.
type BatchResult struct {
	Assignments []Assignment // in request order
	Unassigned  []string     // trip ids, in request order
	Total       float64      // sum of assignment costs
	Exact       bool         // false if the greedy fallback was used
}

// ErrInvalidBatch: a batch option has a negative or non-finite cost, or a
// trip id repeats.
var ErrInvalidBatch = fmt.Errorf("%w: invalid batch", ErrInvalidQuery)

// AssignBatch assigns requests to distinct drivers. Exactly (up to
// cfg.MaxExact requests) it first maximises the number of trips assigned,
// then minimises the total cost: a min-cost assignment on the sparse
// rectangular cost matrix where each request also has a private "stay
// unassigned" column of prohibitive cost. It is solved by successive
// shortest augmenting paths (Dijkstra with Johnson potentials, the sparse
// form of Jonker–Volgenant): O(n · E log E) worst case, and in practice each
// augmentation touches only the few requests competing for a driver.
// Deterministic: ties go to the earlier request and option.
func AssignBatch(reqs []BatchRequest, cfg BatchConfig) (BatchResult, error) {
	if err := cfg.Validate(); err != nil {
		return BatchResult{}, err
	}
	p, err := newProblem(reqs)
	if err != nil {
		return BatchResult{}, err
	}
	if len(reqs) > cfg.MaxExact {
		return p.greedy(), nil
	}
	return p.exact(), nil
}

// AssignGreedy assigns cheapest option first over the whole batch (the
// fallback for oversized batches, and a baseline).
func AssignGreedy(reqs []BatchRequest) (BatchResult, error) {
	p, err := newProblem(reqs)
	if err != nil {
		return BatchResult{}, err
	}
	return p.greedy(), nil
}

type arc struct {
	col  int32
	cost float64
}

type problem struct {
	reqs    []BatchRequest
	drivers []string
	adj     [][]arc // per request, real driver columns only
	maxCost float64
}

func newProblem(reqs []BatchRequest) (*problem, error) {
	p := &problem{reqs: reqs, adj: make([][]arc, len(reqs))}
	col := map[string]int32{}
	trips := make(map[string]struct{}, len(reqs))
	for i, r := range reqs {
		if _, dup := trips[r.TripID]; dup {
			return nil, fmt.Errorf("%w: trip %q twice", ErrInvalidBatch, r.TripID)
		}
		trips[r.TripID] = struct{}{}
		seen := map[int32]int{}
		for _, o := range r.Options {
			if !(o.Cost >= 0) || math.IsInf(o.Cost, 0) {
				return nil, fmt.Errorf("%w: trip %q driver %q cost %v", ErrInvalidBatch, r.TripID, o.DriverID, o.Cost)
			}
			j, ok := col[o.DriverID]
			if !ok {
				j = int32(len(p.drivers))
				col[o.DriverID] = j
				p.drivers = append(p.drivers, o.DriverID)
			}
			if k, ok := seen[j]; ok { // duplicate option: keep the cheaper
				p.adj[i][k].cost = min(p.adj[i][k].cost, o.Cost)
				continue
			}
			seen[j] = len(p.adj[i])
			p.adj[i] = append(p.adj[i], arc{col: j, cost: o.Cost})
			p.maxCost = max(p.maxCost, o.Cost)
		}
	}
	return p, nil
}

func (p *problem) result(rowCol []int32, exact bool) BatchResult {
	res := BatchResult{Exact: exact}
	for i, r := range p.reqs {
		j := rowCol[i]
		if j < 0 || int(j) >= len(p.drivers) {
			res.Unassigned = append(res.Unassigned, r.TripID)
			continue
		}
		c := 0.0
		for _, a := range p.adj[i] {
			if a.col == j {
				c = a.cost
			}
		}
		res.Assignments = append(res.Assignments, Assignment{TripID: r.TripID, DriverID: p.drivers[j], Cost: c})
		res.Total += c
	}
	return res
}

func (p *problem) greedy() BatchResult {
	type edge struct {
		row  int
		k    int
		cost float64
	}
	var edges []edge
	for i, as := range p.adj {
		for k, a := range as {
			edges = append(edges, edge{i, k, a.cost})
		}
	}
	slices.SortStableFunc(edges, func(a, b edge) int { return cmp.Compare(a.cost, b.cost) })
	rowCol := make([]int32, len(p.reqs))
	for i := range rowCol {
		rowCol[i] = -1
	}
	taken := make([]bool, len(p.drivers))
	for _, e := range edges {
		j := p.adj[e.row][e.k].col
		if rowCol[e.row] < 0 && !taken[j] {
			rowCol[e.row], taken[j] = j, true
		}
	}
	return p.result(rowCol, false)
}

// exact runs successive shortest paths. Columns 0..m-1 are drivers, column
// m+i is request i's private "unassigned" column (cost U, larger than any
// possible sum of real costs, so cardinality comes first).
func (p *problem) exact() BatchResult {
	n, m := len(p.reqs), len(p.drivers)
	cols := m + n
	unassigned := (p.maxCost + 1) * float64(n+1)
	u := make([]float64, n)
	v := make([]float64, cols)
	rowCol := make([]int32, n)
	for i := range rowCol {
		rowCol[i] = -1
	}
	colRow := make([]int32, cols)
	for i := range colRow {
		colRow[i] = -1
	}
	dist := make([]float64, cols)
	prev := make([]int32, cols) // row that reached the column
	stamp := make([]int32, cols)
	done := make([]int32, cols)
	var final []int32
	h := &colHeap{}

	arcs := func(i int) []arc { return p.adj[i] }
	for r := 0; r < n; r++ {
		gen := int32(r + 1)
		final = final[:0]
		h.items = h.items[:0]
		relax := func(i int, base float64, j int32, c float64) {
			if done[j] == gen {
				return
			}
			nd := base + c - u[i] - v[j]
			if nd < 0 {
				nd = 0 // rounding: reduced costs are ≥ 0 in exact arithmetic
			}
			if stamp[j] != gen || nd < dist[j] {
				stamp[j], dist[j], prev[j] = gen, nd, int32(i)
				heap.Push(h, colItem{d: nd, col: j})
			}
		}
		expand := func(i int, base float64) {
			for _, a := range arcs(i) {
				relax(i, base, a.col, a.cost)
			}
			relax(i, base, int32(m+i), unassigned)
		}
		expand(r, 0)
		var jf int32 = -1
		var D float64
		for h.Len() > 0 {
			it := heap.Pop(h).(colItem)
			j := it.col
			if done[j] == gen || it.d != dist[j] {
				continue
			}
			done[j] = gen
			final = append(final, j)
			if colRow[j] < 0 {
				jf, D = j, it.d
				break
			}
			expand(int(colRow[j]), it.d)
		}
		// Potentials: every finalized column j gets π(j) = dist(j) − D, so
		// reduced costs stay ≥ 0 and the new path is tight.
		for _, j := range final {
			delta := D - dist[j]
			v[j] -= delta
			if i := colRow[j]; i >= 0 {
				u[i] += delta
			}
		}
		u[r] += D
		// Augment along prev.
		for j := jf; ; {
			i := prev[j]
			next := rowCol[i]
			rowCol[i], colRow[j] = j, i
			if int(i) == r {
				break
			}
			j = next
		}
	}
	return p.result(rowCol, true)
}

type colItem struct {
	d   float64
	col int32
}

type colHeap struct{ items []colItem }

func (h *colHeap) Len() int { return len(h.items) }
func (h *colHeap) Less(a, b int) bool {
	x, y := h.items[a], h.items[b]
	if x.d != y.d {
		return x.d < y.d
	}
	return x.col < y.col
}
func (h *colHeap) Swap(a, b int) { h.items[a], h.items[b] = h.items[b], h.items[a] }
func (h *colHeap) Push(x any)    { h.items = append(h.items, x.(colItem)) }
func (h *colHeap) Pop() any {
	it := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return it
}
