package rider

import (
	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
)

// The rider service's one converter between API and domain positions.

func latLngOf(p *commonv1.LatLng) geo.LatLng { return geo.LatLng{Lat: p.GetLat(), Lng: p.GetLng()} }

func latLngToProto(p geo.LatLng) *commonv1.LatLng { return &commonv1.LatLng{Lat: p.Lat, Lng: p.Lng} }
