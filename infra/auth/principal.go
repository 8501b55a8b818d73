// Package auth says who is calling: the Principal a request runs as, how it
// travels in gRPC metadata, and the interceptors that establish it. The rider
// and driver ids the services act on come from here, never from request
// fields, so a caller cannot act as someone else by editing a message.
package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Role is what kind of caller a principal is.
type Role string

// Roles.
const (
	RoleRider      Role = "rider"
	RoleDriver     Role = "driver"
	RoleDispatcher Role = "dispatcher"
	// RoleService is another hexride process (internal RPCs).
	RoleService Role = "service"
)

// Principal is an authenticated caller.
type Principal struct {
	Role    Role
	Subject string // rider id, driver id, dispatcher id or service name
}

func (p Principal) String() string { return string(p.Role) + ":" + p.Subject }

// ParsePrincipal parses "role:subject".
func ParsePrincipal(s string) (Principal, error) {
	role, subject, ok := strings.Cut(s, ":")
	if !ok || subject == "" || len(subject) > 128 {
		return Principal{}, fmt.Errorf("auth: principal %q is not role:subject", s)
	}
	switch r := Role(role); r {
	case RoleRider, RoleDriver, RoleDispatcher, RoleService:
		return Principal{Role: r, Subject: subject}, nil
	}
	return Principal{}, fmt.Errorf("auth: unknown role %q", role)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal established for the call.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Errors.
var (
	ErrUnauthenticated = errors.New("auth: no valid credentials")
	ErrWrongRole       = errors.New("auth: caller has the wrong role")
)

// Require returns the caller if it has one of the roles, else a gRPC status
// error (Unauthenticated without a principal, PermissionDenied otherwise).
func Require(ctx context.Context, roles ...Role) (Principal, error) {
	p, ok := FromContext(ctx)
	if !ok {
		return Principal{}, status.Error(codes.Unauthenticated, ErrUnauthenticated.Error())
	}
	for _, r := range roles {
		if p.Role == r {
			return p, nil
		}
	}
	return Principal{}, status.Errorf(codes.PermissionDenied, "%s may not call this", p.Role)
}

// Authenticator establishes the principal of an incoming call from its
// metadata; it returns ErrUnauthenticated when there is none.
type Authenticator interface {
	Authenticate(ctx context.Context) (Principal, error)
}

// principalHeader carries the principal in development mode.
const principalHeader = "x-hexride-principal"

// HeaderAuthenticator trusts the x-hexride-principal header. It is for
// `hexride dev` and tests on loopback only: anyone who can reach the port can
// claim any identity. Production deployments use token verification.
type HeaderAuthenticator struct{}

// Authenticate implements Authenticator.
func (HeaderAuthenticator) Authenticate(ctx context.Context) (Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(principalHeader)
	if len(vals) != 1 {
		return Principal{}, ErrUnauthenticated
	}
	p, err := ParsePrincipal(vals[0])
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	return p, nil
}

// IsHealthCheck reports whether fullMethod is a gRPC health check, which
// Consul and load balancers call without credentials: callable by anyone,
// and never limited or shed (a refused check takes the instance out of
// discovery). The one definition the interceptors share.
func IsHealthCheck(fullMethod string) bool {
	return grpcMethod(fullMethod, "/grpc.health.v1.Health/")
}

// exempt lists methods callable without credentials.
func exempt(fullMethod string) bool { return IsHealthCheck(fullMethod) }

// IsReflection reports whether fullMethod is server reflection, which any
// authenticated caller may use (grpcurl with a token) but anonymous ones
// may not: it lists and describes every internal service.
func IsReflection(fullMethod string) bool {
	return grpcMethod(fullMethod, "/grpc.reflection.")
}

// grpcMethod reports whether fullMethod is one method under prefix.
func grpcMethod(fullMethod, prefix string) bool {
	// One "/" after the service: "/grpc.health.v1.Health/../x.Svc/M" is
	// not a health method (gRPC routes it by its last "/").
	return strings.Count(fullMethod, "/") == 2 && strings.HasPrefix(fullMethod, prefix)
}

// UnaryServerInterceptor establishes the principal of each call; calls
// without one fail Unauthenticated.
func UnaryServerInterceptor(a Authenticator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if exempt(info.FullMethod) {
			return handler(ctx, req)
		}
		p, err := a.Authenticate(ctx)
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, err.Error())
		}
		return handler(WithPrincipal(ctx, p), req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams.
func StreamServerInterceptor(a Authenticator) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if exempt(info.FullMethod) {
			return handler(srv, ss)
		}
		p, err := a.Authenticate(ss.Context())
		if err != nil {
			return status.Error(codes.Unauthenticated, err.Error())
		}
		return handler(srv, &principalStream{ServerStream: ss, ctx: WithPrincipal(ss.Context(), p)})
	}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// HeaderCredentials sends a principal in the development header on every
// call of a connection.
type HeaderCredentials struct{ Principal Principal }

var _ credentials.PerRPCCredentials = HeaderCredentials{}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c HeaderCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{principalHeader: c.Principal.String()}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (HeaderCredentials) RequireTransportSecurity() bool { return false }

// OutgoingContext returns ctx that sends p on calls made with it, for
// clients that share one connection among several principals (the simulator).
func OutgoingContext(ctx context.Context, p Principal) context.Context {
	return metadata.AppendToOutgoingContext(ctx, principalHeader, p.String())
}
