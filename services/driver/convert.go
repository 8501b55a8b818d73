package driver

import (
	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
)

// latLngOf is the gateway's one conversion of an API position.
func latLngOf(p *commonv1.LatLng) geo.LatLng { return geo.LatLng{Lat: p.GetLat(), Lng: p.GetLng()} }
