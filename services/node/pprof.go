package node

import (
	"net"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/hexride/hexride/infra/auth"
)

// mountPprof serves Go's profiles under /debug/pprof/ (Config.Pprof, off by
// default). Profiles show internals, so every request needs a dispatcher's
// or a service's bearer token, except where the console is open
// (development on loopback).
func (n *Node) mountPprof(mux *http.ServeMux) {
	index := http.NewServeMux()
	index.HandleFunc("/debug/pprof/", pprof.Index)
	index.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	index.HandleFunc("/debug/pprof/profile", pprof.Profile)
	index.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	index.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/pprof/", n.requireOperator(index))
}

// loopback reports whether addr listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// requireOperator lets through requests carrying a bearer token of a
// dispatcher or a service (or every request when the console is open and
// listens on loopback only).
func (n *Node) requireOperator(next http.Handler) http.Handler {
	open := (n.cfg.ConsoleOpen || n.cfg.Security.DevHeader) && loopback(n.cfg.HTTPAddr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !open {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || n.sec.verify == nil {
				http.Error(w, "profiles need a dispatcher's or a service's bearer token", http.StatusUnauthorized)
				return
			}
			p, err := n.sec.verify(strings.TrimSpace(tok))
			if err != nil {
				http.Error(w, "the bearer token is not valid", http.StatusUnauthorized)
				return
			}
			if p.Role != auth.RoleDispatcher && p.Role != auth.RoleService {
				http.Error(w, "profiles are for dispatchers and services", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
