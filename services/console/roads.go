package console

import (
	"math"
	"net/http"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/auth"
)

// roadsView is GET /api/roads: the road network as flat segments
// [lat1, lng1, lat2, lng2, …] rounded to ~1 m, and the attribution the map
// data requires (empty when there is no network).
type roadsView struct {
	Attribution string    `json:"attribution,omitempty"`
	Segments    []float64 `json:"segments"`
}

func newRoadsView(m *StreetMap) roadsView {
	v := roadsView{Segments: []float64{}}
	if m == nil {
		return v
	}
	v.Attribution = m.Attribution
	round := func(x float64) float64 { return math.Round(x*1e5) / 1e5 }
	m.Segments(func(a, b geo.LatLng) {
		v.Segments = append(v.Segments, round(a.Lat), round(a.Lng), round(b.Lat), round(b.Lng))
	})
	return v
}

func (c *Console) getRoads(*http.Request, auth.Principal) (any, error) {
	return c.roads(), nil
}
