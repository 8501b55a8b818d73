package fakeclock

import (
	"slices"
	"testing"
	"time"
)

// TestOrder: calls run at their due time, in due order (ties in scheduling
// order), including calls scheduled by calls; stopped calls never run.
func TestOrder(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	c := New(start)
	var got []string
	at := func(name string) func() {
		return func() { got = append(got, name+"@"+c.Now().Sub(start).String()) }
	}
	c.AfterFunc(3*time.Second, at("c"))
	c.AfterFunc(time.Second, func() {
		at("a")()
		c.AfterFunc(time.Second, at("a+1"))
	})
	c.AfterFunc(2*time.Second, at("b"))
	stopped := c.AfterFunc(2*time.Second, at("never"))
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop must report true once")
	}
	if now := c.Advance(2500 * time.Millisecond); !now.Equal(start.Add(2500 * time.Millisecond)) {
		t.Fatalf("now %v", now)
	}
	want := []string{"a@1s", "b@2s", "a+1@2s"} // b was scheduled first
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if next, ok := c.Next(); !ok || !next.Equal(start.Add(3*time.Second)) || c.Pending() != 1 {
		t.Fatalf("next %v %v pending %d", next, ok, c.Pending())
	}
	c.Advance(time.Hour)
	if got[len(got)-1] != "c@3s" || c.Pending() != 0 {
		t.Fatalf("got %v", got)
	}
}
