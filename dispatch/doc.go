// Package dispatch is hexride's pure decision logic: it owns the live supply
// index of one matching worker, the nearest-driver search, ranking, the
// per-trip offer cascade, batched assignment, surge and fares/quotes.
//
// It performs no I/O and starts no goroutines. Time comes from an injected
// [Clock] or an explicit `now`; the offer [Cascade] returns actions for the
// host (the matching service) to carry out, and the host feeds the results
// back as events. That keeps every decision deterministic and testable
// without sleeps, and lets the host re-check decisions against the trip
// store: a lost race (the driver took another trip) is an event, not a bug.
//
// The only geometry dependency is package geo; nothing here imports H3,
// gRPC or generated protobuf code.
package dispatch
