package component

import (
	"bufio"
	"io"
	"net"
	"sync"
	"time"
)

// bufConn is the connection to the server during the handshake. It reads
// through a bufio.Reader so that it is an io.ByteReader: encoding/xml then
// reads it byte by byte instead of adding a buffer of its own, and nothing the
// server sends right after <handshake/> is stranded in mellium's decoder.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func newBufConn(c net.Conn) *bufConn {
	return &bufConn{Conn: c, r: bufio.NewReaderSize(c, 32<<10)}
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *bufConn) ReadByte() (byte, error)    { return c.r.ReadByte() }

// writer serialises writes to the stream from every goroutine and remembers
// when it last wrote, for the keepalive.
type writer struct {
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

// write sends p and flushes it. A write that cannot finish within the
// timeout fails, and so does every write after it.
func (w *writer) write(p []byte) error {
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
	return nil
}

// failed returns the write error that broke the stream, if any.
func (w *writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// idle returns how long the stream has gone without a write.
func (w *writer) idle(now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return now.Sub(w.last)
}

// prefixReader feeds the decoder a stream header before the bytes that follow
// the handshake, so that the decoder knows the stream's namespaces and the
// closing </stream:stream> is well-formed to it.
type prefixReader struct {
	prefix []byte
	r      *bufConn
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.r.Read(b)
}

func (p *prefixReader) ReadByte() (byte, error) {
	if len(p.prefix) > 0 {
		c := p.prefix[0]
		p.prefix = p.prefix[1:]
		return c, nil
	}
	return p.r.ReadByte()
}

var _ io.ByteReader = (*prefixReader)(nil)
