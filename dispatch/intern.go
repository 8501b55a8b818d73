package dispatch

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// interner maps a small set of repeated strings (products, gateway
// addresses) to dense ids so every driver record stores a 2- or 4-byte id
// instead of a 16-byte string header. Reads of names are lock-free (an
// immutable slice published atomically); the table only grows.
type interner struct {
	mu    sync.RWMutex
	ids   map[string]uint32
	names atomic.Pointer[[]string]
	limit int
}

func newInterner(limit int) *interner {
	in := &interner{ids: map[string]uint32{"": 0}, limit: limit}
	names := []string{""} // id 0 is the empty string
	in.names.Store(&names)
	return in
}

func (in *interner) intern(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	in.mu.RLock()
	id, ok := in.ids[s]
	in.mu.RUnlock()
	if ok {
		return id, nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if id, ok := in.ids[s]; ok {
		return id, nil
	}
	old := *in.names.Load()
	if len(old) >= in.limit {
		return 0, fmt.Errorf("%w: more than %d", ErrTooManyValues, in.limit-1)
	}
	s = string([]byte(s)) // own the bytes: the caller's buffer may be large
	names := make([]string, len(old)+1)
	copy(names, old)
	names[len(old)] = s
	id = uint32(len(old))
	in.ids[s] = id
	in.names.Store(&names)
	return id, nil
}

// lookup returns the id of s without adding it.
func (in *interner) lookup(s string) (uint32, bool) {
	if s == "" {
		return 0, true
	}
	in.mu.RLock()
	defer in.mu.RUnlock()
	id, ok := in.ids[s]
	return id, ok
}

func (in *interner) snapshot() []string { return *in.names.Load() }
