package webui

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/gate"
)

// hub watches the held requests for every live inbox at once: one reader
// of the store, however many pages are open. It reads only while some page
// listens.
type hub struct {
	svc  *gate.Service
	poll time.Duration
	log  hclog.Logger

	mu      sync.Mutex
	subs    map[chan held]struct{}
	last    held
	running bool
}

// held is what a page is told: a name for the set of held requests, and
// how many there are.
type held struct {
	version string
	n       int
}

func newHub(svc *gate.Service, poll time.Duration, log hclog.Logger) *hub {
	return &hub{svc: svc, poll: poll, log: log, subs: map[chan held]struct{}{}}
}

// subscribe returns a channel that gets the newest held set (at once the
// one known, then each change), and the function that ends it.
func (h *hub) subscribe() (<-chan held, func()) {
	ch := make(chan held, 1)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	if h.last.version != "" {
		ch <- h.last
	}
	if !h.running {
		h.running = true
		go h.run()
	}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

// run reads the held requests every poll while anyone listens, and tells
// every listener of a change (a slow one gets only the newest).
func (h *hub) run() {
	t := time.NewTicker(h.poll)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		reqs, err := h.svc.Pending(ctx)
		cancel()
		h.mu.Lock()
		if len(h.subs) == 0 {
			h.running, h.last = false, held{}
			h.mu.Unlock()
			return
		}
		if err != nil {
			h.log.Warn("reading the held requests for the live inbox", "err", err)
		} else if v := version(reqs); v != h.last.version {
			h.last = held{v, len(reqs)}
			for ch := range h.subs {
				select {
				case <-ch: // drop what it has not taken: only the newest matters
				default:
				}
				ch <- h.last
			}
		}
		h.mu.Unlock()
		<-t.C
	}
}
