package dispatch

import "errors"

// Sentinel errors. Functions wrap them with detail; match with errors.Is.
var (
	// ErrInvalidConfig: a config's Validate failed.
	ErrInvalidConfig = errors.New("dispatch: invalid config")
	// ErrInvalidLocation: a location update is malformed (empty id, bad
	// position, unknown status, id too long).
	ErrInvalidLocation = errors.New("dispatch: invalid location")
	// ErrStaleLocation: the update is older than the one already indexed;
	// it was ignored.
	ErrStaleLocation = errors.New("dispatch: stale location")
	// ErrUnknownDriver: the driver is not in the index.
	ErrUnknownDriver = errors.New("dispatch: unknown driver")
	// ErrInvalidQuery: a nearest-driver query is malformed.
	ErrInvalidQuery = errors.New("dispatch: invalid query")
	// ErrTooManyValues: an interning table (products, gateways) is full.
	ErrTooManyValues = errors.New("dispatch: too many distinct values")
	// ErrUnknownProduct: no price for the product.
	ErrUnknownProduct = errors.New("dispatch: unknown product")
	// ErrResolution: a cell of the wrong resolution was passed.
	ErrResolution = errors.New("dispatch: wrong cell resolution")
)
