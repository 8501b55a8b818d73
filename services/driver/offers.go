package driver

import (
	"time"

	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
)

// A session holds each offer it delivered until the driver replies or the
// offer lapses: offerGrace after its expires_at (the matching worker that
// made it, whose clock decides, has revoked it by then). Until it lapses a
// reply goes to matching; after, the gateway answers EXPIRED itself, as
// matching would. Lapsed offers are dropped on the session's next message
// or offer, with no timer per offer.
const (
	offerGrace = 10 * time.Second
	// offerTTL is the lifetime of an offer that carries no expiry.
	offerTTL = 2 * time.Minute
	// lapsedOffers is how many lapsed offers a session remembers (a reply
	// to an older one is answered unknown_offer).
	lapsedOffers = 16
)

// heldOffer is a delivered offer awaiting the driver's reply.
type heldOffer struct {
	offer *driverv1.Offer
	lapse time.Time // after this the gateway answers a reply itself
	// until is when the offer stops binding the driver (its expiry); a
	// closed offer (the worker told the driver what became of it) binds
	// no longer, though a reply to it is still routed.
	until  time.Time
	closed bool
}

// lapsedOffer is an offer dropped unanswered.
type lapsedOffer struct{ offerID, tripID string }

// holdOffer records a delivered offer. s.mu must be held.
func (s *session) holdOffer(offer *driverv1.Offer, now time.Time) {
	until := now.Add(offerTTL)
	if offer.GetExpiresAt() != nil {
		until = offer.GetExpiresAt().AsTime()
	}
	lapse := until.Add(offerGrace)
	if s.offers == nil {
		s.offers = map[string]heldOffer{} // most sessions never hold one
	}
	s.offers[offer.GetOfferId()] = heldOffer{offer: offer, lapse: lapse, until: until}
	if s.nextLapse.IsZero() || lapse.Before(s.nextLapse) {
		s.nextLapse = lapse
	}
}

// bound reports whether the driver holds an offer other than offerID that
// still binds it: one driver, one offer at a time, whichever matching
// workers make them (a worker may offer a driver indexed by a neighbour,
// and only the gateway holding the driver's stream sees every offer).
// s.mu must be held.
func (s *session) bound(offerID string, now time.Time) bool {
	for id, h := range s.offers {
		if id != offerID && !h.closed && now.Before(h.until) {
			return true
		}
	}
	return false
}

// closeOffer marks an offer the worker has ended (its result is on the way
// to the driver). s.mu must be held.
func (s *session) closeOffer(offerID string) {
	if h, ok := s.offers[offerID]; ok {
		h.closed = true
		s.offers[offerID] = h
	}
}

// pruneOffers drops the offers that lapsed by now, remembering their ids.
// s.mu must be held.
func (s *session) pruneOffers(now time.Time) {
	if s.nextLapse.IsZero() || now.Before(s.nextLapse) {
		return
	}
	s.nextLapse = time.Time{}
	for id, h := range s.offers {
		if now.Before(h.lapse) {
			if s.nextLapse.IsZero() || h.lapse.Before(s.nextLapse) {
				s.nextLapse = h.lapse
			}
			continue
		}
		delete(s.offers, id)
		if s.lapsed == nil {
			s.lapsed = new([lapsedOffers]lapsedOffer) // most sessions never let one lapse
		}
		s.lapsed[s.lapsedNext] = lapsedOffer{offerID: id, tripID: h.offer.GetTripId()}
		s.lapsedNext = (s.lapsedNext + 1) % lapsedOffers
	}
}

// takeLapsed reports whether the offer is one of the remembered lapsed
// ones, for this trip, and forgets it: like a held offer, a lapsed one is
// answered once. s.mu must be held.
func (s *session) takeLapsed(offerID, tripID string) bool {
	if s.lapsed == nil {
		return false
	}
	for i, l := range s.lapsed {
		if l.offerID != "" && l.offerID == offerID && l.tripID == tripID {
			s.lapsed[i] = lapsedOffer{}
			return true
		}
	}
	return false
}
