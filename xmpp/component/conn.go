package component

import (
	"bufio"
	"errors"
	"io"
	"net"
	"rostergate/engine"
	"sync"
	"sync/atomic"
	"time"
)

// bufConn is the connection to the server during the handshake. It reads
// through a bufio.Reader so that it is an io.ByteReader: encoding/xml then
// reads it byte by byte instead of adding a buffer of its own, and nothing the
// server sends right after <handshake/> is stranded in mellium's decoder.
type bufConn struct {
	net.Conn
	r        *bufio.Reader
	lastRead atomic.Int64 // unix nanoseconds of the last byte received
	pulled   atomic.Int64 // bytes received from the server, buffered or not
	base     int64        // pulled when the stream after the handshake began, less what was buffered then
	head     *[]byte      // the first bytes the server sent (up to headLimit), for handshake errors
}

// headLimit bounds what bufConn keeps of the server's first bytes: enough
// for its stream header.
const headLimit = 2048

func newBufConn(c net.Conn) *bufConn {
	bc := &bufConn{Conn: c, head: new([]byte)}
	bc.r = bufio.NewReaderSize(countingReader{c, &bc.pulled, bc.head}, 32<<10)
	return bc
}

// countingReader counts the bytes read through it, and keeps the first
// headLimit of them.
type countingReader struct {
	r    io.Reader
	n    *atomic.Int64
	head *[]byte
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if room := headLimit - len(*c.head); room > 0 && n > 0 {
		*c.head = append(*c.head, p[:min(n, room)]...)
	}
	return n, err
}

// serverHead returns the first bytes the server sent. Only for after the
// handshake failed: the reader may not run meanwhile.
func (c *bufConn) serverHead() []byte { return *c.head }

// startStream marks where the stream after the handshake begins: offsets
// (received, and prefixReader's) count from there. Called before the
// parser starts.
func (c *bufConn) startStream() { c.base = c.pulled.Load() - int64(c.r.Buffered()) }

// received returns how many bytes of the stream after the handshake have
// arrived from the server so far, parsed or not.
func (c *bufConn) received() int64 { return c.pulled.Load() - c.base }

func (c *bufConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *bufConn) ReadByte() (byte, error) {
	if c.r.Buffered() > 0 {
		return c.r.ReadByte() // no syscall, no clock
	}
	b, err := c.r.ReadByte()
	if err == nil {
		c.lastRead.Store(time.Now().UnixNano())
	}
	return b, err
}

// sinceRead returns how long ago the server last sent anything.
func (c *bufConn) sinceRead(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, c.lastRead.Load()))
}

// writer serialises writes to the stream from every goroutine and remembers
// when it last wrote, for the keepalive.
type writer struct {
	recv    func() int64   // bytes received from the server so far; nil: 0
	count   *stanzaCounter // counts the stanzas written; nil: none
	mu      sync.Mutex
	conn    net.Conn
	w       *bufio.Writer
	timeout time.Duration
	last    time.Time
	err     error // first write error; the stream is dead after it
}

func newWriter(c net.Conn, timeout time.Duration) *writer {
	return &writer{conn: c, w: bufio.NewWriterSize(c, 64<<10), timeout: timeout, last: time.Now()}
}

// Write sends p and flushes it. A write that cannot finish within the
// timeout fails, and so does every write after it.
func (w *writer) Write(p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeLocked(p)
}

func (w *writer) writeLocked(p []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(p) == 0 {
		return nil
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	_, err := w.w.Write(p)
	if err == nil {
		err = w.w.Flush()
	}
	if err != nil {
		// Part of a stanza may be on the wire: the stream is unusable.
		// Closing it ends the reader too, and the session reconnects.
		w.err = err
		_ = w.conn.Close()
		return err
	}
	w.last = time.Now()
	if w.count != nil {
		w.count.addWritten(p)
	}
	return nil
}

// Abort ends the stream because of err (a failed commit): every write
// after it fails, and closing the conn ends the reader too.
func (w *writer) Abort(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
	_ = w.conn.Close()
}

// Failed returns the write error that broke the stream, if any.
func (w *writer) Failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Received returns how many bytes of the stream the server has sent so far
// (see engine.Wire).
func (w *writer) Received() int64 {
	if w.recv == nil {
		return 0
	}
	return w.recv()
}

// idle returns how long the stream has gone without a write.
func (w *writer) idle(now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return now.Sub(w.last)
}

// prefixReader feeds the decoder a stream header before the bytes that follow
// the handshake, so that the decoder knows the stream's namespaces and the
// closing </stream:stream> is well-formed to it. It also bounds how many
// bytes one stanza may take: the decoder reads it byte by byte (it is an
// io.ByteReader), so the count is exact.
type prefixReader struct {
	prefix []byte
	r      *bufConn
	max    int64        // bytes one stanza (or the gap before it) may take; 0 = no limit
	n      int64        // bytes read after the prefix
	limit  int64        // n may not pass this
	start  atomic.Int64 // n when the token or stanza being read began
}

// errTooLarge is a stanza over the size limit: the stream is ended with
// policy-violation (RFC 6120 §4.9.3.14).
var errTooLarge = errors.New("component: stanza larger than the limit (max_stanza_bytes)")

// budget gives the next token or stanza max bytes from here, and marks
// where it begins.
func (p *prefixReader) budget() {
	p.limit = p.n + p.max
	p.start.Store(p.n)
}

// Offset returns where in the stream the last token or stanza read began
// (see engine.Source).
func (p *prefixReader) Offset() int64 { return p.start.Load() }

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	if p.max > 0 {
		room := p.limit - p.n
		if room <= 0 {
			return 0, errTooLarge
		}
		if int64(len(b)) > room {
			b = b[:room]
		}
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	return n, err
}

func (p *prefixReader) ReadByte() (byte, error) {
	if len(p.prefix) > 0 {
		c := p.prefix[0]
		p.prefix = p.prefix[1:]
		return c, nil
	}
	if p.max > 0 && p.n >= p.limit {
		return 0, errTooLarge
	}
	c, err := p.r.ReadByte()
	if err == nil {
		p.n++
	}
	return c, err
}

var (
	_ io.ByteReader = (*prefixReader)(nil)
	_ engine.Wire   = (*writer)(nil)
)
