package trip

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
)

var (
	eventToProto = map[lifecycle.Event]commonv1.TripEventType{
		lifecycle.EventCreate:        commonv1.TripEventType_TRIP_EVENT_TYPE_CREATED,
		lifecycle.EventAssign:        commonv1.TripEventType_TRIP_EVENT_TYPE_ASSIGNED,
		lifecycle.EventArrive:        commonv1.TripEventType_TRIP_EVENT_TYPE_ARRIVED,
		lifecycle.EventStart:         commonv1.TripEventType_TRIP_EVENT_TYPE_STARTED,
		lifecycle.EventComplete:      commonv1.TripEventType_TRIP_EVENT_TYPE_COMPLETED,
		lifecycle.EventCancel:        commonv1.TripEventType_TRIP_EVENT_TYPE_CANCELLED,
		lifecycle.EventNoDriverFound: commonv1.TripEventType_TRIP_EVENT_TYPE_NO_DRIVER_FOUND,
		lifecycle.EventUnassign:      commonv1.TripEventType_TRIP_EVENT_TYPE_UNASSIGNED,
		lifecycle.EventRedispatch:    commonv1.TripEventType_TRIP_EVENT_TYPE_REDISPATCHED,
	}
	eventFromProto = invert(eventToProto)

	actorToProto = map[lifecycle.Actor]commonv1.Actor{
		lifecycle.ActorRider:      commonv1.Actor_ACTOR_RIDER,
		lifecycle.ActorDriver:     commonv1.Actor_ACTOR_DRIVER,
		lifecycle.ActorDispatcher: commonv1.Actor_ACTOR_DISPATCHER,
		lifecycle.ActorSystem:     commonv1.Actor_ACTOR_SYSTEM,
	}
	actorFromProto = invert(actorToProto)

	stateToProto = map[lifecycle.State]commonv1.TripState{
		lifecycle.StateRequested:      commonv1.TripState_TRIP_STATE_REQUESTED,
		lifecycle.StateDriverAssigned: commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED,
		lifecycle.StateDriverArrived:  commonv1.TripState_TRIP_STATE_DRIVER_ARRIVED,
		lifecycle.StateInProgress:     commonv1.TripState_TRIP_STATE_IN_PROGRESS,
		lifecycle.StateCompleted:      commonv1.TripState_TRIP_STATE_COMPLETED,
		lifecycle.StateCancelled:      commonv1.TripState_TRIP_STATE_CANCELLED,
		lifecycle.StateNoDriverFound:  commonv1.TripState_TRIP_STATE_NO_DRIVER_FOUND,
	}
	stateFromProto = invert(stateToProto)
)

func invert[K, V comparable](m map[K]V) map[V]K {
	out := make(map[V]K, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

const productPrefix = "PRODUCT_"

// productToDomain turns PRODUCT_STANDARD into "STANDARD".
func productToDomain(p commonv1.Product) string {
	return strings.TrimPrefix(p.String(), productPrefix)
}

func productToProto(p string) commonv1.Product {
	return commonv1.Product(commonv1.Product_value[productPrefix+p])
}

func parseID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%w: trip id %q is not a UUID", store.ErrInvalidArgument, s)
	}
	return id, nil
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func money(m lifecycle.Money) *commonv1.Money {
	if m.IsZero() {
		return nil
	}
	return &commonv1.Money{AmountMinor: m.Minor, Currency: m.Currency}
}

// TripToProto converts a store trip.
func TripToProto(t store.Trip) *commonv1.Trip {
	return &commonv1.Trip{
		Id:          t.ID.String(),
		RiderId:     t.RiderID,
		DriverId:    t.DriverID,
		State:       stateToProto[t.State],
		Product:     productToProto(t.Product),
		Pickup:      &commonv1.LatLng{Lat: t.Pickup.Lat, Lng: t.Pickup.Lng},
		Dropoff:     &commonv1.LatLng{Lat: t.Dropoff.Lat, Lng: t.Dropoff.Lng},
		QuotedFare:  money(t.QuotedFare),
		FinalFare:   money(t.FinalFare),
		QuoteId:     t.QuoteID,
		Region:      t.Region,
		CreatedAt:   ts(t.CreatedAt),
		AssignedAt:  ts(t.AssignedAt),
		ArrivedAt:   ts(t.ArrivedAt),
		StartedAt:   ts(t.StartedAt),
		CompletedAt: ts(t.CompletedAt),
		EndedAt:     ts(t.EndedAt),
		CancelledBy: actorToProto[t.CancelledBy],
		EndReason:   t.EndReason,
		Version:     t.Version,
		Rating:      t.Rating,
	}
}

// EventToProto converts a store event.
func EventToProto(ev store.Event) *commonv1.TripEvent {
	return &commonv1.TripEvent{
		EventId:    ev.ID.String(),
		TripId:     ev.TripID.String(),
		Type:       eventToProto[ev.Type],
		FromState:  stateToProto[ev.From],
		ToState:    stateToProto[ev.To],
		Actor:      actorToProto[ev.Actor],
		ActorId:    ev.ActorID,
		Reason:     ev.Reason,
		DriverId:   ev.DriverID,
		OccurredAt: ts(ev.At),
		Trip:       TripToProto(ev.Trip),
	}
}
