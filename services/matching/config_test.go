package matching

import (
	"errors"
	"testing"
	"time"

	"github.com/hexride/hexride/dispatch"
)

func TestConfigDispatchMode(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   error
	}{
		{"defaults: greedy, 2s windows", func(*Config) {}, nil},
		{"batched", func(c *Config) { c.Mode = ModeBatched }, nil},
		{"batched, 1s", func(c *Config) { c.Mode, c.BatchWindow = ModeBatched, time.Second }, nil},
		{"batched, 3s", func(c *Config) { c.Mode, c.BatchWindow = ModeBatched, 3*time.Second }, nil},
		{"no mode", func(c *Config) { c.Mode = "" }, ErrBadMode},
		{"unknown mode", func(c *Config) { c.Mode = "Batched" }, ErrBadMode},
		{"window too short", func(c *Config) { c.BatchWindow = time.Second - 1 }, ErrBadWindow},
		{"window too long", func(c *Config) { c.BatchWindow = 3*time.Second + 1 }, ErrBadWindow},
		{"no follow-up", func(c *Config) { c.BatchFollowUp = 0 }, nil},
		{"follow-up as long as the window", func(c *Config) { c.BatchFollowUp = c.BatchWindow }, nil},
		{"follow-up longer than the window", func(c *Config) { c.BatchFollowUp = c.BatchWindow + 1 }, ErrBadWindow},
		{"negative follow-up", func(c *Config) { c.BatchFollowUp = -1 }, ErrBadWindow},
		{"no batch candidates", func(c *Config) { c.BatchCandidates = 0 }, ErrBadSearch},
		{"adaptive 1s to 3s", func(c *Config) { c.BatchWindow, c.BatchWindowMax = time.Second, 3*time.Second }, nil},
		{"adaptive longest below the window", func(c *Config) { c.BatchWindowMax = c.BatchWindow - 1 }, ErrBadWindow},
		{"adaptive longest above 3s", func(c *Config) { c.BatchWindowMax = 3*time.Second + 1 }, ErrBadWindow},
		{"no window load", func(c *Config) { c.BatchWindowLoad = 0 }, ErrBadWindow},
		{"hold off", func(c *Config) { c.BatchHoldPickup, c.BatchHoldMax = 0, 0 }, nil},
		{"hold 2m pickups up to 6s", func(c *Config) { c.BatchHoldPickup, c.BatchHoldMax = 2*time.Minute, 6*time.Second }, nil},
		{"hold two windows", func(c *Config) { c.BatchHoldPickup, c.BatchHoldMax = time.Minute, 2*c.BatchWindow }, nil},
		{"hold up to 10s", func(c *Config) { c.BatchHoldPickup, c.BatchHoldMax = time.Minute, MaxBatchHold }, nil},
		{"hold shorter than a window", func(c *Config) { c.BatchHoldPickup, c.BatchHoldMax = time.Minute, c.BatchWindow-1 }, ErrBadWindow},
		{"hold past 10s", func(c *Config) { c.BatchHoldPickup, c.BatchHoldMax = time.Minute, MaxBatchHold+1 }, ErrBadWindow},
		{"hold without a pickup", func(c *Config) { c.BatchHoldMax = 6 * time.Second }, ErrBadWindow},
		{"pickup without a hold", func(c *Config) { c.BatchHoldPickup = time.Minute }, ErrBadWindow},
		{"negative hold pickup", func(c *Config) { c.BatchHoldPickup, c.BatchHoldMax = -1, 6*time.Second }, ErrBadWindow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig(m0, dispatch.DefaultTopology())
			tt.mutate(&c)
			if err := c.Validate(); tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Validate() = %v, want %v", err, tt.want)
			}
		})
	}
	if c := DefaultConfig(m0, dispatch.DefaultTopology()); c.Mode != ModeGreedy || c.BatchWindow != 2*time.Second {
		t.Fatalf("defaults %q %v, want greedy 2s", c.Mode, c.BatchWindow)
	}
}
