// Package enginetest holds what tests of the engine and of the packages over
// it share: a Wire (engine.Wire) that keeps what the engine writes instead
// of sending it to a server.
package enginetest

import (
	"bytes"
	"regexp"
	"sync"
	"sync/atomic"
)

// Wire is an engine.Wire that keeps what is written. SetReceived says how
// much of the stream the server has sent so far (0 unless set).
type Wire struct {
	mu       sync.Mutex
	out      bytes.Buffer
	err      error
	received atomic.Int64
}

// Write keeps p, unless the wire was aborted.
func (w *Wire) Write(p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.out.Write(p)
	return nil
}

// Abort makes every later Write fail with err.
func (w *Wire) Abort(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// Failed returns the error Abort was given, if any.
func (w *Wire) Failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Received returns what SetReceived set.
func (w *Wire) Received() int64 { return w.received.Load() }

// SetReceived sets what Received returns.
func (w *Wire) SetReceived(n int64) { w.received.Store(n) }

// echoRE matches the engine's echo of an outbox write: a ping from its
// domain to itself (see engine's promote).
var echoRE = regexp.MustCompile(`<iq type='get' from='([^']*)' to='([^']*)' id='rg-echo-\d+'><ping xmlns='urn:xmpp:ping'/></iq>`)

// String returns what was written so far, but for the engine's echoes of
// its outbox writes (Raw has them).
func (w *Wire) String() string {
	return echoRE.ReplaceAllString(w.Raw(), "")
}

// Raw returns all written so far.
func (w *Wire) Raw() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// Reset forgets what was written so far.
func (w *Wire) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out.Reset()
}

var presenceRE = regexp.MustCompile(`<presence from='([^']*)' to='([^']*)' id='[^']*'(?: type='([^']*)')?`)

// Presences returns the presences written so far as "from>to type" (type
// "available" when there is none), in order.
func (w *Wire) Presences() []string {
	var out []string
	for _, m := range presenceRE.FindAllStringSubmatch(w.String(), -1) {
		typ := m[3]
		if typ == "" {
			typ = "available"
		}
		out = append(out, m[1]+">"+m[2]+" "+typ)
	}
	return out
}
