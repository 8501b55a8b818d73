// Package proto holds the hexride v1 API: the .proto sources under
// hexride/<service>/v1 and the Go code generated beside them by `make proto`.
// Every request message carries protovalidate rules; the services validate
// each request against them before any handler runs.
package proto
