// Package driver is the edge for driver apps: it holds one Connect stream per
// driver, validates and rate-limits location samples and batches them to the
// matching workers that own each driver's partition, delivers offers and trip
// updates to the right stream, and turns the driver's trip actions into trip
// transitions. Matching reaches the instance holding a driver's stream
// through the gateway address carried in every location it indexes.
package driver

import (
	"errors"
	"time"
)

// Config configures a Gateway.
type Config struct {
	// AdvertiseAddr is this instance's gRPC address as peers dial it; it
	// travels with every location so matching can push offers back here.
	AdvertiseAddr string
	// LocationInterval is the sampling cadence asked of driver apps.
	LocationInterval time.Duration
	// SampleRate and SampleBurst bound location samples per driver (per
	// second, token bucket); samples beyond are refused, not queued.
	SampleRate  float64
	SampleBurst int
	// MessageRate and MessageBurst bound every message a driver app sends
	// on its stream (samples, availability, replies), per second.
	MessageRate  float64
	MessageBurst int
	// MaxSpeedKPH: a sample implying faster motion since the previous one is
	// refused as implausible (GPS jump or spoofing).
	MaxSpeedKPH float64
	// MaxSampleAge and MaxSampleSkew bound how far in the past or future a
	// sample's timestamp may be.
	MaxSampleAge  time.Duration
	MaxSampleSkew time.Duration
	// MaxAccuracyM refuses samples whose accuracy radius is worse.
	MaxAccuracyM float64
	// BatchInterval and BatchSize bound how long and how many locations wait
	// before a batch goes to matching.
	BatchInterval time.Duration
	BatchSize     int
	// SampleAckInterval is how often, at most, accepted location samples
	// are acknowledged (cumulatively, see the Ack message): an ack written
	// for every sample would cost the gateway about as much as everything
	// else it does with the sample.
	SampleAckInterval time.Duration
	// SendQueue is the per-stream outgoing buffer; a driver app that falls
	// this far behind is disconnected.
	SendQueue int
	// CallTimeout bounds every outgoing unary call.
	CallTimeout time.Duration
}

// Config errors.
var (
	ErrNoAdvertiseAddr = errors.New("driver: advertise address is required")
	ErrBadLimits       = errors.New("driver: rates, sizes and durations must be positive")
)

// DefaultConfig returns production defaults.
func DefaultConfig(advertise string) Config {
	return Config{
		AdvertiseAddr:     advertise,
		LocationInterval:  4 * time.Second,
		SampleRate:        1,
		SampleBurst:       5,
		MessageRate:       5,
		MessageBurst:      20,
		MaxSpeedKPH:       250,
		MaxSampleAge:      2 * time.Minute,
		MaxSampleSkew:     30 * time.Second,
		MaxAccuracyM:      200,
		BatchInterval:     200 * time.Millisecond,
		BatchSize:         1000,
		SampleAckInterval: 30 * time.Second,
		SendQueue:         64,
		CallTimeout:       5 * time.Second,
	}
}

// Validate reports the first problem.
func (c Config) Validate() error {
	switch {
	case c.AdvertiseAddr == "":
		return ErrNoAdvertiseAddr
	case c.LocationInterval <= 0 || c.SampleRate <= 0 || c.SampleBurst <= 0 || c.MessageRate <= 0 || c.MessageBurst <= 0 || c.MaxSpeedKPH <= 0 ||
		c.MaxSampleAge <= 0 || c.MaxSampleSkew <= 0 || c.MaxAccuracyM <= 0 || c.BatchInterval <= 0 ||
		c.BatchSize <= 0 || c.SendQueue <= 0 || c.CallTimeout <= 0 || c.SampleAckInterval <= 0:
		return ErrBadLimits
	}
	return nil
}
