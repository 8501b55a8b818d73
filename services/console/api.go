package console

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/hexride/hexride/infra/auth"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
)

// Limits on API input.
const (
	defaultPageSize = 50
	maxPageSize     = 500
	maxBodyBytes    = 16 << 10
	maxReasonLen    = 500
	maxSearchLen    = 128
)

// apiFunc answers one API request with a value to encode (status 200).
type apiFunc func(r *http.Request, p auth.Principal) (any, error)

// api wraps fn: it establishes the dispatcher and writes the JSON answer or
// the error.
func (c *Console) api(fn apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, r, err := c.identify(r)
		if err == nil {
			var v any
			if v, err = fn(r, p); err == nil {
				writeJSON(w, http.StatusOK, v)
				return
			}
		}
		if code := httpStatus(err); code >= 500 {
			c.log.Warn("console request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
		}
		writeError(w, err)
	}
}

func (c *Console) getSnapshot(r *http.Request, p auth.Principal) (any, error) {
	return c.gather(r.Context(), p, wantAll)
}

func (c *Console) getPartitions(r *http.Request, p auth.Principal) (any, error) {
	s, err := c.gather(r.Context(), p, want{partitions: true})
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"partition_resolution": s.PartitionResolution, "index_resolution": s.IndexResolution,
		"members": s.Members, "partitions": s.Partitions, "errors": s.Errors,
	}, nil
}

func (c *Console) getCells(r *http.Request, p auth.Principal) (any, error) {
	s, err := c.gather(r.Context(), p, want{cells: true})
	if err != nil {
		return nil, err
	}
	return map[string]any{"index_resolution": s.IndexResolution, "cells": s.Cells, "errors": s.Errors}, nil
}

func (c *Console) getDrivers(r *http.Request, p auth.Principal) (any, error) {
	s, err := c.gather(r.Context(), p, want{drivers: true})
	if err != nil {
		return nil, err
	}
	return map[string]any{"drivers": s.Drivers, "truncated": s.DriversTruncated, "errors": s.Errors}, nil
}

func (c *Console) getKPIs(r *http.Request, p auth.Principal) (any, error) {
	s, err := c.gather(r.Context(), p, want{})
	if err != nil {
		return nil, err
	}
	return s.KPIs, nil
}

// parseStates reads state filters: REQUESTED, requested or
// TRIP_STATE_REQUESTED, repeated or comma-separated; "active" means every
// in-flight state.
func parseStates(vals []string) ([]commonv1.TripState, error) {
	var out []commonv1.TripState
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			s = strings.ToUpper(strings.TrimSpace(s))
			switch s {
			case "", "ALL":
				continue
			case "ACTIVE":
				out = append(out, activeStates...)
				continue
			}
			n, ok := commonv1.TripState_value["TRIP_STATE_"+strings.TrimPrefix(s, "TRIP_STATE_")]
			if !ok || n == 0 {
				return nil, errBadRequest(fmt.Sprintf("unknown trip state %q", s))
			}
			out = append(out, commonv1.TripState(n))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

type tripsPage struct {
	Trips         []*tripJSON `json:"trips"`
	NextPageToken string      `json:"next_page_token,omitempty"`
}

// listTrips is GET /api/trips?state=…&q=…&rider=…&driver=…&page_size=…&page_token=…
// q searches: a trip id finds that trip; anything else matches a rider id
// or a driver id (first page of each, merged, newest first).
func (c *Console) listTrips(r *http.Request, p auth.Principal) (any, error) {
	qv := r.URL.Query()
	states, err := parseStates(qv["state"])
	if err != nil {
		return nil, err
	}
	pageSize := defaultPageSize
	if s := qv.Get("page_size"); s != "" {
		if pageSize, err = strconv.Atoi(s); err != nil || pageSize < 1 || pageSize > maxPageSize {
			return nil, errBadRequest(fmt.Sprintf("page_size must be 1..%d", maxPageSize))
		}
	}
	q := strings.TrimSpace(qv.Get("q"))
	rider, drv, token := qv.Get("rider"), qv.Get("driver"), qv.Get("page_token")
	for name, v := range map[string]string{"q": q, "rider": rider, "driver": drv} {
		if len(v) > maxSearchLen {
			return nil, errBadRequest(fmt.Sprintf("%s: at most %d bytes", name, maxSearchLen))
		}
	}
	if len(token) > 512 {
		return nil, errBadRequest("page_token is too long")
	}
	ctx, cancel := c.callContext(r.Context(), p)
	defer cancel()
	if q != "" {
		if _, err := uuid.Parse(q); err == nil {
			t, err := c.deps.Trips.GetTrip(ctx, q)
			if httpStatus(err) == http.StatusNotFound {
				return tripsPage{Trips: []*tripJSON{}}, nil
			}
			if err != nil {
				return nil, err
			}
			if len(states) > 0 && !slices.Contains(states, t.GetState()) {
				return tripsPage{Trips: []*tripJSON{}}, nil
			}
			return tripsPage{Trips: []*tripJSON{tripOf(t)}}, nil
		}
		base := &tripv1.ListTripsRequest{States: states, PageSize: int32(pageSize)}
		byRider, err := c.deps.Trips.ListTrips(ctx, withRider(base, q))
		if err != nil {
			return nil, err
		}
		byDriver, err := c.deps.Trips.ListTrips(ctx, withDriver(base, q))
		if err != nil {
			return nil, err
		}
		trips := append(byRider.GetTrips(), byDriver.GetTrips()...)
		slices.SortStableFunc(trips, func(a, b *commonv1.Trip) int {
			return b.GetCreatedAt().AsTime().Compare(a.GetCreatedAt().AsTime())
		})
		trips = slices.CompactFunc(trips, func(a, b *commonv1.Trip) bool { return a.GetId() == b.GetId() })
		return tripsPage{Trips: tripsOf(trips[:min(len(trips), pageSize)])}, nil
	}
	resp, err := c.deps.Trips.ListTrips(ctx, &tripv1.ListTripsRequest{
		States: states, RiderId: rider, DriverId: drv, PageSize: int32(pageSize), PageToken: token,
	})
	if err != nil {
		return nil, err
	}
	return tripsPage{Trips: tripsOf(resp.GetTrips()), NextPageToken: resp.GetNextPageToken()}, nil
}

func withRider(base *tripv1.ListTripsRequest, id string) *tripv1.ListTripsRequest {
	return &tripv1.ListTripsRequest{States: base.States, PageSize: base.PageSize, RiderId: id}
}

func withDriver(base *tripv1.ListTripsRequest, id string) *tripv1.ListTripsRequest {
	return &tripv1.ListTripsRequest{States: base.States, PageSize: base.PageSize, DriverId: id}
}

// tripID reads and checks the {id} path value.
func tripID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return "", errBadRequest(fmt.Sprintf("trip id %q is not a UUID", id))
	}
	return id, nil
}

func (c *Console) getTrip(r *http.Request, p auth.Principal) (any, error) {
	id, err := tripID(r)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.callContext(r.Context(), p)
	defer cancel()
	t, err := c.deps.Trips.GetTrip(ctx, id)
	if err != nil {
		return nil, err
	}
	return tripOf(t), nil
}

func (c *Console) getTripEvents(r *http.Request, p auth.Principal) (any, error) {
	id, err := tripID(r)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.callContext(r.Context(), p)
	defer cancel()
	evs, err := c.deps.Trips.Events(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]*eventJSON, 0, len(evs))
	for _, e := range evs {
		ej := eventOf(e)
		ej.Trip = nil // the history needs no copy of the trip per event
		out = append(out, ej)
	}
	return map[string]any{"trip_id": id, "events": out}, nil
}

// actionBody is the JSON body of the dispatcher's actions.
type actionBody struct {
	Reason string `json:"reason"`
}

// readAction decodes an action's body (an empty body is {}), applying the
// default reason.
func readAction(r *http.Request, defaultReason string) (actionBody, error) {
	var b actionBody
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil && !errors.Is(err, io.EOF) {
		return b, errBadRequest("body: " + err.Error())
	}
	if dec.More() {
		return b, errBadRequest("body: one JSON object expected")
	}
	b.Reason = strings.TrimSpace(b.Reason)
	if len(b.Reason) > maxReasonLen {
		return b, errBadRequest(fmt.Sprintf("reason: at most %d bytes", maxReasonLen))
	}
	b.Reason = cmp.Or(b.Reason, defaultReason)
	return b, nil
}

// idempotencyKey is the request's Idempotency-Key header (a retried action
// then happens once), or a fresh key.
func idempotencyKey(r *http.Request) (string, error) {
	k := r.Header.Get("Idempotency-Key")
	if k == "" {
		return "console-" + uuid.NewString(), nil
	}
	if len(k) > 128 {
		return "", errBadRequest("Idempotency-Key: at most 128 bytes")
	}
	return k, nil
}

type actionResult struct {
	Trip     *tripJSON  `json:"trip,omitempty"`
	Event    *eventJSON `json:"event,omitempty"`
	Dispatch *struct {
		Partition string `json:"partition"`
		Started   bool   `json:"started"`
	} `json:"dispatch,omitempty"`
	DriverID string `json:"driver_id,omitempty"`
	Gateway  string `json:"gateway,omitempty"`
}

// transition fires a dispatcher event on the trip named by the path.
func (c *Console) transition(r *http.Request, p auth.Principal, ev commonv1.TripEventType, defaultReason string) (*commonv1.Trip, *commonv1.TripEvent, error) {
	id, err := tripID(r)
	if err != nil {
		return nil, nil, err
	}
	body, err := readAction(r, defaultReason)
	if err != nil {
		return nil, nil, err
	}
	key, err := idempotencyKey(r)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := c.callContext(r.Context(), p)
	defer cancel()
	return c.deps.Trips.Transition(ctx, &tripv1.TransitionRequest{
		TripId: id, Event: ev, Actor: commonv1.Actor_ACTOR_DISPATCHER, ActorId: p.Subject,
		Reason: body.Reason, IdempotencyKey: key,
	})
}

// cancelTrip is POST /api/trips/{id}/cancel {"reason": "…"}.
func (c *Console) cancelTrip(r *http.Request, p auth.Principal) (any, error) {
	t, e, err := c.transition(r, p, commonv1.TripEventType_TRIP_EVENT_TYPE_CANCELLED, "cancelled by dispatcher")
	if err != nil {
		return nil, err
	}
	c.log.Info("dispatcher cancelled trip", "trip", t.GetId(), "dispatcher", p.Subject, "reason", e.GetReason())
	return actionResult{Trip: tripOf(t), Event: eventOf(e)}, nil
}

// redispatchTrip is POST /api/trips/{id}/redispatch {"reason": "…"}: a
// REQUESTED trip gets a REDISPATCHED event in its history (with the
// dispatcher's identity), then goes to the owner of its pickup again.
func (c *Console) redispatchTrip(r *http.Request, p auth.Principal) (any, error) {
	t, e, err := c.transition(r, p, commonv1.TripEventType_TRIP_EVENT_TYPE_REDISPATCHED, "re-dispatched by dispatcher")
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.callContext(r.Context(), p)
	defer cancel()
	resp, err := c.deps.Matching.Dispatch(ctx, &matchingv1.DispatchRequest{Trip: t})
	if err != nil {
		// The event is recorded; the matching recovery sweep picks the
		// trip up again even if this hand-off failed.
		return nil, fmt.Errorf("re-dispatch recorded but the hand-off to matching failed: %w", err)
	}
	c.log.Info("dispatcher re-dispatched trip", "trip", t.GetId(), "dispatcher", p.Subject, "partition", resp.GetPartition())
	out := actionResult{Trip: tripOf(t), Event: eventOf(e)}
	out.Dispatch = &struct {
		Partition string `json:"partition"`
		Started   bool   `json:"started"`
	}{resp.GetPartition(), resp.GetStarted()}
	return out, nil
}

// takeOffline is POST /api/drivers/{id}/offline {"reason": "…"}: finds the
// gateway holding the driver's stream and takes the driver out of dispatch.
func (c *Console) takeOffline(r *http.Request, p auth.Principal) (any, error) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxIDLen {
		return nil, errBadRequest(fmt.Sprintf("driver id must be 1..%d bytes", maxIDLen))
	}
	body, err := readAction(r, "taken offline by dispatcher "+p.Subject)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.callContext(r.Context(), p)
	defer cancel()
	gw, err := c.findGateway(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := c.deps.Drivers.TakeOffline(ctx, gw, id, body.Reason); err != nil {
		return nil, err
	}
	c.log.Info("dispatcher took driver offline", "driver", id, "gateway", gw, "dispatcher", p.Subject, "reason", body.Reason)
	return actionResult{DriverID: id, Gateway: gw}, nil
}

// findGateway asks every matching worker's own index for the driver and
// returns the gateway address its last location came through.
func (c *Console) findGateway(ctx context.Context, driverID string) (string, error) {
	var errs []error
	for _, m := range c.deps.Matching.Members() {
		mc, err := c.deps.Matching.At(m.Address)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		resp, err := mc.NearbyDrivers(ctx, &matchingv1.NearbyDriversRequest{
			Center: &commonv1.LatLng{}, RadiusMeters: 1, Limit: 1,
			IncludeBusy: true, LocalOnly: true, DriverIds: []string{driverID},
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range resp.GetDrivers() {
			if d.GetPosition().GetDriverId() == driverID && d.GetGatewayAddress() != "" {
				return d.GetGatewayAddress(), nil
			}
		}
	}
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	return "", errNotFound(fmt.Sprintf("driver %q is not online", driverID))
}
