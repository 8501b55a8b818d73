package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/hexride/hexride/infra/audit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Policy says which roles may call one RPC.
type Policy struct {
	Roles []Role
}

// Allows reports whether r may call.
func (p Policy) Allows(r Role) bool { return slices.Contains(p.Roles, r) }

// Allow is a Policy for roles.
func Allow(roles ...Role) Policy { return Policy{Roles: roles} }

// PolicyTable maps a gRPC full method ("/pkg.Service/Method") to its
// policy. A method missing from the table is denied to everyone.
//
// The table decides roles only. Ownership — a rider reads and acts only on
// its own trips, a driver acts only on trips assigned to it — is checked by
// the services against the trip store's actor checks, because only they
// know which trip a request touches and who holds it.
type PolicyTable map[string]Policy

// Lookup returns the policy for fullMethod; ok is false when there is none
// (deny).
func (t PolicyTable) Lookup(fullMethod string) (Policy, bool) {
	p, ok := t[fullMethod]
	return p, ok
}

// ErrBadPolicy is returned by PolicyTable.Validate.
var ErrBadPolicy = errors.New("auth: invalid policy table")

// Validate checks every key is a full method name and every policy names
// at least one known role.
func (t PolicyTable) Validate() error {
	for m, p := range t {
		if !validFullMethod(m) {
			return fmt.Errorf("%w: %q is not /package.Service/Method", ErrBadPolicy, m)
		}
		if len(p.Roles) == 0 {
			return fmt.Errorf("%w: %s allows no role", ErrBadPolicy, m)
		}
		for _, r := range p.Roles {
			if !validRole(r) {
				return fmt.Errorf("%w: %s names unknown role %q", ErrBadPolicy, m, r)
			}
		}
	}
	return nil
}

func validFullMethod(m string) bool {
	rest, ok := strings.CutPrefix(m, "/")
	if !ok {
		return false
	}
	svc, method, ok := strings.Cut(rest, "/")
	return ok && strings.Contains(svc, ".") && method != "" && !strings.Contains(method, "/")
}

// Full service names.
const (
	riderService   = "/hexride.rider.v1.RiderService/"
	driverService  = "/hexride.driver.v1.DriverService/"
	gatewayService = "/hexride.driver.v1.DriverGatewayService/"
	matchService   = "/hexride.matching.v1.MatchingService/"
	tripService    = "/hexride.trip.v1.TripService/"
)

// DefaultPolicies is the hexride policy table:
//
//   - RiderService: riders (ownership of trips: rider service).
//   - DriverService: drivers (the Connect stream and trip actions;
//     ownership: trip store actor checks).
//   - MatchingService, TripService, DriverGatewayService: other hexride
//     processes (service). Dispatchers (the console) may also call the read
//     methods and the console actions: trip Transition (cancel), Dispatch
//     (redispatch), TakeOffline.
//
// Every method of every hexride service must appear here; a test checks
// the table against the generated service descriptors.
func DefaultPolicies() PolicyTable {
	rider := Allow(RoleRider)
	driver := Allow(RoleDriver)
	svc := Allow(RoleService)
	console := Allow(RoleService, RoleDispatcher)
	return PolicyTable{
		riderService + "GetQuote":    rider,
		riderService + "RequestRide": rider,
		riderService + "CancelRide":  rider,
		riderService + "GetTrip":     rider,
		riderService + "ListTrips":   rider,
		riderService + "WatchTrip":   rider,
		riderService + "RateTrip":    rider,

		driverService + "Connect":        driver,
		driverService + "ArriveAtPickup": driver,
		driverService + "StartTrip":      driver,
		driverService + "CompleteTrip":   driver,
		driverService + "CancelTrip":     driver,

		gatewayService + "PushToDriver":       svc,
		gatewayService + "TakeOffline":        console,
		gatewayService + "ListFlaggedDrivers": console,
		gatewayService + "WatchPosition":      svc,

		matchService + "IngestLocations": svc,
		matchService + "Dispatch":        console,
		matchService + "CancelDispatch":  svc,
		matchService + "ReplyOffer":      svc,
		matchService + "NearbyDrivers":   console,
		matchService + "CellStats":       console,
		matchService + "Partitions":      console,
		matchService + "ListDrivers":     console,
		matchService + "ShareSurge":      svc,

		tripService + "CreateTrip":    svc,
		tripService + "AssignDriver":  svc,
		tripService + "Transition":    console,
		tripService + "RateTrip":      svc,
		tripService + "GetTrip":       console,
		tripService + "ListTrips":     console,
		tripService + "GetTripEvents": console,
		tripService + "WatchTrips":    console,
	}
}

// AuthorizerConfig configures the authentication + authorization
// interceptor.
type AuthorizerConfig struct {
	// Authenticator establishes the caller when the context has no
	// principal yet; nil means an earlier interceptor must have set it.
	Authenticator Authenticator
	// Policies; DefaultPolicies() if nil.
	Policies PolicyTable
	// Logger gets one warning per denial; default discards.
	Logger *slog.Logger
	// Audit gets one record per denial; nil records nothing.
	Audit audit.Recorder
}

// Authorizer is the one interceptor (unary + stream) that authenticates a
// call and checks its method's policy. Health is exempt; reflection needs
// an authenticated caller of any role and no policy entry.
type Authorizer struct {
	authn    Authenticator
	policies PolicyTable
	log      *slog.Logger
	audit    audit.Recorder
}

// NewAuthorizer validates cfg and returns the interceptor.
func NewAuthorizer(cfg AuthorizerConfig) (*Authorizer, error) {
	if cfg.Policies == nil {
		cfg.Policies = DefaultPolicies()
	}
	if err := cfg.Policies.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Authorizer{authn: cfg.Authenticator, policies: cfg.Policies, log: cfg.Logger, audit: cfg.Audit}, nil
}

// Authorize returns ctx carrying the caller if it may call fullMethod, or
// an Unauthenticated / PermissionDenied status error.
func (a *Authorizer) Authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	if exempt(fullMethod) {
		return ctx, nil
	}
	p, ok := FromContext(ctx)
	if !ok {
		if a.authn == nil {
			a.deny(ctx, "anonymous", fullMethod, audit.OutcomeUnauthenticated, "no principal established")
			return ctx, status.Error(codes.Unauthenticated, ErrUnauthenticated.Error())
		}
		var err error
		p, err = a.authn.Authenticate(ctx)
		if err != nil {
			// err never carries the token (JWTAuthenticator guarantees it).
			a.deny(ctx, "anonymous", fullMethod, audit.OutcomeUnauthenticated, err.Error())
			return ctx, status.Error(codes.Unauthenticated, err.Error())
		}
		ctx = WithPrincipal(ctx, p)
	}
	if IsReflection(fullMethod) {
		if !validRole(p.Role) {
			a.deny(ctx, p.String(), fullMethod, audit.OutcomeDenied, "unknown role "+string(p.Role))
			return ctx, status.Errorf(codes.PermissionDenied, "%s may not call this", p.Role)
		}
		return ctx, nil
	}
	pol, ok := a.policies.Lookup(fullMethod)
	if !ok {
		a.deny(ctx, p.String(), fullMethod, audit.OutcomeDenied, "method has no policy")
		return ctx, status.Errorf(codes.PermissionDenied, "%s may not call this", p.Role)
	}
	if !pol.Allows(p.Role) {
		a.deny(ctx, p.String(), fullMethod, audit.OutcomeDenied, "role "+string(p.Role)+" not allowed")
		return ctx, status.Errorf(codes.PermissionDenied, "%s may not call this", p.Role)
	}
	return ctx, nil
}

func (a *Authorizer) deny(ctx context.Context, actor, method string, outcome audit.Outcome, reason string) {
	a.log.WarnContext(ctx, "call refused", "actor", actor, "method", method, "outcome", string(outcome), "reason", reason)
	if a.audit != nil {
		a.audit.Record(ctx, audit.Event{Actor: actor, Action: method, Outcome: outcome, Reason: reason})
	}
}

// UnaryServerInterceptor authenticates and authorizes unary calls.
func (a *Authorizer) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.Authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor authenticates and authorizes streams.
func (a *Authorizer) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.Authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if ctx != ss.Context() {
			ss = &principalStream{ServerStream: ss, ctx: ctx}
		}
		return handler(srv, ss)
	}
}
