// Package bench measures rostergate: its stream layer against an in-process
// XEP-0114 server, the durable SQLite store behind it, the latency it adds,
// a run through a real Prosody, and the presence broadcast of a large roster.
// cmd/rostergate-bench runs it all and prints the figures; the tests here run
// small sizes so that the harness cannot rot.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// server is a minimal XEP-0114 server on 127.0.0.1: it checks the
// component's handshake and hands each stream to the benchmark, which then
// writes load to it and counts the replies.
type server struct {
	ln     net.Listener
	domain string
	secret string
	conns  chan *serverConn
}

// serverConn is one component stream after a successful handshake.
type serverConn struct {
	net.Conn
	r  *bufio.Reader
	up time.Time // when <handshake/> was sent
}

func newServer(domain, secret string) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: listening: %w", err)
	}
	s := &server{ln: ln, domain: domain, secret: secret, conns: make(chan *serverConn, 4)}
	go s.accept()
	return s, nil
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) close() { _ = s.ln.Close() }

func (s *server) accept() {
	for range 64 {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			sc, err := s.handshake(c)
			if err != nil {
				_ = c.Close()
				return
			}
			s.conns <- sc
		}()
	}
}

// handshake plays the server's side of XEP-0114 §3.
func (s *server) handshake(c net.Conn) (*serverConn, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReaderSize(c, 64<<10)
	if _, err := readUntil(r, ">"); err != nil {
		return nil, err
	}
	const id = "bench-stream"
	if _, err := fmt.Fprintf(c, "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='%s' from='%s'>", id, s.domain); err != nil {
		return nil, err
	}
	hs, err := readUntil(r, "</handshake>")
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum([]byte(id + s.secret))
	if hs != "<handshake>"+hex.EncodeToString(sum[:])+"</handshake>" {
		_, _ = io.WriteString(c, "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
		return nil, errors.New("bench: bad handshake")
	}
	if _, err := io.WriteString(c, "<handshake/>"); err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return &serverConn{Conn: c, r: r, up: time.Now()}, nil
}

// next waits for the next stream from the component.
func (s *server) next(ctx context.Context) (*serverConn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("bench: no stream from the component: %w", ctx.Err())
	}
}

// readUntil reads until what it read ends with suffix (at most 4 KiB).
func readUntil(r *bufio.Reader, suffix string) (string, error) {
	var b strings.Builder
	for b.Len() < 4096 {
		c, err := r.ReadByte()
		if err != nil {
			return b.String(), err
		}
		b.WriteByte(c)
		if strings.HasSuffix(b.String(), suffix) {
			return b.String(), nil
		}
	}
	return b.String(), errors.New("bench: handshake element too long")
}

// counter reads a stream and counts the occurrences of a marker in it,
// across read boundaries, recording when each was seen. It never parses XML:
// the benchmark must cost as little as possible next to rostergate.
type counter struct {
	marker []byte
	n      atomic.Int64
	bytes  atomic.Int64

	mu    sync.Mutex
	times []time.Time // when each marker was read, if recording
	rec   bool
	moved chan struct{} // signalled (non-blocking) after each read that counted
	done  chan struct{} // closed when the stream ends
	err   error
}

func newCounter(marker string, record bool) *counter {
	return &counter{marker: []byte(marker), rec: record, moved: make(chan struct{}, 1), done: make(chan struct{})}
}

// run reads r until it fails.
func (k *counter) run(r io.Reader) {
	defer close(k.done)
	buf := make([]byte, 256<<10)
	keep := len(k.marker) - 1
	tail := 0 // bytes kept at the start of buf from the last read
	for {
		n, err := r.Read(buf[tail:])
		if n > 0 {
			now := time.Now()
			data := buf[:tail+n]
			m := bytes.Count(data, k.marker)
			k.bytes.Add(int64(n))
			if m > 0 {
				if k.rec {
					k.mu.Lock()
					for range m {
						k.times = append(k.times, now)
					}
					k.mu.Unlock()
				}
				k.n.Add(int64(m))
				select {
				case k.moved <- struct{}{}:
				default:
				}
			}
			// Keep the last bytes that could be the start of a marker,
			// unless they end a marker already counted.
			tail = min(keep, len(data))
			if i := bytes.LastIndex(data, k.marker); i >= 0 && i+len(k.marker) > len(data)-tail {
				tail = len(data) - (i + len(k.marker))
			}
			copy(buf, data[len(data)-tail:])
		}
		if err != nil {
			k.mu.Lock()
			k.err = err
			k.mu.Unlock()
			return
		}
	}
}

// wait waits until at least n markers were seen.
func (k *counter) wait(ctx context.Context, n int64) error {
	for k.n.Load() < n {
		select {
		case <-k.moved:
		case <-k.done:
			if k.n.Load() >= n {
				return nil
			}
			return fmt.Errorf("bench: stream ended after %d of %d replies: %w", k.n.Load(), n, k.err)
		case <-ctx.Done():
			return fmt.Errorf("bench: %d of %d replies: %w", k.n.Load(), n, ctx.Err())
		}
	}
	return nil
}

// recorded returns the times recorded so far.
func (k *counter) recorded() []time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]time.Time(nil), k.times...)
}
