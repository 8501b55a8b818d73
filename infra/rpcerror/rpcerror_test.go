package rpcerror

import (
	"context"
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

func TestFallback(t *testing.T) {
	peer := status.Error(codes.Unavailable, "peer down")
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{nil, codes.OK},
		{peer, codes.Unavailable},
		{fmt.Errorf("matchingclient: dial 10.0.0.5:7070: %w", peer), codes.Unavailable},
		{fmt.Errorf("call: %w", context.Canceled), codes.Canceled},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{errors.New("dial tcp 10.0.0.5:5432: connection refused"), codes.Internal},
	} {
		got := Fallback(tc.err)
		if status.Code(got) != tc.code {
			t.Errorf("Fallback(%v) = %v, want %s", tc.err, got, tc.code)
		}
		if tc.code == codes.Internal && status.Convert(got).Message() != "internal error" {
			t.Errorf("Internal message %q leaks the cause", status.Convert(got).Message())
		}
	}
}

func TestStatusOfKeepsTheOriginalMessage(t *testing.T) {
	inner := status.Error(codes.Unavailable, "peer down")
	st, ok := StatusOf(fmt.Errorf("dial 10.0.0.5:7070: %w", inner))
	if !ok || st.Code() != codes.Unavailable || st.Message() != "peer down" {
		t.Fatalf("StatusOf = %v, %v", st, ok)
	}
	if got := status.Convert(Fallback(fmt.Errorf("dial 10.0.0.5:7070: %w", inner))).Message(); got != "peer down" {
		t.Fatalf("Fallback message %q carries the wrapper", got)
	}
	if _, ok := StatusOf(errors.New("plain")); ok {
		t.Fatal("a plain error has no status")
	}
}
