package component_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"rostergate/internal/xmpptest"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/subscription"
)

// RFC 6121 on the wire: the cells whose effect a user's own server shows.
// Each test quotes the RFC text it settles; the engine's unit tests
// (engine/rfc_test.go) check the exact stanzas.

// settle waits until rostergate and the user's server have handled
// everything c sent before: the component answers the ping after it.
func settle(t *testing.T, c *xmpptest.Client) {
	t.Helper()
	if _, err := c.IQ(ctx(t), "<iq type='get' to='bots.localhost'><ping xmlns='urn:xmpp:ping'/></iq>"); err != nil {
		t.Fatal(err)
	}
}

func send(t *testing.T, c *xmpptest.Client, to, typ string) {
	t.Helper()
	if err := c.SendPresence(to, typ); err != nil {
		t.Fatal(err)
	}
}

func actOn(t *testing.T, g *gate, contact string, kinds ...subscription.Kind) {
	t.Helper()
	if err := g.eng.Act(ctx(t), roster.Actor{JID: "test", Via: roster.ViaCLI}, "helpdesk", contact, kinds...); err != nil {
		t.Fatal(err)
	}
}

// endings are the states a subscription to the entity ends from, in
// TestIntegrationContactUnsubscribes and TestIntegrationEntityRevokes: what
// rostergate holds after, and the user's item.
var endings = []struct {
	name   string
	from   subscription.State
	to     subscription.State
	roster string
}{
	{"from", subscription.From, subscription.None, "none"},
	{"from+out", subscription.FromOut, subscription.NoneOut, "none"},
	{"both", subscription.Both, subscription.To, "from"},
}

// subscribedAlice starts rostergate on srv and brings alice's item to from
// (From, From + Pending Out or Both) the way a user does: she subscribes,
// the policy accepts (and asks back, but for From), she accepts for Both.
func subscribedAlice(t *testing.T, srv *xmpptest.Server, from subscription.State) (*gate, *xmpptest.Client) {
	t.Helper()
	g := newSetup(t, srv, accept(from != subscription.From)).start()
	alice := srv.NewUser(t, "alice")
	send(t, alice, helpdesk, "subscribe")
	mustWaitPresence(t, alice, presenceFrom(helpdesk+"/rostergate", ""))
	if from == subscription.Both {
		mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribe"))
		send(t, alice, helpdesk, "subscribed")
		mustRoster(t, alice, helpdesk, rosterIs("both", ""))
	}
	settle(t, alice)
	wantState(t, g, "alice@localhost", from)
	return g, alice
}

// A user ends their subscription to the entity (Table 7) from From, From +
// Pending Out and Both: the entity's resource goes unavailable for them, the
// state changes, and the user's item loses "to".
func TestIntegrationContactUnsubscribes(t *testing.T) {
	const rfc = `A.3.2: "if the stanza results in a subscription state change from the user's perspective then the user's server MUST change the state, MUST deliver the presence stanza from the contact to the user, and SHOULD auto-reply by sending a presence stanza of type "unsubscribed" to the contact on behalf of the user."`
	for _, tc := range endings {
		t.Run(tc.name, func(t *testing.T) {
			xmpptest.EachServer(t, func(t *testing.T, srv *xmpptest.Server) {
				g, alice := subscribedAlice(t, srv, tc.from)
				send(t, alice, helpdesk, "unsubscribe")
				mustWaitPresence(t, alice, presenceFrom(helpdesk+"/rostergate", "unavailable"))
				settle(t, alice)
				if got := g.item(t, "alice@localhost"); got != tc.to {
					t.Errorf("rostergate holds %s, want %s\nRFC 6121: %s", got, tc.to, rfc)
				}
				// ejabberd and Openfire show no item whose only bond is the entity's
				// pending request (see TestIntegrationBothWays).
				if tc.from == subscription.FromOut && hidesPendingIn(srv) {
					return
				}
				mustRoster(t, alice, helpdesk, rosterIs(tc.roster, ""))
			})
		})
	}
}

// The entity revokes the user's subscription (Table 5) from From, From +
// Pending Out and Both: the user gets unavailable, then unsubscribed, and
// loses "to".
func TestIntegrationEntityRevokes(t *testing.T) {
	const rfc = `§3.2.2: "While the user is still subscribed to the contact's presence (i.e., before the contact's server routes or delivers the presence stanza of type "unsubscribed" to the user), the contact's server MUST send a presence stanza of type "unavailable" from all of the contact's online resources to the user."`
	for _, tc := range endings {
		t.Run(tc.name, func(t *testing.T) {
			xmpptest.EachServer(t, func(t *testing.T, srv *xmpptest.Server) {
				g, alice := subscribedAlice(t, srv, tc.from)
				actOn(t, g, "alice@localhost", subscription.Unsubscribed)
				mustWaitPresence(t, alice, presenceFrom(helpdesk+"/rostergate", "unavailable"))
				mustWaitPresence(t, alice, presenceFrom(helpdesk, "unsubscribed"))
				var order []string
				for _, p := range alice.Presences() {
					if p.Type == "unavailable" || p.Type == "unsubscribed" {
						order = append(order, p.Type)
					}
				}
				if strings.Join(order, ",") != "unavailable,unsubscribed" {
					t.Errorf("the user got %v, want unavailable then unsubscribed\nRFC 6121: %s", order, rfc)
				}
				wantState(t, g, "alice@localhost", tc.to)
				if tc.from == subscription.FromOut && hidesPendingIn(srv) {
					return
				}
				mustRoster(t, alice, helpdesk, rosterIs(tc.roster, ""))
			})
		})
	}
}

// A Spark user declines the entity's request with unsubscribe (seed,
// scenario 1, the entity having asked first): nothing changes on the
// entity's side, and the user's later subscribed still completes the
// request.
func TestIntegrationDeclineThenAccept(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationDeclineThenAccept)
}

func testIntegrationDeclineThenAccept(t *testing.T, srv *xmpptest.Server) {
	g := newSetup(t, srv, accept(false)).start()
	alice := srv.NewUser(t, "alice")
	actOn(t, g, "alice@localhost", subscription.Subscribe)
	mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribe"))
	send(t, alice, helpdesk, "unsubscribe")
	settle(t, alice)
	if got := g.item(t, "alice@localhost"); got != subscription.NoneOut {
		t.Fatalf("after the decline rostergate holds %s, want N+O (Table 7: \"None + Pending Out\" | S.N. | no state change)", got)
	}
	send(t, alice, helpdesk, "subscribed")
	settle(t, alice)
	if got := g.item(t, "alice@localhost"); got != subscription.To {
		t.Errorf("after subscribed rostergate holds %s, want T (Table 8: \"None + Pending Out\" | MUST | \"To\")", got)
	}
	mustRoster(t, alice, helpdesk, rosterIs("from", ""))
}

// A subscribe to the entity's full JID is a subscribe to the entity; an
// unsubscribe to a resource the entity does not have is ignored, where the
// server forwards it as addressed: ejabberd does; Prosody and Openfire send
// their users' subscription stanzas to the bare JID.
func TestIntegrationFullJID(t *testing.T) { xmpptest.EachServer(t, testIntegrationFullJID) }

func testIntegrationFullJID(t *testing.T, srv *xmpptest.Server) {
	// What rostergate holds after alice's unsubscribe to helpdesk/desk.
	after := map[string]subscription.State{
		xmpptest.KindEjabberd: subscription.From, // ignored (§8.5.3.2.2)
		xmpptest.KindProsody:  subscription.None, // arrives bare: Table 7
		xmpptest.KindOpenfire: subscription.None, // arrives bare, as on Prosody
	}
	want, known := after[srv.Kind]
	if !known {
		t.Fatalf("what %s forwards is not known yet: record it here and in docs/servers.md", srv.Kind)
	}
	g := newSetup(t, srv, accept(false)).start()
	alice := srv.NewUser(t, "alice")
	send(t, alice, helpdesk+"/desk", "subscribe")
	mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribed"))
	settle(t, alice)
	wantState(t, g, "alice@localhost", subscription.From)
	send(t, alice, helpdesk+"/desk", "unsubscribe")
	settle(t, alice)
	if got := g.item(t, "alice@localhost"); got != want {
		t.Errorf("after an unsubscribe to another resource rostergate holds %s, want %s on %s\nRFC 6121 §8.5.3.2.2: %q", got, want, srv.Kind,
			`For a presence stanza of type "subscribed", "unsubscribe", or "unsubscribed", the server MUST ignore the stanza.`)
	}
}

// A JID at the domain that is no entity does not exist (§8.5.1): the
// user's request is ignored by default (the user's item stays pending, and
// rostergate stores nothing); with unknown_entity = "reject" it is answered
// unsubscribed.
func TestIntegrationUnknownEntity(t *testing.T) { xmpptest.EachServer(t, testIntegrationUnknownEntity) }

func testIntegrationUnknownEntity(t *testing.T, srv *xmpptest.Server) {
	const nobody = "nobody@bots.localhost"
	s := newSetup(t, srv, policy.Config{Default: policy.Accept})
	g := s.start()
	alice := srv.NewUser(t, "alice")
	send(t, alice, nobody, "subscribe")
	settle(t, alice)
	for _, p := range alice.Presences() {
		if strings.HasPrefix(p.From, nobody) {
			t.Errorf("a request to a JID that is no entity was answered: %s (§8.5.1: \"the server MUST silently ignore the stanza\")", p)
		}
	}
	if s, ok := storedState(t, g.db, "nobody", "alice@localhost"); ok {
		t.Errorf("stored %s for a JID that is no entity", s)
	}
	mustRoster(t, alice, nobody, rosterIs("none", "subscribe"))
	g.stop(t)

	s.pol.UnknownEntity = policy.Reject
	s.start()
	bob := srv.NewUser(t, "bob")
	send(t, bob, nobody, "subscribe")
	mustWaitPresence(t, bob, presenceFrom(nobody, "unsubscribed"))
}

// §3.1.2: a request of the entity's that the contact never saw is sent
// again on the next connection. The user does not exist yet when the entity
// asks. ejabberd and Openfire ignore the stanza (§8.5.1); once the user
// exists, the reconnect brings it. Prosody keeps it for the account to be, and delivers
// it at the first login; then it does not deliver the one sent again (Table
// 6: "None + Pending In" | S.N.), so the user sees it once.
func TestIntegrationPendingOutResent(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationPendingOutResent)
}

func testIntegrationPendingOutResent(t *testing.T, srv *xmpptest.Server) {
	keptForNewAccounts := map[string]bool{xmpptest.KindEjabberd: false, xmpptest.KindProsody: true, xmpptest.KindOpenfire: false}
	kept, known := keptForNewAccounts[srv.Kind]
	if !known {
		t.Fatalf("whether %s keeps requests for accounts to be is not known yet: record it here and in docs/servers.md", srv.Kind)
	}
	s := newSetup(t, srv, accept(false))
	g := s.start()
	actOn(t, g, "carol@localhost", subscription.Subscribe)
	wantState(t, g, "carol@localhost", subscription.NoneOut)
	carol := srv.NewUser(t, "carol")
	settle(t, carol)
	requests := func() int {
		n := 0
		for _, p := range carol.Presences() {
			if p.From == helpdesk && p.Type == "subscribe" {
				n++
			}
		}
		return n
	}
	if got := requests(); kept != (got == 1) || got > 1 {
		t.Fatalf("%s: the user got %d requests at the first login, want %d", srv.Kind, got, map[bool]int{true: 1}[kept])
	}
	g.stop(t)
	g = s.start()
	mustWaitPresence(t, carol, presenceFrom(helpdesk, "subscribe"))
	settle(t, carol)
	if got := requests(); got != 1 {
		t.Errorf("the user got %d requests, want 1", got)
	}
	wantState(t, g, "carol@localhost", subscription.NoneOut)
}

// sparkX is what Spark puts in every presence it sends: its avatar, twice
// (seed transcripts).
const sparkX = `<x xmlns="vcard-temp:x:update"><photo>ba8c94a333af7a23d9e44c41b2aa22dd2224dadc</photo></x>` +
	`<x xmlns="jabber:x:avatar"><hash>ba8c94a333af7a23d9e44c41b2aa22dd2224dadc</hash></x>`

// sparkPresence sends a presence as Spark does (seed transcripts): an id of
// its own, the bare JID, the two avatar elements.
func sparkPresence(t *testing.T, c *xmpptest.Client, id, to, typ string) {
	t.Helper()
	if err := c.SendRaw(`<presence id="` + id + `" to="` + to + `" type="` + typ + `">` + sparkX + `</presence>`); err != nil {
		t.Fatal(err)
	}
}

// The three seed scenarios, played with Spark's own stanzas (a roster set
// with a group, then presences with avatar elements) against rostergate:
// what the user's roster shows at the end of each, on each server.
//  1. The entity rejects: the user's item is none, with no ask.
//  2. The entity accepts and asks back; the user declines with unsubscribe
//     (Spark's way): the user's own subscription ends too, rostergate
//     answers unsubscribed (which clears Openfire's ask="unsubscribe"), and
//     the entity's request stays pending (Table 7).
//  3. The entity accepts and asks back; the user accepts: both.
func TestIntegrationSeedSpark(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy policy.Config
		answer string // the user's answer to the entity's subscribe; "" = none comes
		roster string // the user's item at the end; "" = not shown (hidesPendingIn) or none
		state  subscription.State
	}{
		{"1 rejected", policy.Config{Default: policy.Reject}, "", "none", subscription.None},
		{"2 declined with unsubscribe", accept(true), "unsubscribe", "none", subscription.NoneOut},
		{"3 both", accept(true), "subscribed", "both", subscription.Both},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xmpptest.EachServer(t, func(t *testing.T, srv *xmpptest.Server) {
				g := newSetup(t, srv, tc.policy).start()
				alice := srv.NewUser(t, "zxl1")
				if _, err := alice.IQ(ctx(t), `<iq type="set"><query xmlns="jabber:iq:roster"><item jid="`+helpdesk+`" name="helpdesk"><group>Friends</group></item></query></iq>`); err != nil {
					t.Fatal(err)
				}
				sparkPresence(t, alice, "zR0f2-30", helpdesk, "subscribe")
				if tc.answer == "" {
					mustWaitPresence(t, alice, presenceFrom(helpdesk, "unsubscribed"))
				} else {
					mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribe"))
					sparkPresence(t, alice, "RIdep-27", helpdesk, tc.answer)
				}
				settle(t, alice)
				wantState(t, g, "zxl1@localhost", tc.state)
				r, err := alice.Roster(ctx(t))
				if err != nil {
					t.Fatal(err)
				}
				it, shown := r[helpdesk]
				switch {
				case tc.state == subscription.NoneOut && hidesPendingIn(srv):
					if shown {
						t.Errorf("%s shows %+v, an item whose only content is the entity's request", srv.Kind, it)
					}
				case !shown:
					t.Errorf("%s shows no item for %s", srv.Kind, helpdesk)
				case it.Subscription != tc.roster || it.Ask != "" || len(it.Groups) != 1 || it.Groups[0] != "Friends":
					t.Errorf("%s shows %+v, want subscription %s, no ask, group Friends", srv.Kind, it, tc.roster)
				}
				for _, s := range alice.Stanzas() {
					if strings.Contains(s, "jabber:iq:roster") && strings.Contains(s, helpdesk) {
						t.Logf("%s push: %s", srv.Kind, s)
					}
				}
			})
		})
	}
}

// SubscriptionPluginEnv names the environment variable that points at a
// jar of Openfire's Subscription plugin, for TestIntegrationOpenfireSubscriptionPlugin.
const SubscriptionPluginEnv = "OPENFIRE_SUBSCRIPTION_PLUGIN"

// Openfire's Subscription plugin answers users' subscribe stanzas to the
// component's JIDs itself when set to accept at level "all", or to reject
// at any level (its "local" level spares only requests between local
// users, and the component's domain is not the server's): rostergate never
// sees them, its policy is bypassed and it stores nothing. Only accept at
// level "local" leaves the component alone. The reason the setup guide
// says to keep the plugin off the component's domain.
func TestIntegrationOpenfireSubscriptionPlugin(t *testing.T) {
	jar := os.Getenv(SubscriptionPluginEnv)
	if jar == "" {
		t.Skipf("skipping: $%s is not set (a jar of Openfire's Subscription plugin, which no registry ships)", SubscriptionPluginEnv)
	}
	for _, tc := range []struct {
		typ, level string
		policy     policy.Action // rostergate's, the opposite of the plugin's where it matters
		answer     string        // what the user gets
		seen       bool          // whether rostergate saw the request
	}{
		{"accept", "all", policy.Reject, "subscribed", false},
		{"reject", "local", policy.Accept, "unsubscribed", false},
		{"accept", "local", policy.Reject, "unsubscribed", true},
	} {
		t.Run(tc.typ+"/"+tc.level, func(t *testing.T) {
			srv := xmpptest.ServerWith(t, xmpptest.KindOpenfire, xmpptest.Config{
				OpenfirePlugins:    []string{jar},
				OpenfireProperties: map[string]string{"plugin.subscription.type": tc.typ, "plugin.subscription.level": tc.level},
			})
			g := newSetup(t, srv, policy.Config{Default: tc.policy}).start()
			alice := srv.NewUser(t, "alice")
			// The plugin loads a little after the server answers.
			if !pluginLoaded(t, srv) {
				t.Fatal("the Subscription plugin did not load")
			}
			send(t, alice, helpdesk, "subscribe")
			answer := mustWaitPresence(t, alice, func(p xmpptest.Presence) bool {
				return p.From == helpdesk && (p.Type == "subscribed" || p.Type == "unsubscribed")
			})
			settle(t, alice)
			seen := len(mustEvents(t, g.db)) > 0
			if answer.Type != tc.answer || seen != tc.seen {
				t.Errorf("plugin %s at level %s: the user got %s, rostergate saw the request: %t; want %s, %t",
					tc.typ, tc.level, answer, seen, tc.answer, tc.seen)
			}
		})
	}
}

// pluginLoaded waits (bounded) for Openfire to say it loaded the
// Subscription plugin.
func pluginLoaded(t *testing.T, srv *xmpptest.Server) bool {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := os.ReadFile(srv.OutPath)
		if strings.Contains(string(out), "Successfully loaded plugin 'subscription") {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}
