package rpcerror

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestError(t *testing.T) {
	domain := errors.New("trip not found")
	err := fmt.Errorf("calling trip: %w", New(status.New(codes.NotFound, "trip not found"), domain))
	if !errors.Is(err, domain) {
		t.Error("wrapped error does not match its domain error")
	}
	if status.Code(err) != codes.NotFound {
		t.Errorf("code %s, want NotFound", status.Code(err))
	}
	if st, ok := status.FromError(New(status.New(codes.Unavailable, "down"), nil)); !ok || st.Message() != "down" {
		t.Errorf("FromError = %v, %v", st, ok)
	}
	if errors.Is(New(status.New(codes.Internal, "x"), nil), domain) {
		t.Error("an error without a domain error matched one")
	}
}
