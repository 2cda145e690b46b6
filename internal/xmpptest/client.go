package xmpptest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/xmppo/go-xmpp"
)

const (
	nsRoster   = "jabber:iq:roster"
	nsStanzas  = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsPing     = "urn:xmpp:ping"
	nsVersion  = "jabber:iq:version"
	closeLimit = 5 * time.Second
)

// Presence is a presence stanza received by a Client.
type Presence struct {
	From, To, Type, ID, Show, Status string
	// Error is the defined condition of a type="error" presence, e.g.
	// "remote-server-not-found" or "service-unavailable"; ErrorType is the
	// error type attribute ("cancel", "wait", ...); ErrorText is the
	// optional human-readable <text>.
	Error, ErrorType, ErrorText string
	Raw                         string // the stanza as received
}

func (p Presence) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "<presence from=%q", p.From)
	if p.Type != "" {
		fmt.Fprintf(&b, " type=%q", p.Type)
	}
	if p.Error != "" {
		fmt.Fprintf(&b, " error=%q", p.Error)
	}
	if p.Show != "" {
		fmt.Fprintf(&b, " show=%q", p.Show)
	}
	if p.ID != "" {
		fmt.Fprintf(&b, " id=%q", p.ID)
	}
	b.WriteString(">")
	return b.String()
}

// RosterItem is one jabber:iq:roster item.
type RosterItem struct {
	JID          string
	Subscription string // "none", "to", "from", "both" (or "remove" in pushes)
	Ask          string // "subscribe" while an outbound request is pending
	Name         string
	Groups       []string
}

// StanzaError is returned by Client.IQ and Client.Roster when the reply is
// an IQ of type "error".
type StanzaError struct {
	Type      string // "cancel", "modify", "auth", "wait"
	Condition string // e.g. "service-unavailable"
	Text      string
	Raw       string // the error reply
}

func (e *StanzaError) Error() string {
	msg := fmt.Sprintf("xmpptest: iq error: %s (%s)", e.Condition, e.Type)
	if e.Text != "" {
		msg += ": " + e.Text
	}
	return msg
}

// Client is a real client-to-server session logged in with go-xmpp.
//
// A background goroutine drives go-xmpp's Recv loop; every stanza the server
// sends is recorded. Roster pushes are answered, as are IQ requests of type
// get/set that go-xmpp does not handle itself (with service-unavailable).
type Client struct {
	JID  string // full JID bound by the server
	Bare string // bare JID, user@domain

	xc      *xmpp.Client
	feed    *rawFeed
	writeMu sync.Mutex

	recvDone  chan struct{} // go-xmpp Recv loop finished
	splitDone chan struct{} // raw stanza splitter finished

	closeOnce sync.Once
	closeErr  error

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every recorded event
	presences   []Presence
	messages    []Message
	msgConsumed []bool // parallel to messages: returned by WaitMessage
	consumed    []bool // parallel to presences: returned by WaitPresence
	stanzas     []string
	iqWaiters   map[string]chan string
	pushes      int // roster pushes received
	recvErr     error
	splitErr    error
	connClosed  bool // no more stanzas will arrive
}

// Dial logs jid in at the client-to-server address addr (SASL PLAIN, no
// TLS), sends initial presence and requests the roster. jid is a bare JID or
// a full JID (the resource is then requested). When Dial returns, the server
// has processed the initial presence.
func Dial(ctx context.Context, addr, jid, password string) (*Client, error) {
	bare, resource, _ := strings.Cut(jid, "/")
	if !strings.Contains(bare, "@") {
		return nil, fmt.Errorf("xmpptest: dial: %q is not a user JID", jid)
	}
	c := &Client{
		Bare:      bare,
		feed:      newRawFeed(),
		recvDone:  make(chan struct{}),
		splitDone: make(chan struct{}),
		changed:   make(chan struct{}),
		iqWaiters: map[string]chan string{},
	}
	go c.splitLoop()

	xc, err := NewClient(ctx, xmpp.Options{
		Host:     addr,
		User:     bare,
		Password: password,
		Resource: resource,
		// Debug output is how raw inbound stanzas are captured; see rawFeed.
		Debug:       true,
		DebugWriter: c.feed,
	}, c.feed.Close)
	if err != nil {
		return nil, fmt.Errorf("xmpptest: login %s at %s: %w", jid, addr, err)
	}
	c.writeMu.Lock()
	c.xc = xc
	c.writeMu.Unlock()
	c.JID = xc.JID()
	go c.recvLoop()

	// go-xmpp has already sent initial presence. A roster request is a
	// barrier (the server handles a session's stanzas in order) and makes
	// this session "interested", so it receives roster pushes.
	if _, err := c.Roster(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("xmpptest: login %s: initial roster: %w", jid, err)
	}
	return c, nil
}

// NewClient logs in with go-xmpp as the tests do — no TLS, SASL PLAIN
// (go-xmpp's SCRAM fails against Prosody over plaintext, in its channel
// binding handling) — bounded by ctx: go-xmpp's login cannot be cancelled,
// so a client that arrives after ctx has ended is closed, and then done is
// called, in the background. On any other error done is called at once.
// It refuses an environment in which go-xmpp would use $HTTP_PROXY.
func NewClient(ctx context.Context, opts xmpp.Options, done func()) (*xmpp.Client, error) {
	if done == nil {
		done = func() {}
	}
	if err := checkProxyEnv(opts.Host); err != nil {
		done()
		return nil, err
	}
	opts.NoTLS = true
	opts.InsecureAllowUnencryptedAuth = true
	opts.Mechanism = "PLAIN"
	if dl, ok := ctx.Deadline(); ok {
		opts.DialTimeout = max(time.Until(dl), time.Millisecond)
	}
	type result struct {
		xc  *xmpp.Client
		err error
	}
	ch := make(chan result, 1)
	go func() {
		xc, err := opts.NewClient()
		ch <- result{xc, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			done()
		}
		return r.xc, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.xc != nil {
				_ = r.xc.Close()
			}
			done()
		}()
		return nil, ctx.Err()
	}
}

// checkProxyEnv rejects configurations where go-xmpp would tunnel the
// loopback connection through $HTTP_PROXY (it honours it for every dial).
func checkProxyEnv(addr string) error {
	proxy := os.Getenv("HTTP_PROXY")
	if proxy == "" {
		proxy = os.Getenv("http_proxy")
	}
	if proxy == "" {
		return nil
	}
	noProxy := os.Getenv("NO_PROXY")
	if noProxy == "" {
		noProxy = os.Getenv("no_proxy")
	}
	if noProxy != "" {
		for s := range strings.SplitSeq(noProxy, ",") {
			if strings.Contains(strings.ToLower(addr), strings.ToLower(s)) {
				return nil
			}
		}
	}
	host, _, _ := net.SplitHostPort(addr)
	return fmt.Errorf("xmpptest: HTTP_PROXY is set and go-xmpp would use it for %s; add %s to NO_PROXY", addr, host)
}

// recvLoop drives go-xmpp's reader. Its parsed values are ignored: stanzas
// are recorded from the raw stream by splitLoop. go-xmpp itself answers
// XEP-0199 pings and jabber:iq:version requests here. When the stream ends
// (Close, server shutdown, error) it closes the socket.
func (c *Client) recvLoop() {
	defer close(c.recvDone)
	for {
		if _, err := c.xc.Recv(); err != nil {
			c.mu.Lock()
			c.recvErr = err
			c.mu.Unlock()
			// Everything go-xmpp read has already been fed.
			c.feed.Close()
			break
		}
	}
	// Only now, with no Recv running, may go-xmpp's Close be called: it
	// reads the stream itself. It sends </stream:stream>, waits for the
	// server to close and closes the socket. A server waiting for clients
	// to go away (as Prosody does on shutdown) is not kept waiting. It can
	// block on go-xmpp's internal lock after a decoding error, hence the
	// bound.
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.xc.Close()
	}()
	timer := time.NewTimer(closeLimit)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
	}
}

func (c *Client) splitLoop() {
	defer close(c.splitDone)
	err := splitStanzas(c.feed, c.handle)
	c.mu.Lock()
	c.splitErr = err
	c.connClosed = true
	c.notifyLocked()
	c.mu.Unlock()
}

// notifyLocked wakes every waiter. c.mu must be held.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// stanza is the parsed form of any top-level element.
type stanza struct {
	XMLName xml.Name
	From    string `xml:"from,attr"`
	To      string `xml:"to,attr"`
	Type    string `xml:"type,attr"`
	ID      string `xml:"id,attr"`
	Show    string `xml:"show"`
	Status  string `xml:"status"`
	Body    string `xml:"body"`
	Error   *struct {
		Type     string `xml:"type,attr"`
		Children []struct {
			XMLName xml.Name
			Text    string `xml:",chardata"`
		} `xml:",any"`
	} `xml:"error"`
	Roster *struct {
		Items []struct {
			JID          string   `xml:"jid,attr"`
			Name         string   `xml:"name,attr"`
			Subscription string   `xml:"subscription,attr"`
			Ask          string   `xml:"ask,attr"`
			Groups       []string `xml:"group"`
		} `xml:"item"`
	} `xml:"jabber:iq:roster query"`
	Payload []struct {
		XMLName xml.Name
	} `xml:",any"`
}

// errorCondition returns the defined condition, type and text of a stanza
// error.
func (s *stanza) errorCondition() (cond, typ, text string) {
	if s.Error == nil {
		return "", "", ""
	}
	var other string // first non-standard child, as a fallback
	for _, ch := range s.Error.Children {
		switch {
		case ch.XMLName.Local == "text":
			text = strings.TrimSpace(ch.Text)
		case ch.XMLName.Space == nsStanzas && cond == "":
			cond = ch.XMLName.Local
		case other == "":
			other = ch.XMLName.Local
		}
	}
	if cond == "" {
		cond = other
	}
	return cond, s.Error.Type, text
}

func (s *stanza) rosterItems() []RosterItem {
	if s.Roster == nil {
		return nil
	}
	items := make([]RosterItem, 0, len(s.Roster.Items))
	for _, it := range s.Roster.Items {
		sub := it.Subscription
		if sub == "" {
			sub = "none"
		}
		items = append(items, RosterItem{JID: it.JID, Subscription: sub, Ask: it.Ask, Name: it.Name, Groups: it.Groups})
	}
	return items
}

// handle records one raw top-level element from the server.
func (c *Client) handle(raw []byte) {
	var s stanza
	if err := xml.Unmarshal(raw, &s); err != nil {
		c.mu.Lock()
		c.stanzas = append(c.stanzas, string(raw))
		c.notifyLocked()
		c.mu.Unlock()
		return
	}
	switch s.XMLName.Local {
	case "presence":
		cond, typ, text := s.errorCondition()
		p := Presence{
			From: s.From, To: s.To, Type: s.Type, ID: s.ID,
			Show: strings.TrimSpace(s.Show), Status: s.Status,
			Error: cond, ErrorType: typ, ErrorText: text, Raw: string(raw),
		}
		c.mu.Lock()
		c.presences = append(c.presences, p)
		c.consumed = append(c.consumed, false)
		c.stanzas = append(c.stanzas, p.Raw)
		c.notifyLocked()
		c.mu.Unlock()
		return
	case "message":
		cond, _, _ := s.errorCondition()
		m := Message{From: s.From, To: s.To, Type: s.Type, ID: s.ID, Body: s.Body, Error: cond, Raw: string(raw)}
		c.mu.Lock()
		c.messages = append(c.messages, m)
		c.msgConsumed = append(c.msgConsumed, false)
		c.stanzas = append(c.stanzas, m.Raw)
		c.notifyLocked()
		c.mu.Unlock()
		return
	case "iq":
		switch s.Type {
		case "result", "error":
			c.mu.Lock()
			if ch, ok := c.iqWaiters[s.ID]; ok {
				delete(c.iqWaiters, s.ID)
				ch <- string(raw) // buffered
			}
			c.stanzas = append(c.stanzas, string(raw))
			c.notifyLocked()
			c.mu.Unlock()
			return
		case "set", "get":
			c.answerRequest(&s)
			c.mu.Lock()
			if s.Type == "set" && s.Roster != nil && (s.From == "" || s.From == c.Bare) {
				c.pushes++
			}
			c.stanzas = append(c.stanzas, string(raw))
			c.notifyLocked()
			c.mu.Unlock()
			return
		}
	}
	c.mu.Lock()
	c.stanzas = append(c.stanzas, string(raw))
	c.notifyLocked()
	c.mu.Unlock()
}

// answerRequest replies to IQ get/set requests, except those go-xmpp
// already answers.
func (c *Client) answerRequest(s *stanza) {
	var ns string
	if len(s.Payload) > 0 {
		ns = s.Payload[0].XMLName.Space
	}
	if s.Type == "get" && (ns == nsPing || ns == nsVersion) {
		return // answered by go-xmpp's Recv
	}
	to := ""
	if s.From != "" {
		to = fmt.Sprintf(" to='%s'", xmlEscape(s.From))
	}
	var reply string
	if s.Type == "set" && s.Roster != nil && (s.From == "" || s.From == c.Bare) {
		// RFC 6121 2.1.6: acknowledge the roster push.
		reply = fmt.Sprintf("<iq type='result' id='%s'%s/>", xmlEscape(s.ID), to)
	} else {
		reply = fmt.Sprintf("<iq type='error' id='%s'%s><error type='cancel'><service-unavailable xmlns='%s'/></error></iq>",
			xmlEscape(s.ID), to, nsStanzas)
	}
	// Best effort: if the connection is gone the failure shows up elsewhere.
	_ = c.SendRaw(reply)
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// newID returns a fresh stanza id.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "xt-" + hex.EncodeToString(b[:])
}

// SendRaw writes raw XML to the stream.
func (c *Client) SendRaw(raw string) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.xc == nil {
		return fmt.Errorf("xmpptest: %s: send: not logged in", c.Bare)
	}
	if _, err := c.xc.SendOrg(raw); err != nil {
		return fmt.Errorf("xmpptest: %s: send: %w", c.Bare, err)
	}
	return nil
}

// SendPresence sends <presence to=to type=typ/> with a fresh id; typ may be
// empty for available presence.
func (c *Client) SendPresence(to, typ string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "<presence id='%s'", newID())
	if to != "" {
		fmt.Fprintf(&b, " to='%s'", xmlEscape(to))
	}
	if typ != "" {
		fmt.Fprintf(&b, " type='%s'", xmlEscape(typ))
	}
	b.WriteString("/>")
	return c.SendRaw(b.String())
}

// Presences returns a copy of every presence received so far, in order.
func (c *Client) Presences() []Presence {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Presence(nil), c.presences...)
}

// Stanzas returns a copy of every top-level element received so far (login
// negotiation elements included), as raw XML, in order. Useful for
// debugging.
func (c *Client) Stanzas() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.stanzas...)
}

// WaitPresence returns the earliest received presence that matches and has
// not been returned by an earlier WaitPresence call, waiting for one to
// arrive until ctx is done. Presences received before the call count, so
// there is no race with stanzas that arrive early. A nil match matches
// anything.
func (c *Client) WaitPresence(ctx context.Context, match func(Presence) bool) (Presence, error) {
	for {
		c.mu.Lock()
		for i, p := range c.presences {
			if !c.consumed[i] && (match == nil || match(p)) {
				c.consumed[i] = true
				c.mu.Unlock()
				return p, nil
			}
		}
		changed, closed := c.changed, c.connClosed
		summary := c.presenceSummaryLocked()
		c.mu.Unlock()
		if closed {
			return Presence{}, fmt.Errorf("xmpptest: %s: no matching presence, connection closed (%v); received %s",
				c.JID, c.closeReason(), summary)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Presence{}, fmt.Errorf("xmpptest: %s: no matching presence: %w; received %s",
				c.JID, ctx.Err(), summary)
		}
	}
}

func (c *Client) presenceSummaryLocked() string {
	if len(c.presences) == 0 {
		return "no presences"
	}
	parts := make([]string, len(c.presences))
	for i, p := range c.presences {
		parts[i] = p.String()
		if c.consumed[i] {
			parts[i] += " (already returned)"
		}
	}
	return fmt.Sprintf("%d presences: %s", len(parts), strings.Join(parts, ", "))
}

// closeReason explains why the connection ended.
func (c *Client) closeReason() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.recvErr != nil:
		return c.recvErr
	case c.splitErr != nil:
		return c.splitErr
	default:
		return errors.New("stream closed")
	}
}

// IQ sends rawIQ (an <iq> element) and returns the raw reply. If rawIQ has
// no id attribute a fresh one is added. If the reply is of type "error", the
// raw reply is returned together with a *StanzaError.
func (c *Client) IQ(ctx context.Context, rawIQ string) (string, error) {
	rawIQ = strings.TrimSpace(rawIQ)
	var head struct {
		XMLName xml.Name
		ID      string `xml:"id,attr"`
	}
	if err := xml.Unmarshal([]byte(rawIQ), &head); err != nil || head.XMLName.Local != "iq" {
		return "", fmt.Errorf("xmpptest: IQ: not an <iq> element: %q", rawIQ)
	}
	id := head.ID
	if id == "" {
		id = newID()
		rawIQ = "<iq id='" + id + "'" + rawIQ[len("<iq"):]
	}
	ch := make(chan string, 1)
	c.mu.Lock()
	if c.connClosed {
		c.mu.Unlock()
		return "", fmt.Errorf("xmpptest: %s: IQ %s: connection closed (%v)", c.JID, id, c.closeReason())
	}
	if _, dup := c.iqWaiters[id]; dup {
		c.mu.Unlock()
		return "", fmt.Errorf("xmpptest: %s: IQ id %q already pending", c.JID, id)
	}
	c.iqWaiters[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.iqWaiters, id)
		c.mu.Unlock()
	}()
	if err := c.SendRaw(rawIQ); err != nil {
		return "", err
	}
	for {
		c.mu.Lock()
		changed, closed := c.changed, c.connClosed
		c.mu.Unlock()
		select {
		case reply := <-ch:
			return reply, iqError(reply)
		default:
		}
		if closed {
			return "", fmt.Errorf("xmpptest: %s: IQ %s: connection closed (%v)", c.JID, id, c.closeReason())
		}
		select {
		case reply := <-ch:
			return reply, iqError(reply)
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("xmpptest: %s: no reply to IQ %s: %w", c.JID, id, ctx.Err())
		}
	}
}

// iqError returns a *StanzaError for a type="error" reply.
func iqError(reply string) error {
	var s stanza
	if err := xml.Unmarshal([]byte(reply), &s); err != nil {
		return fmt.Errorf("xmpptest: parse IQ reply: %w", err)
	}
	if s.Type != "error" {
		return nil
	}
	cond, typ, text := s.errorCondition()
	return &StanzaError{Type: typ, Condition: cond, Text: text, Raw: reply}
}

// Roster fetches the roster the server holds for this user (jabber:iq:roster
// get), keyed by bare JID.
func (c *Client) Roster(ctx context.Context) (map[string]RosterItem, error) {
	reply, err := c.IQ(ctx, "<iq type='get'><query xmlns='"+nsRoster+"'/></iq>")
	if err != nil {
		return nil, fmt.Errorf("xmpptest: %s: roster get: %w", c.JID, err)
	}
	var s stanza
	if err := xml.Unmarshal([]byte(reply), &s); err != nil {
		return nil, fmt.Errorf("xmpptest: %s: parse roster: %w", c.JID, err)
	}
	items := map[string]RosterItem{}
	for _, it := range s.rosterItems() {
		items[it.JID] = it
	}
	return items, nil
}

// WaitRosterItem fetches the roster until the item for jid exists and
// satisfies match (nil matches any existing item), re-fetching whenever the
// server pushes a roster change. It is bounded by ctx; on timeout the error
// shows the last state of the item.
func (c *Client) WaitRosterItem(ctx context.Context, jid string, match func(RosterItem) bool) (RosterItem, error) {
	// Safety net in case a change comes without a push: re-poll now and then.
	const repoll = 250 * time.Millisecond
	last := "absent"
	for {
		c.mu.Lock()
		pushes := c.pushes
		c.mu.Unlock()
		roster, err := c.Roster(ctx)
		if err != nil {
			return RosterItem{}, fmt.Errorf("xmpptest: %s: waiting for roster item %s (last: %s): %w", c.JID, jid, last, err)
		}
		if it, ok := roster[jid]; ok {
			if match == nil || match(it) {
				return it, nil
			}
			last = fmt.Sprintf("subscription=%q ask=%q", it.Subscription, it.Ask)
		} else {
			last = "absent"
		}
		timer := time.NewTimer(repoll)
		for waiting := true; waiting; {
			c.mu.Lock()
			changed, pushed := c.changed, c.pushes != pushes
			c.mu.Unlock()
			if pushed {
				break
			}
			select {
			case <-changed:
			case <-timer.C:
				waiting = false
			case <-ctx.Done():
				timer.Stop()
				return RosterItem{}, fmt.Errorf("xmpptest: %s: roster item %s did not match (last: %s): %w", c.JID, jid, last, ctx.Err())
			}
		}
		timer.Stop()
	}
}

// Close ends the stream and waits (bounded) for the server to close it.
// It is safe to call more than once and after the server went away.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *Client) close() error {
	select {
	case <-c.recvDone:
	default:
		// recvLoop closes the socket once the server has answered this.
		_ = c.SendRaw("</stream:stream>")
	}
	timer := time.NewTimer(2 * closeLimit)
	defer timer.Stop()
	select {
	case <-c.recvDone:
	case <-timer.C:
		return fmt.Errorf("xmpptest: %s: server did not close the stream within %v", c.JID, 2*closeLimit)
	}
	// The feed is closed: the splitter only has buffered data left to
	// handle (which can mean answering a request, on a socket that may
	// still be open if go-xmpp's close timed out).
	select {
	case <-c.splitDone:
	case <-timer.C:
		return fmt.Errorf("xmpptest: %s: received stanzas still being handled %v after Close", c.JID, 2*closeLimit)
	}
	return nil
}

// Message is a message stanza received by a Client.
type Message struct {
	From, To, Type, ID, Body string
	Error                    string // defined condition of a type="error" message
	Raw                      string
}

// SendMessage sends a chat message with body to to.
func (c *Client) SendMessage(to, body string) error {
	return c.SendRaw("<message type='chat' to='" + xmlEscape(to) + "' id='" + newID() + "'><body>" + xmlEscape(body) + "</body></message>")
}

// WaitMessage returns the earliest received message that matches and has
// not been returned by an earlier WaitMessage call, waiting until ctx is
// done. A nil match matches anything.
func (c *Client) WaitMessage(ctx context.Context, match func(Message) bool) (Message, error) {
	for {
		c.mu.Lock()
		for i, m := range c.messages {
			if !c.msgConsumed[i] && (match == nil || match(m)) {
				c.msgConsumed[i] = true
				c.mu.Unlock()
				return m, nil
			}
		}
		changed, closed := c.changed, c.connClosed
		var got []string
		for _, m := range c.messages {
			got = append(got, fmt.Sprintf("%s %q", m.From, m.Body))
		}
		c.mu.Unlock()
		if closed {
			return Message{}, fmt.Errorf("xmpptest: %s: no matching message, connection closed (%v); received %v", c.JID, c.closeReason(), got)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Message{}, fmt.Errorf("xmpptest: %s: no matching message: %w; received %v", c.JID, ctx.Err(), got)
		}
	}
}
