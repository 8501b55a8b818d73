package dispatch

import (
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hexride/hexride/geo"
)

// Status is a driver's availability.
type Status uint8

// Driver statuses. Only StatusAvailable drivers are offered trips.
const (
	StatusOffline Status = iota
	StatusAvailable
	StatusBusy
)

func (s Status) String() string {
	switch s {
	case StatusOffline:
		return "offline"
	case StatusAvailable:
		return "available"
	case StatusBusy:
		return "busy"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

func (s Status) valid() bool { return s <= StatusBusy }

// MaxDriverIDLen bounds driver ids so a hostile gateway cannot bloat memory.
const MaxDriverIDLen = 128

// IndexConfig configures an [Index].
type IndexConfig struct {
	// Resolution is the H3 resolution drivers are bucketed at (default 9,
	// cells of about 0.1 km²).
	Resolution int
	// TTL: Expire drops drivers silent for longer than this (default 30s).
	TTL time.Duration
	// Shards is the number of lock shards, a power of two (default 4).
	// Drivers are sharded by id hash, so ingest goroutines rarely contend;
	// a query read-locks every shard (an uncontended RLock is an atomic
	// add), which gives it a consistent snapshot without lock ordering
	// problems. Each cell keeps one bucket per shard, so more shards mean
	// shorter, scattered buckets: on the 2-core reference machine 4 shards
	// searched 1M drivers ~30 % faster than 16 with no measurable ingest
	// contention (PERFORMANCE.md). Use about 2× the cores.
	Shards int
}

// DefaultIndexConfig returns the defaults.
func DefaultIndexConfig() IndexConfig {
	return IndexConfig{Resolution: 9, TTL: 30 * time.Second, Shards: 4}
}

// Validate checks the config.
func (c IndexConfig) Validate() error {
	switch {
	case c.Resolution < 0 || c.Resolution > geo.MaxResolution:
		return fmt.Errorf("%w: resolution %d not in [0, 15]", ErrInvalidConfig, c.Resolution)
	case c.TTL <= 0:
		return fmt.Errorf("%w: TTL %v must be positive", ErrInvalidConfig, c.TTL)
	case c.Shards <= 0 || c.Shards > 1024 || c.Shards&(c.Shards-1) != 0:
		return fmt.Errorf("%w: shards %d must be a power of two in [1, 1024]", ErrInvalidConfig, c.Shards)
	}
	return nil
}

// Location is one location update from a driver app, as batched by the
// driver gateway.
type Location struct {
	DriverID string
	Pos      geo.LatLng
	// Heading in degrees clockwise from north; NaN or negative = unknown.
	Heading float64
	// Speed in metres per second (stored with cm/s precision, capped at 655 m/s).
	Speed   float64
	Product string
	Status  Status
	// Gateway is the address of the driver gateway instance holding the
	// driver's stream: where offers are pushed.
	Gateway string
	// At is when the app took the fix; zero means the index clock's now.
	// Stored with one-second resolution (truncated).
	At time.Time
}

// Driver is a read-only view of an indexed driver.
type Driver struct {
	ID string
	// Pos is the indexed position: the update's position rounded to 1e-7°.
	Pos     geo.LatLng
	Cell    geo.Cell
	Heading float64 // NaN if unknown
	Speed   float64
	Product string
	Status  Status
	Gateway string
	Seen    time.Time // one-second resolution
}

// Index is the in-memory live supply index of one matching worker: drivers
// bucketed by H3 cell, searched by [Index.Nearest]. It is safe for
// concurrent use.
//
// Memory layout (≈100 bytes per driver at 1M, see PERFORMANCE.md): a driver
// is a 48-byte record in chunked per-shard arrays (no per-driver pointers
// besides its id string), a 12-byte entry (E7 position + record slot) in its
// cell's bucket, and a 4-byte slot in an open-addressing id table. Products
// and gateway addresses are interned. Each cell also counts its drivers per
// status (a few words per cell, none per driver), so supply per cell is read
// without visiting a driver ([Index.EachCellSupply]).
type Index struct {
	cfg      IndexConfig
	clock    Clock
	seed     maphash.Seed
	shards   []shard
	cells    cellTable
	products *interner
	gateways *interner
}

// NewIndex builds an empty index.
func NewIndex(cfg IndexConfig, clock Clock) (*Index, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		return nil, fmt.Errorf("%w: nil clock", ErrInvalidConfig)
	}
	ix := &Index{
		cfg:      cfg,
		clock:    clock,
		seed:     maphash.MakeSeed(),
		shards:   make([]shard, cfg.Shards),
		products: newInterner(math.MaxUint16),
		gateways: newInterner(math.MaxUint32),
	}
	ix.cells.res = cfg.Resolution
	ix.cells.shards = cfg.Shards
	edge, err := geo.EdgeLengthAvg(cfg.Resolution)
	if err != nil {
		return nil, err
	}
	ix.cells.locScale = 111195 / edge
	for i := range ix.shards {
		ix.shards[i].init()
	}
	return ix, nil
}

// Resolution is the H3 resolution of the index's cells.
func (ix *Index) Resolution() int { return ix.cfg.Resolution }

// ---- records and shards ----------------------------------------------------

const (
	chunkBits = 10
	chunkSize = 1 << chunkBits
	noHeading = math.MaxUint16
	slotBits  = 24 // id table entries: 8 hash-tag bits | 24 bits slot+1
	slotMask  = 1<<slotBits - 1
)

// rec is one driver; 48 bytes.
type rec struct {
	id      string
	cell    *cellInfo // nil: free slot
	idx     uint32    // position in cell.buckets[shard]
	seen    uint32    // unix seconds
	gateway uint32
	product uint16
	heading uint16 // centidegrees, noHeading if unknown
	speed   uint16 // cm/s
	status  Status
}

// entry is a driver in a cell bucket: what the search scans. 12 bytes.
// ref packs the record slot (24 bits) with the status (2 bits) and product
// id (6 bits, 63 = "see record") so the scan can filter without touching the
// record (a cache miss at 1M drivers).
type entry struct {
	lat, lng int32 // E7
	ref      uint32
}

const prodOverflow = 63

func makeRef(slot uint32, st Status, prod uint32) uint32 {
	if prod >= prodOverflow {
		prod = prodOverflow
	}
	return slot | uint32(st)<<24 | prod<<26
}

func (e entry) slot() uint32     { return e.ref & slotMask }
func (e entry) status() Status   { return Status(e.ref >> 24 & 3) }
func (e entry) prodHint() uint32 { return e.ref >> 26 }

type shard struct {
	mu     sync.RWMutex
	chunks [][]rec
	next   uint32   // first never-used slot
	free   []uint32 // freed slots
	live   int
	table  []uint32 // open addressing, linear probing; 0 = empty
	_      [40]byte // keep neighbouring shard locks off one cache line
}

func (s *shard) init() { s.table = make([]uint32, 16) }

func (s *shard) rec(slot uint32) *rec { return &s.chunks[slot>>chunkBits][slot&(chunkSize-1)] }

func tag(h uint64) uint32 { return uint32(h>>56) << slotBits }

func (s *shard) home(h uint64) int { return int((h >> 20) & uint64(len(s.table)-1)) }

// lookup finds id's slot.
func (s *shard) lookup(h uint64, id string) (uint32, int, bool) {
	mask := len(s.table) - 1
	t := tag(h)
	for i := s.home(h); ; i = (i + 1) & mask {
		e := s.table[i]
		if e == 0 {
			return 0, i, false
		}
		if e&^slotMask == t {
			slot := e&slotMask - 1
			if s.rec(slot).id == id {
				return slot, i, true
			}
		}
	}
}

func (s *shard) alloc() (uint32, error) {
	if n := len(s.free); n > 0 {
		slot := s.free[n-1]
		s.free = s.free[:n-1]
		return slot, nil
	}
	if s.next >= slotMask-1 {
		return 0, fmt.Errorf("%w: shard full", ErrTooManyValues)
	}
	slot := s.next
	if int(slot>>chunkBits) == len(s.chunks) {
		s.chunks = append(s.chunks, make([]rec, chunkSize))
	}
	s.next++
	return slot, nil
}

func (s *shard) insertKey(ix *Index, h uint64, slot uint32) {
	if (s.live+1)*4 > len(s.table)*3 {
		s.grow(ix)
	}
	mask := len(s.table) - 1
	i := s.home(h)
	for s.table[i] != 0 {
		i = (i + 1) & mask
	}
	s.table[i] = tag(h) | (slot + 1)
}

func (s *shard) grow(ix *Index) {
	old := s.table
	s.table = make([]uint32, len(old)*2)
	mask := len(s.table) - 1
	for _, e := range old {
		if e == 0 {
			continue
		}
		h := maphash.String(ix.seed, s.rec(e&slotMask-1).id)
		i := s.home(h)
		for s.table[i] != 0 {
			i = (i + 1) & mask
		}
		s.table[i] = e
	}
}

// deleteAt removes table position i with backward-shift deletion (no
// tombstones, so lookups stay short after churn).
func (s *shard) deleteAt(ix *Index, i int) {
	mask := len(s.table) - 1
	j := i
	for {
		j = (j + 1) & mask
		e := s.table[j]
		if e == 0 {
			break
		}
		k := s.home(maphash.String(ix.seed, s.rec(e&slotMask-1).id))
		// Move e back to i unless its home lies cyclically in (i, j].
		if (j > i && (k <= i || k > j)) || (j < i && k <= i && k > j) {
			s.table[i] = e
			i = j
		}
	}
	s.table[i] = 0
}

// ---- cells -----------------------------------------------------------------

// cellInfo is the shared per-cell state: geometry computed once, and one
// bucket per shard (bucket s is guarded by shard s's lock). Cells are created
// on first use and never freed, so pointers to them stay valid; their number
// is bounded by the area a worker serves and searches.
type cellInfo struct {
	geo       geo.CellGeometry
	cosMaxLat float64
	nbrs      []geo.Cell
	// nbrInfo caches the neighbours' cellInfo (filled lazily) so the search
	// walks cells without map lookups.
	nbrInfo []atomic.Pointer[cellInfo]
	buckets [][]entry
	// supply counts the cell's drivers per status, kept by every mutation
	// under the shard lock it already holds. Drivers of one cell live in
	// every shard's bucket, so the counters are atomics: readers
	// ([Index.EachCellSupply], [Index.CellSupply]) take no lock at all.
	supply [statusCount]atomic.Int64
}

// statusCount is the number of valid statuses.
const statusCount = int(StatusBusy) + 1

// count adds d drivers of status st to the cell's counters.
func (ci *cellInfo) count(st Status, d int64) { ci.supply[st].Add(d) }

// supplyCount reads the cell's counters.
func (ci *cellInfo) supplyCount() SupplyCount {
	return SupplyCount{
		Available: int(ci.supply[StatusAvailable].Load()),
		Busy:      int(ci.supply[StatusBusy].Load()),
		Offline:   int(ci.supply[StatusOffline].Load()),
	}
}

type cellTable struct {
	m      sync.Map // geo.Cell -> *cellInfo
	res    int
	shards int
	// loc remembers, per small lat/lng square (about one cell edge), the
	// last cell found there. Most points lie within the inscribed radius of
	// that cell or a neighbour, which a chord comparison proves without
	// latLngToCell (≈1.5 µs of cgo). Bounded by the area actually used.
	loc      sync.Map // uint64 square key -> *cellInfo
	locScale float64  // squares per degree
}

func (t *cellTable) locKey(p geo.LatLng) uint64 {
	la := uint64(math.Floor((p.Lat + 90) * t.locScale))
	lo := uint64(math.Floor((p.Lng + 180) * t.locScale))
	return la<<32 | lo
}

// locate returns the cell containing p (p valid, pr its probe).
func (t *cellTable) locate(p geo.LatLng, pr *geo.Probe) (*cellInfo, error) {
	key := t.locKey(p)
	if v, ok := t.loc.Load(key); ok {
		ci := v.(*cellInfo)
		if ci.geo.ContainsProbe(pr) {
			return ci, nil
		}
		for i := range ci.nbrs {
			if nci := ci.nbrInfo[i].Load(); nci != nil && nci.geo.ContainsProbe(pr) {
				return nci, nil
			}
		}
	}
	c, err := geo.CellAt(p, t.res)
	if err != nil {
		return nil, err
	}
	ci, err := t.getOrCreate(c)
	if err != nil {
		return nil, err
	}
	if v, ok := t.loc.Load(key); !ok || v.(*cellInfo) != ci {
		t.loc.Store(key, ci)
	}
	return ci, nil
}

func (t *cellTable) get(c geo.Cell) *cellInfo {
	if v, ok := t.m.Load(c); ok {
		return v.(*cellInfo)
	}
	return nil
}

func (t *cellTable) getOrCreate(c geo.Cell) (*cellInfo, error) {
	if ci := t.get(c); ci != nil {
		return ci, nil
	}
	g, err := geo.Geometry(c)
	if err != nil {
		return nil, err
	}
	nb, err := geo.Neighbors(c)
	if err != nil {
		return nil, err
	}
	ci := &cellInfo{geo: g, cosMaxLat: math.Cos(g.MaxAbsLat * math.Pi / 180), nbrs: nb,
		nbrInfo: make([]atomic.Pointer[cellInfo], len(nb)), buckets: make([][]entry, t.shards)}
	v, _ := t.m.LoadOrStore(c, ci)
	return v.(*cellInfo), nil
}

// neighbor returns the cellInfo of ci's i-th neighbour.
func (t *cellTable) neighbor(ci *cellInfo, i int) (*cellInfo, error) {
	if n := ci.nbrInfo[i].Load(); n != nil {
		return n, nil
	}
	n, err := t.getOrCreate(ci.nbrs[i])
	if err != nil {
		return nil, err
	}
	ci.nbrInfo[i].Store(n)
	return n, nil
}

func (t *cellTable) each(f func(c geo.Cell, ci *cellInfo)) {
	t.m.Range(func(k, v any) bool {
		f(k.(geo.Cell), v.(*cellInfo))
		return true
	})
}

// ---- mutation ----------------------------------------------------------------

func unixSeconds(t time.Time) uint32 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	if s > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(s)
}

func encodeHeading(h float64) uint16 {
	if math.IsNaN(h) || h < 0 || math.IsInf(h, 0) {
		return noHeading
	}
	return uint16(math.Round(math.Mod(h, 360)*100)) % 36000
}

func decodeHeading(h uint16) float64 {
	if h == noHeading {
		return math.NaN()
	}
	return float64(h) / 100
}

func encodeSpeed(v float64) uint16 {
	if !(v > 0) {
		return 0
	}
	return uint16(math.Min(math.Round(v*100), math.MaxUint16))
}

func (ix *Index) hash(id string) (uint64, *shard, int) {
	h := maphash.String(ix.seed, id)
	si := int(h & uint64(len(ix.shards)-1))
	return h, &ix.shards[si], si
}

// Upsert inserts or updates a driver. Updates older than the indexed one
// (by At, at one-second resolution) are ignored with ErrStaleLocation, so
// reordered batches cannot move a driver back in time.
//
// A driver that moved but cannot have left its cell (it is within the cell's
// inscribed radius) is updated in place without an H3 call.
func (ix *Index) Upsert(loc Location) error {
	if loc.DriverID == "" || len(loc.DriverID) > MaxDriverIDLen {
		return fmt.Errorf("%w: driver id length %d", ErrInvalidLocation, len(loc.DriverID))
	}
	if err := loc.Pos.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidLocation, err)
	}
	if !loc.Status.valid() {
		return fmt.Errorf("%w: %v", ErrInvalidLocation, loc.Status)
	}
	at := loc.At
	if at.IsZero() {
		at = ix.clock.Now()
	}
	e7 := loc.Pos.ToE7()
	pos := e7.LatLng()
	seen := unixSeconds(at)
	h, s, si := ix.hash(loc.DriverID)

	s.mu.Lock()
	defer s.mu.Unlock()
	slot, _, found := s.lookup(h, loc.DriverID)
	var r *rec
	if found {
		r = s.rec(slot)
		if seen < r.seen {
			return fmt.Errorf("%w: driver %s at %v, indexed %v", ErrStaleLocation, loc.DriverID, at.Unix(), r.seen)
		}
	}
	// Reuse interned ids when unchanged: no interner lock on the hot path.
	var prod, gw uint32
	if found && ix.products.snapshot()[r.product] == loc.Product {
		prod = uint32(r.product)
	} else {
		var err error
		if prod, err = ix.products.intern(loc.Product); err != nil {
			return err
		}
	}
	if found && ix.gateways.snapshot()[r.gateway] == loc.Gateway {
		gw = r.gateway
	} else {
		var err error
		if gw, err = ix.gateways.intern(loc.Gateway); err != nil {
			return err
		}
	}

	var ci *cellInfo
	pr := geo.NewProbe(pos)
	if found && r.cell.geo.ContainsProbe(&pr) {
		ci = r.cell // cannot have left its cell: no H3 call
	} else {
		var err error
		if ci, err = ix.cells.locate(pos, &pr); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidLocation, err)
		}
	}

	ent := entry{lat: e7.Lat, lng: e7.Lng}
	switch {
	case !found:
		var err error
		if slot, err = s.alloc(); err != nil {
			return err
		}
		r = s.rec(slot)
		r.id = string([]byte(loc.DriverID)) // never retain a caller's larger buffer
		ent.ref = makeRef(slot, loc.Status, prod)
		r.cell = ci
		r.idx = uint32(len(ci.buckets[si]))
		ci.buckets[si] = append(ci.buckets[si], ent)
		s.insertKey(ix, h, slot)
		s.live++
		ci.count(loc.Status, 1)
	case ci == r.cell:
		ent.ref = makeRef(slot, loc.Status, prod)
		ci.buckets[si][r.idx] = ent
		if r.status != loc.Status {
			ci.count(r.status, -1)
			ci.count(loc.Status, 1)
		}
	default:
		ent.ref = makeRef(slot, loc.Status, prod)
		s.unbucket(si, r)
		r.cell.count(r.status, -1)
		r.cell = ci
		r.idx = uint32(len(ci.buckets[si]))
		ci.buckets[si] = append(ci.buckets[si], ent)
		ci.count(loc.Status, 1)
	}
	r.seen = seen
	r.gateway = gw
	r.product = uint16(prod)
	r.heading = encodeHeading(loc.Heading)
	r.speed = encodeSpeed(loc.Speed)
	r.status = loc.Status
	return nil
}

// unbucket removes r from its cell bucket (swap with the last entry).
func (s *shard) unbucket(si int, r *rec) {
	b := r.cell.buckets[si]
	last := len(b) - 1
	if int(r.idx) != last {
		b[r.idx] = b[last]
		s.rec(b[r.idx].slot()).idx = r.idx
	}
	b = b[:last]
	if cap(b) > 64 && len(b) < cap(b)/4 { // give memory back after a crowd leaves
		b = append([]entry(nil), b...)
	}
	r.cell.buckets[si] = b
}

// removeLocked deletes the driver at slot (table position pos).
func (s *shard) removeLocked(ix *Index, si int, slot uint32, pos int) {
	r := s.rec(slot)
	s.unbucket(si, r)
	r.cell.count(r.status, -1)
	s.deleteAt(ix, pos)
	*r = rec{}
	s.free = append(s.free, slot)
	s.live--
}

// Remove deletes a driver; it reports whether it was indexed.
func (ix *Index) Remove(id string) bool {
	h, s, si := ix.hash(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, pos, ok := s.lookup(h, id)
	if ok {
		s.removeLocked(ix, si, slot, pos)
	}
	return ok
}

// SetStatus marks a driver available, busy or offline (e.g. after a trip
// assignment commits) without waiting for its next location update.
func (ix *Index) SetStatus(id string, st Status) error {
	if !st.valid() {
		return fmt.Errorf("%w: %v", ErrInvalidLocation, st)
	}
	h, s, si := ix.hash(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, _, ok := s.lookup(h, id)
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownDriver, id)
	}
	r := s.rec(slot)
	if r.status != st {
		r.cell.count(r.status, -1)
		r.cell.count(st, 1)
	}
	r.status = st
	e := &r.cell.buckets[si][r.idx]
	e.ref = makeRef(slot, st, uint32(r.product))
	return nil
}

// Expire removes drivers silent for longer than the TTL as of now and
// returns how many it removed. The host calls it periodically.
func (ix *Index) Expire(now time.Time) int {
	cutoff := now.Add(-ix.cfg.TTL)
	removed := 0
	for si := range ix.shards {
		s := &ix.shards[si]
		s.mu.Lock()
		for slot := uint32(0); slot < s.next; slot++ {
			r := s.rec(slot)
			if r.cell == nil || !time.Unix(int64(r.seen), 0).Before(cutoff) {
				continue
			}
			h := maphash.String(ix.seed, r.id)
			_, pos, ok := s.lookup(h, r.id)
			if !ok {
				panic("dispatch: index record missing from id table")
			}
			s.removeLocked(ix, si, slot, pos)
			removed++
		}
		s.mu.Unlock()
	}
	return removed
}

// ---- reads -------------------------------------------------------------------

func (ix *Index) rlockAll() {
	for i := range ix.shards {
		ix.shards[i].mu.RLock()
	}
}

func (ix *Index) runlockAll() {
	for i := range ix.shards {
		ix.shards[i].mu.RUnlock()
	}
}

func (ix *Index) view(s *shard, slot uint32, e entry, prods, gws []string) Driver {
	r := s.rec(slot)
	return Driver{
		ID:      r.id,
		Pos:     geo.E7{Lat: e.lat, Lng: e.lng}.LatLng(),
		Cell:    r.cell.geo.Cell,
		Heading: decodeHeading(r.heading),
		Speed:   float64(r.speed) / 100,
		Product: prods[r.product],
		Status:  r.status,
		Gateway: gws[r.gateway],
		Seen:    time.Unix(int64(r.seen), 0),
	}
}

// Get returns the indexed state of a driver.
func (ix *Index) Get(id string) (Driver, bool) {
	h, s, si := ix.hash(id)
	s.mu.RLock()
	defer s.mu.RUnlock()
	slot, _, ok := s.lookup(h, id)
	if !ok {
		return Driver{}, false
	}
	r := s.rec(slot)
	return ix.view(s, slot, r.cell.buckets[si][r.idx], ix.products.snapshot(), ix.gateways.snapshot()), true
}

// Len is the number of indexed drivers.
func (ix *Index) Len() int {
	n := 0
	for i := range ix.shards {
		s := &ix.shards[i]
		s.mu.RLock()
		n += s.live
		s.mu.RUnlock()
	}
	return n
}

// collect returns the drivers of every cell accepted by keep, read under all
// shard locks (a consistent snapshot).
func (ix *Index) collect(keep func(c geo.Cell) bool) []Driver {
	ix.rlockAll()
	defer ix.runlockAll()
	prods, gws := ix.products.snapshot(), ix.gateways.snapshot()
	var out []Driver
	ix.cells.each(func(c geo.Cell, ci *cellInfo) {
		if !keep(c) {
			return
		}
		for si, b := range ci.buckets {
			for _, e := range b {
				out = append(out, ix.view(&ix.shards[si], e.slot(), e, prods, gws))
			}
		}
	})
	return out
}

// Snapshot returns every indexed driver (a consistent snapshot, unordered).
func (ix *Index) Snapshot() []Driver {
	return ix.collect(func(geo.Cell) bool { return true })
}

// DriversInPartition returns the drivers whose cell descends from partition
// p (a coarser H3 cell), for handing a partition to its new owner.
func (ix *Index) DriversInPartition(p geo.Cell) []Driver {
	res := p.Resolution()
	if res > ix.cfg.Resolution {
		return nil
	}
	return ix.collect(func(c geo.Cell) bool {
		pc, err := c.Parent(res)
		return err == nil && pc == p
	})
}

// SupplyCount is the number of drivers per status in an area.
type SupplyCount struct {
	Available, Busy, Offline int
}

// Total is the number of drivers of any status.
func (sc SupplyCount) Total() int { return sc.Available + sc.Busy + sc.Offline }

func (sc *SupplyCount) add(o SupplyCount) {
	sc.Available += o.Available
	sc.Busy += o.Busy
	sc.Offline += o.Offline
}

// EachCellSupply calls fn for every index cell holding at least one driver,
// with its drivers per status (any product). It copies no driver and takes
// no lock: the counts are kept per cell as drivers come, move, change status
// and go, so a call costs O(cells), not O(drivers), and never stalls ingest.
// Each count is exact whenever no write is in progress; while writers run,
// a driver that moves or changes status during the walk may be missed or
// counted twice for that instant (fine for surge sampling and gauges).
// fn may call back into the index.
func (ix *Index) EachCellSupply(fn func(c geo.Cell, sc SupplyCount)) {
	ix.cells.each(func(c geo.Cell, ci *cellInfo) {
		if sc := ci.supplyCount(); sc != (SupplyCount{}) {
			fn(c, sc)
		}
	})
}

// CellSupply counts drivers of product ("" = any) in cell c. c may be the
// index resolution or coarser (then every descendant cell counts), so surge
// can run at a coarser resolution than the index.
//
// For any product the answer comes from the per-cell counters (see
// [Index.EachCellSupply]): O(1) for an index cell, O(cells) for a coarser
// one. A product filter scans the drivers of the matching cells under the
// shard locks (a consistent count).
func (ix *Index) CellSupply(c geo.Cell, product string) (SupplyCount, error) {
	res := c.Resolution()
	if res > ix.cfg.Resolution {
		return SupplyCount{}, fmt.Errorf("%w: cell resolution %d finer than index %d", ErrResolution, res, ix.cfg.Resolution)
	}
	var sc SupplyCount
	if product == "" {
		if res == ix.cfg.Resolution {
			if ci := ix.cells.get(c); ci != nil {
				sc = ci.supplyCount()
			}
			return sc, nil
		}
		ix.EachCellSupply(func(cc geo.Cell, n SupplyCount) {
			if p, err := cc.Parent(res); err == nil && p == c {
				sc.add(n)
			}
		})
		return sc, nil
	}
	pid, ok := ix.products.lookup(product)
	if !ok {
		return SupplyCount{}, nil
	}
	count := func(ci *cellInfo) {
		for si, b := range ci.buckets {
			s := &ix.shards[si]
			for _, e := range b {
				r := s.rec(e.slot())
				if uint32(r.product) != pid {
					continue
				}
				switch r.status {
				case StatusAvailable:
					sc.Available++
				case StatusBusy:
					sc.Busy++
				default:
					sc.Offline++
				}
			}
		}
	}
	ix.rlockAll()
	defer ix.runlockAll()
	if res == ix.cfg.Resolution {
		if ci := ix.cells.get(c); ci != nil {
			count(ci)
		}
		return sc, nil
	}
	ix.cells.each(func(cc geo.Cell, ci *cellInfo) {
		if p, err := cc.Parent(res); err == nil && p == c {
			count(ci)
		}
	})
	return sc, nil
}

// RemoveCells removes every driver indexed in the given cells and returns
// how many it removed (for dropping the partitions a worker no longer owns
// without copying the index). Cells not at the index resolution hold no
// drivers and are ignored. It locks one shard for one cell at a time, so
// ingest is never held up for more than one bucket; a driver that moves
// into a cell while the call runs may stay.
func (ix *Index) RemoveCells(cells []geo.Cell) int {
	removed := 0
	for _, c := range cells {
		ci := ix.cells.get(c)
		if ci == nil {
			continue
		}
		for si := range ix.shards {
			s := &ix.shards[si]
			s.mu.Lock()
			for n := len(ci.buckets[si]); n > 0; n = len(ci.buckets[si]) {
				slot := ci.buckets[si][n-1].slot()
				id := s.rec(slot).id
				_, pos, ok := s.lookup(maphash.String(ix.seed, id), id)
				if !ok {
					s.mu.Unlock()
					panic("dispatch: index record missing from id table")
				}
				s.removeLocked(ix, si, slot, pos)
				removed++
			}
			s.mu.Unlock()
		}
	}
	return removed
}

// DriversByID returns the limit indexed drivers with the smallest ids,
// sorted by id, and whether more drivers are indexed. It keeps only the
// best limit drivers while walking the records (memory O(limit), not a
// copy of the index) and read-locks one shard at a time, so it is not a
// snapshot across shards: a driver that comes or goes during the call may
// be missed or listed. limit ≤ 0 returns none.
func (ix *Index) DriversByID(limit int) ([]Driver, bool) {
	if limit <= 0 {
		return nil, ix.Len() > 0
	}
	var h []Driver // max-heap by ID while collecting
	total := 0
	for si := range ix.shards {
		s := &ix.shards[si]
		s.mu.RLock()
		// Interned names are read after the lock: every id a record of
		// this shard holds was interned before the record was written.
		prods, gws := ix.products.snapshot(), ix.gateways.snapshot()
		total += s.live
		for slot := uint32(0); slot < s.next; slot++ {
			r := s.rec(slot)
			if r.cell == nil || (len(h) == limit && r.id >= h[0].ID) {
				continue
			}
			d := ix.view(s, slot, r.cell.buckets[si][r.idx], prods, gws)
			if len(h) < limit {
				h = append(h, d)
				heapUpByID(h, len(h)-1)
			} else {
				h[0] = d
				heapDownByID(h, 0)
			}
		}
		s.mu.RUnlock()
	}
	slices.SortFunc(h, func(a, b Driver) int { return strings.Compare(a.ID, b.ID) })
	return h, total > len(h)
}

func heapUpByID(h []Driver, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].ID >= h[i].ID {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func heapDownByID(h []Driver, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].ID > h[l].ID {
			m = r
		}
		if h[i].ID >= h[m].ID {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
