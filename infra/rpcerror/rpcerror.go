// Package rpcerror is the one shape in which a service client hands back a
// failed call: the gRPC status (so status.Code and status.FromError see it,
// and a service passing it on keeps its code, message and details) that
// also matches the callee's domain error with errors.Is.
package rpcerror

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failed call: its status and the domain error it stands for
// (nil when the status carries none the client knows).
type Error struct {
	Status *status.Status
	Err    error
}

// New returns st as an error that also matches domain.
func New(st *status.Status, domain error) error { return &Error{Status: st, Err: domain} }

func (e *Error) Error() string { return e.Status.Err().Error() }

// Unwrap returns the domain error.
func (e *Error) Unwrap() error { return e.Err }

// GRPCStatus lets status.FromError and status.Code see the status.
func (e *Error) GRPCStatus() *status.Status { return e.Status }

// StatusOf finds the status an error carries, however deeply wrapped, as
// it was created: its own code, message and details, without the text of
// whatever wrapped it (which may name packages or hosts).
func StatusOf(err error) (*status.Status, bool) {
	var carrier interface{ GRPCStatus() *status.Status }
	if errors.As(err, &carrier) {
		if st := carrier.GRPCStatus(); st != nil {
			return st, true
		}
	}
	return nil, false
}

// Fallback is the tail every service's error edge shares, for errors that
// are not the service's own: a status (from a peer, or
// grpcserver.ErrDraining) passes through; context.Canceled and
// DeadlineExceeded become their codes; anything else is Internal with a
// message that says nothing internal (the service logs the cause).
func Fallback(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := StatusOf(err); ok {
		return st.Err()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed")
	}
	return status.Error(codes.Internal, "internal error")
}
