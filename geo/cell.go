package geo

import (
	"errors"
	"fmt"

	"github.com/uber/h3-go/v4"
)

// MaxResolution is the finest H3 resolution.
const MaxResolution = 15

// ErrInvalidResolution is returned for a resolution outside [0, 15] or a
// parent resolution finer than the cell's own.
var ErrInvalidResolution = errors.New("geo: invalid resolution")

// ErrInvalidCell is returned for a value that is not a valid H3 cell.
var ErrInvalidCell = errors.New("geo: invalid cell")

// Cell is an H3 cell index. The zero Cell is invalid and means "none".
type Cell uint64

// CellAt returns the cell of resolution res containing p.
func CellAt(p LatLng, res int) (Cell, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if res < 0 || res > MaxResolution {
		return 0, fmt.Errorf("%w: %d", ErrInvalidResolution, res)
	}
	c, err := h3.LatLngToCell(h3.LatLng{Lat: p.Lat, Lng: p.Lng}, res)
	if err != nil {
		return 0, fmt.Errorf("geo: cell at %v: %w", p, err)
	}
	return Cell(c), nil
}

// ParseCell parses the hexadecimal form produced by Cell.String.
func ParseCell(s string) (Cell, error) {
	c := Cell(h3.IndexFromString(s))
	if !c.IsValid() {
		return 0, fmt.Errorf("%w: %q", ErrInvalidCell, s)
	}
	return c, nil
}

// String is the usual lowercase hexadecimal H3 form.
func (c Cell) String() string { return h3.IndexToString(uint64(c)) }

// IsValid reports whether c is a valid H3 cell.
func (c Cell) IsValid() bool { return c != 0 && h3.Cell(c).IsValid() }

// Resolution of the cell (bits 52..55 of the index; no cgo call).
func (c Cell) Resolution() int { return int(c>>52) & 0xf }

// IsPentagon reports whether c is one of the 12 pentagons of its resolution.
func (c Cell) IsPentagon() bool { return h3.Cell(c).IsPentagon() }

// Parent returns the ancestor of c at resolution res (res ≤ c's resolution).
// It is the partition key of the dispatch layer. Pure bit arithmetic: the
// resolution field is replaced and the digits finer than res set to 7
// ("unused"), exactly as H3's cellToParent does for a valid cell.
func (c Cell) Parent(res int) (Cell, error) {
	if res < 0 || res > c.Resolution() {
		return 0, fmt.Errorf("%w: parent %d of resolution-%d cell", ErrInvalidResolution, res, c.Resolution())
	}
	p := uint64(c)&^(uint64(0xf)<<52) | uint64(res)<<52
	p |= (uint64(1) << (uint(15-res) * 3)) - 1
	return Cell(p), nil
}

// Center is the centre of c (H3's cellToLatLng).
func (c Cell) Center() (LatLng, error) {
	ll, err := h3.CellToLatLng(h3.Cell(c))
	if err != nil {
		return LatLng{}, fmt.Errorf("geo: centre of %v: %w", c, err)
	}
	return LatLng{Lat: ll.Lat, Lng: ll.Lng}, nil
}

// Boundary is c's boundary, counter-clockwise. Hexagons have 6 vertices,
// pentagons 5; cells crossing an icosahedron edge carry extra vertices.
func (c Cell) Boundary() ([]LatLng, error) {
	b, err := h3.CellToBoundary(h3.Cell(c))
	if err != nil {
		return nil, fmt.Errorf("geo: boundary of %v: %w", c, err)
	}
	out := make([]LatLng, len(b))
	for i, v := range b {
		out[i] = LatLng{Lat: v.Lat, Lng: v.Lng}
	}
	return out, nil
}

// GridDisk returns every cell within grid distance k of c (c included),
// in no particular order. Safe around pentagons.
func GridDisk(c Cell, k int) ([]Cell, error) {
	if k < 0 {
		return nil, fmt.Errorf("geo: grid disk: negative k %d", k)
	}
	cs, err := h3.GridDisk(h3.Cell(c), k)
	if err != nil {
		return nil, fmt.Errorf("geo: grid disk of %v: %w", c, err)
	}
	return fromH3(cs), nil
}

// GridRing returns the cells at exactly grid distance k from c. Safe around
// pentagons (H3 falls back to its slow algorithm there).
func GridRing(c Cell, k int) ([]Cell, error) {
	if k < 0 {
		return nil, fmt.Errorf("geo: grid ring: negative k %d", k)
	}
	cs, err := h3.GridRing(h3.Cell(c), k)
	if err != nil {
		return nil, fmt.Errorf("geo: grid ring of %v: %w", c, err)
	}
	return fromH3(cs), nil
}

// Neighbors returns the cells adjacent to c (6, or 5 for a pentagon).
func Neighbors(c Cell) ([]Cell, error) {
	d, err := GridDisk(c, 1)
	if err != nil {
		return nil, err
	}
	out := d[:0]
	for _, n := range d {
		if n != c {
			out = append(out, n)
		}
	}
	return out, nil
}

// GridDistance is the number of grid steps between a and b.
func GridDistance(a, b Cell) (int, error) {
	d, err := h3.GridDistance(h3.Cell(a), h3.Cell(b))
	if err != nil {
		return 0, fmt.Errorf("geo: grid distance %v→%v: %w", a, b, err)
	}
	return d, nil
}

// Pentagons returns the 12 pentagon cells of resolution res.
func Pentagons(res int) ([]Cell, error) {
	if res < 0 || res > MaxResolution {
		return nil, fmt.Errorf("%w: %d", ErrInvalidResolution, res)
	}
	cs, err := h3.Pentagons(res)
	if err != nil {
		return nil, fmt.Errorf("geo: pentagons: %w", err)
	}
	return fromH3(cs), nil
}

// EdgeLengthAvg is H3's average hexagon edge length at res, in metres.
func EdgeLengthAvg(res int) (float64, error) {
	m, err := h3.HexagonEdgeLengthAvgM(res)
	if err != nil {
		return 0, fmt.Errorf("%w: %d", ErrInvalidResolution, res)
	}
	return m, nil
}

func fromH3(cs []h3.Cell) []Cell {
	out := make([]Cell, 0, len(cs))
	for _, c := range cs {
		if c != 0 {
			out = append(out, Cell(c))
		}
	}
	return out
}
