package matching

import (
	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
)

func statusOf(s matchingv1.DriverStatus) dispatch.Status {
	switch s {
	case matchingv1.DriverStatus_DRIVER_STATUS_AVAILABLE:
		return dispatch.StatusAvailable
	case matchingv1.DriverStatus_DRIVER_STATUS_BUSY, matchingv1.DriverStatus_DRIVER_STATUS_FINISHING:
		// A finishing driver carries a rider: busy to every search but
		// the chained one (supply.finishingNear).
		return dispatch.StatusBusy
	}
	return dispatch.StatusOffline
}

func statusToProto(s dispatch.Status) matchingv1.DriverStatus {
	switch s {
	case dispatch.StatusAvailable:
		return matchingv1.DriverStatus_DRIVER_STATUS_AVAILABLE
	case dispatch.StatusBusy:
		return matchingv1.DriverStatus_DRIVER_STATUS_BUSY
	}
	return matchingv1.DriverStatus_DRIVER_STATUS_OFFLINE
}

func latLng(p *commonv1.LatLng) geo.LatLng { return geo.LatLng{Lat: p.GetLat(), Lng: p.GetLng()} }

func toProtoLatLng(p geo.LatLng) *commonv1.LatLng { return &commonv1.LatLng{Lat: p.Lat, Lng: p.Lng} }
