package component

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"rostergate/store"
)

var iqSetRE = regexp.MustCompile(`^<iq type='set' id='([^']+)' from='bots.localhost' to='alice@localhost'><query xmlns='jabber:iq:roster'><item jid='helpdesk@bots.localhost' subscription='both' name='Help Desk'/></query></iq>$`)

// readUntilText reads c's stream until it ends with suffix (keepalives
// trimmed), within 5 s.
func readUntilText(t *testing.T, c *fakeConn, suffix string) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	s, err := readUntil(c.r, suffix)
	if err != nil {
		t.Fatalf("reading stream for %q: %v; got %s", suffix, err, s)
	}
	return strings.TrimLeft(s, " ")
}

// TestPlacementPrivileged: the server's advertisement (XEP-0356) makes
// the component write the user's roster item through the server; its
// result puts the entity's item at both, records the placement, and the
// user gets the entity's presence and a probe. An error result falls
// back to the entity's subscribe, pre-approved.
func TestPlacementPrivileged(t *testing.T) {
	for _, tc := range []struct {
		name, ns, reply string
		state, sub      string
	}{
		{"written", "urn:xmpp:privilege:2", "<iq type='result' id='%s' from='alice@localhost' to='bots.localhost'/>", store.PlacePlaced, "both"},
		{"refused", "urn:xmpp:privilege:1", "<iq type='error' id='%s' from='alice@localhost' to='bots.localhost'><error type='wait'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>", store.PlaceWaiting, "none"},
		// A result forged by another JID with the set's id does not count:
		// the server's own answer (here a refusal) does.
		{"forged result", "urn:xmpp:privilege:2", "<iq type='result' id='%s' from='mallory@localhost' to='bots.localhost'/>" +
			"<iq type='error' id='%s' from='alice@localhost' to='bots.localhost'><error type='wait'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
			store.PlaceWaiting, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, "s3cret", func(o *testOpts) {
				o.Settings.Entities[0].PlaceIn = []string{"alice@localhost"}
			})
			c := h.first(t)
			c.send(t, "<message from='localhost' to='bots.localhost'><privilege xmlns='"+tc.ns+"'><perm access='roster' type='both'/><perm access='message' type='none'/></privilege></message>")
			set := readUntilText(t, c, "</iq>")
			m := iqSetRE.FindStringSubmatch(set)
			if m == nil {
				t.Fatalf("roster set: %s", set)
			}
			c.send(t, strings.ReplaceAll(tc.reply, "%s", m[1]))
			if tc.state == store.PlacePlaced {
				out := readUntilText(t, c, "type='probe'/>")
				if !strings.Contains(out, "<presence from='helpdesk@bots.localhost/rostergate' to='alice@localhost' id=") {
					t.Errorf("no presence to alice before the probe: %s", out)
				}
			} else {
				out := readUntilText(t, c, "</presence>")
				if !strings.Contains(out, "<presence from='helpdesk@bots.localhost' to='alice@localhost' id=") || !strings.Contains(out, "type='subscribe'") {
					t.Errorf("no subscribe to alice: %s", out)
				}
			}
			ctx := context.Background()
			it, err := h.eng.Item(ctx, "helpdesk", "alice@localhost")
			if err != nil || it.Sub != tc.sub {
				t.Errorf("helpdesk's item for alice: %+v, %v; want %s", it, err, tc.sub)
			}
			if tc.sub == "none" && (!it.PendingOut || !it.Approved) {
				t.Errorf("helpdesk's item for alice: %+v; want asked and pre-approved", it)
			}
			ps, err := h.db.Placements(ctx)
			if err != nil || len(ps) != 1 || ps[0].State != tc.state || ps[0].Contact != "alice@localhost" {
				t.Errorf("placements %+v, %v; want alice %s", ps, err, tc.state)
			}
		})
	}
}

// An advertisement from anyone but the server the component's domain is
// under (another server over s2s, a user, another component) grants
// nothing: the placement falls back to the entity's subscribe, and no
// roster set is sent.
func TestPrivilegeAdvertisementSpoofed(t *testing.T) {
	for _, from := range []string{"evil.example", "alice@localhost", "other.localhost"} {
		t.Run(from, func(t *testing.T) {
			h := start(t, "s3cret", func(o *testOpts) {
				o.Settings.Entities[0].PlaceIn = []string{"alice@localhost"}
			})
			c := h.first(t)
			c.send(t, "<message from='"+from+"' to='bots.localhost'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/></privilege></message>")
			out := readUntilText(t, c, "type='subscribe'")
			if strings.Contains(out, "jabber:iq:roster") {
				t.Errorf("a roster set was sent on %s's word: %s", from, out)
			}
		})
	}
}
