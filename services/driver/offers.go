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
}

// lapsedOffer is an offer dropped unanswered.
type lapsedOffer struct{ offerID, tripID string }

// holdOffer records a delivered offer. s.mu must be held.
func (s *session) holdOffer(offer *driverv1.Offer, now time.Time) {
	lapse := now.Add(offerTTL)
	if offer.GetExpiresAt() != nil {
		lapse = offer.GetExpiresAt().AsTime().Add(offerGrace)
	}
	if s.offers == nil {
		s.offers = map[string]heldOffer{} // most sessions never hold one
	}
	s.offers[offer.GetOfferId()] = heldOffer{offer: offer, lapse: lapse}
	if s.nextLapse.IsZero() || lapse.Before(s.nextLapse) {
		s.nextLapse = lapse
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
