package xmpptest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"sync"
)

// go-xmpp does not expose the raw stanzas it receives (its Recv turns some
// IQ results into typed values and drops others), and its connection is
// unexported. With Options.Debug set, however, it tees every byte it reads
// from the socket into Options.DebugWriter, prefixed with "RECV " and
// followed by a newline. rawFeed is that DebugWriter: it reconstructs the
// inbound byte stream, and splitStanzas cuts it into top-level stanzas, so
// this package sees exactly what the server sent.

const recvPrefix = "RECV "

// rawFeed is an io.Writer for go-xmpp's debug output and an io.Reader of the
// reconstructed inbound stream. Writes never block.
type rawFeed struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool
}

func newRawFeed() *rawFeed {
	f := &rawFeed{}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// Write receives one debug record from go-xmpp. Outbound records ("SEND ",
// which include the SASL credentials) are discarded.
func (f *rawFeed) Write(p []byte) (int, error) {
	n := len(p)
	data, ok := bytes.CutPrefix(p, []byte(recvPrefix))
	if !ok {
		return n, nil
	}
	// go-xmpp appends "\n" unless the chunk already ended with one, so one
	// trailing newline is dropped either way. A newline that really ended a
	// socket read is lost, which is harmless: Prosody does not put
	// significant newlines between stanzas.
	data = bytes.TrimSuffix(data, []byte("\n"))
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.buf = append(f.buf, data...)
		f.cond.Broadcast()
	}
	return n, nil
}

// Read blocks until data is available or the feed is closed.
func (f *rawFeed) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.buf) == 0 && !f.closed {
		f.cond.Wait()
	}
	if len(f.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	if len(f.buf) == 0 {
		f.buf = nil
	}
	return n, nil
}

// Close makes Read return io.EOF once buffered data has been consumed.
func (f *rawFeed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.cond.Broadcast()
}

// recordingReader remembers the bytes handed to the XML decoder so stanzas
// can be sliced out by input offset.
type recordingReader struct {
	r    io.Reader
	hist []byte // bytes from offset base on
	base int64
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.hist = append(r.hist, p[:n]...)
	return n, err
}

// slice returns a copy of the stream bytes [from, to) and forgets everything
// before to.
func (r *recordingReader) slice(from, to int64) []byte {
	out := bytes.Clone(r.hist[from-r.base : to-r.base])
	r.hist = r.hist[to-r.base:]
	r.base = to
	return out
}

// forget drops history before offset.
func (r *recordingReader) forget(to int64) {
	if to > r.base {
		r.hist = r.hist[to-r.base:]
		r.base = to
	}
}

// splitStanzas reads an XMPP stream (possibly restarted, as after SASL) and
// calls emit with the raw text of every top-level element (stanzas, but also
// stream features and SASL elements). It returns nil when the server closes
// the stream or the input ends.
func splitStanzas(r io.Reader, emit func(raw []byte)) error {
	rr := &recordingReader{r: r}
	dec := xml.NewDecoder(rr)
	depth := 0 // 1 inside <stream:stream>
	var start int64
	for {
		off := dec.InputOffset()
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth <= 1 && t.Name.Local == "stream" {
				// Stream header, or a new one after a stream restart.
				depth = 1
				rr.forget(dec.InputOffset())
				continue
			}
			if depth == 1 {
				start = off
			}
			depth++
		case xml.EndElement:
			depth--
			switch {
			case depth == 1:
				emit(rr.slice(start, dec.InputOffset()))
			case depth <= 0:
				return nil // </stream:stream>
			}
		default:
			if depth <= 1 {
				rr.forget(dec.InputOffset())
			}
		}
	}
}
