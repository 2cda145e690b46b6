package webui_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"rostergate/engine"
	"rostergate/gate"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/xmpp/stanza"
)

// newTokenRE finds a new invite's link on the page.
var newTokenRE = regexp.MustCompile(`id="new-uri" class="uri" readonly value="xmpp:helpdesk@bots\.localhost\?roster;preauth=(rgi_[A-Za-z0-9_-]+)"`)

// An admin makes an invite on the Invites page: its link, its public page
// and its QR code are shown once; a subscribe that carries it is accepted
// although the policy holds every request; it is revoked from the page.
// Every act is audited as the admin's through the web; forged forms and
// bad values change nothing.
func TestInvitesPage(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	c := browser(t)

	// Not logged in: no page, no act.
	if code, _, hdr := get(t, c, r.srv.URL+"/invites"); code != http.StatusSeeOther || hdr.Get("Location") != "/login" {
		t.Errorf("invites without a session: %d %q", code, hdr.Get("Location"))
	}
	if code, _, _ := post(t, c, r.srv.URL+"/invites", url.Values{"entity": {"helpdesk"}}); code != http.StatusUnauthorized {
		t.Errorf("an invite made without a session: %d, want 401", code)
	}

	csrf := r.login(t, c)
	code, body, _ := get(t, c, r.srv.URL+"/invites")
	for _, want := range []string{`<a href="/invites" aria-current="page">Invites</a>`, `<option value="helpdesk">helpdesk@bots.localhost</option>`,
		`<option value="sales">sales@bots.localhost</option>`, `name="ttl" id="ttl" value="72h"`, `name="uses" id="uses" type="number" min="1" max="1000000" value="1"`,
		"No invites yet."} {
		if !strings.Contains(body, want) {
			t.Errorf("the empty page lacks %q", want)
		}
	}
	if code != 200 || strings.Contains(body, "new-invite") {
		t.Fatalf("invites: %d\n%s", code, body)
	}

	// Forged forms make nothing.
	for name, f := range map[string]url.Values{
		"no token":    {"entity": {"helpdesk"}},
		"wrong token": {"entity": {"helpdesk"}, "csrf": {"x" + csrf}},
	} {
		if code, body, _ := post(t, c, r.srv.URL+"/invites", f); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("%s: %d\n%s", name, code, body)
		}
	}
	if code, _, _ := post(t, c, r.srv.URL+"/invites", url.Values{"entity": {"helpdesk"}, "csrf": {csrf}}, "Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
		t.Errorf("a cross-site form: %d, want 403", code)
	}
	if invs, _ := r.svc.Invites(ctx); len(invs) != 0 {
		t.Fatalf("forged forms made invites: %v", invs)
	}

	// Bad values: the field named, the form kept.
	for _, tc := range []struct{ entity, ttl, uses, want string }{
		{"", "72h", "1", "entity: choose the entity"},
		{"nosuch", "72h", "1", "entity: &#34;nosuch&#34; is no [[entity]] of bots.localhost"},
		{"bots.localhost", "72h", "1", "entity: &#34;bots.localhost&#34; is no [[entity]]"},
		{"helpdesk", "3 days", "1", "ttl: &#34;3 days&#34; is not a duration such as 72h"},
		{"helpdesk", "-1h", "1", "ttl -1h0m0s is negative"},
		{"helpdesk", "10000h", "1", "ttl 10000h0m0s is over a year"},
		{"helpdesk", "72h", "0", "uses 0: want 1 to 1000000"},
		{"helpdesk", "72h", "many", "uses: &#34;many&#34; is not a count"},
	} {
		code, body, _ := post(t, c, r.srv.URL+"/invites", url.Values{"entity": {tc.entity}, "ttl": {tc.ttl}, "uses": {tc.uses}, "csrf": {csrf}})
		if code != http.StatusUnprocessableEntity || !strings.Contains(body, tc.want) || !strings.Contains(body, `value="`+tc.uses+`"`) {
			t.Errorf("entity %q ttl %q uses %q: %d, want 422 with %q\n%s", tc.entity, tc.ttl, tc.uses, code, tc.want, body)
		}
	}
	if invs, _ := r.svc.Invites(ctx); len(invs) != 0 {
		t.Fatalf("bad forms made invites: %v", invs)
	}

	// Made: the link, the public page and the QR code, this once.
	code, body, _ = post(t, c, r.srv.URL+"/invites", url.Values{"entity": {"helpdesk"}, "ttl": {"24h"}, "uses": {"2"}, "back": {"1"}, "csrf": {csrf}})
	m := newTokenRE.FindStringSubmatch(body)
	if code != 200 || m == nil {
		t.Fatalf("make: %d\n%s", code, body)
	}
	tok := m[1]
	for _, want := range []string{"Invite #1 to helpdesk@bots.localhost made", "2 uses, until ", "subscribes back",
		`<a id="new-landing" href="` + r.srv.URL + `/invite/` + tok + `">`, `<img id="new-qr" class="qr" src="/invite/` + tok + `/qr.png"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the new invite's page lacks %q", want)
		}
	}
	inv, err := r.svc.InviteByToken(ctx, tok)
	if err != nil || inv.ID != 1 || inv.Entity != "helpdesk" || inv.MaxUses != 2 || !inv.SubscribeBack || inv.Creator != admin {
		t.Fatalf("the invite stored: %+v, %v", inv, err)
	}
	if d := time.Until(inv.Expires); d < 23*time.Hour || d > 24*time.Hour {
		t.Errorf("it expires in %s, want 24h", d)
	}
	code, body, _ = get(t, c, r.srv.URL+"/invites")
	if code != 200 || strings.Contains(body, tok) || strings.Contains(body, "new-invite") {
		t.Errorf("the link is shown again:\n%s", body)
	}
	row := regexp.MustCompile(`(?s)<tr id="i1">.*?</tr>`).FindString(body)
	for _, want := range []string{`<td data-label="Entity">helpdesk@bots.localhost</td>`, `<td data-label="By">` + admin + `</td>`,
		`<td data-label="Uses">0/2</td>`, `<td data-label="Subscribes back">yes</td>`, `<span class="state usable">usable</span>`,
		`<button type="submit" name="id" value="1">Revoke</button>`} {
		if !strings.Contains(row, want) {
			t.Errorf("the invite's row lacks %q:\n%s", want, row)
		}
	}

	// It works: a subscribe that carries it is accepted, and subscribed
	// back, where the policy holds every other.
	el := &stanza.Element{Name: "presence", Type: "subscribe", From: "zoe@example.com", To: "helpdesk@" + domain, Preauth: tok}
	if err := r.eng.Handle(ctx, []*stanza.Element{el}, noIQ{t}); err != nil {
		t.Fatal(err)
	}
	if w := r.wire.String(); !strings.Contains(w, "type='subscribed'") || !regexp.MustCompile(`to='zoe@example.com' id='[^']*' type='subscribe'/>`).MatchString(w) {
		t.Errorf("the invite's subscribe was not accepted:\n%s", w)
	}
	if reqs, _ := r.svc.Pending(ctx); len(reqs) != 0 {
		t.Errorf("held: %v", reqs)
	}
	if _, body, _ := get(t, c, r.srv.URL+"/invites"); !strings.Contains(body, `<td data-label="Uses">1/2</td>`) {
		t.Errorf("the use is not counted:\n%s", body)
	}

	// Revoked: a forged form first, then the button; then again.
	if code, _, _ := post(t, c, r.srv.URL+"/invites/revoke", url.Values{"id": {"1"}}); code != http.StatusForbidden {
		t.Errorf("a revoke without the CSRF token: %d", code)
	}
	if inv, _ := r.svc.InviteByToken(ctx, tok); !inv.Revoked.IsZero() {
		t.Fatal("a forged form revoked the invite")
	}
	code, body, _ = post(t, c, r.srv.URL+"/invites/revoke", url.Values{"id": {"1"}, "csrf": {csrf}})
	row = regexp.MustCompile(`(?s)<tr id="i1">.*?</tr>`).FindString(body)
	if code != 200 || !strings.Contains(body, "Invite #1 revoked") || !strings.Contains(row, `<span class="state">revoked</span>`) || strings.Contains(row, "Revoke</button>") {
		t.Errorf("revoke: %d\n%s", code, body)
	}
	if _, body, _ := post(t, c, r.srv.URL+"/invites/revoke", url.Values{"id": {"1"}, "csrf": {csrf}}); !strings.Contains(body, "Invite #1 was revoked already.") {
		t.Errorf("revoke again:\n%s", body)
	}
	if code, body, _ := post(t, c, r.srv.URL+"/invites/revoke", url.Values{"id": {"99"}, "csrf": {csrf}}); code != http.StatusNotFound || !strings.Contains(body, "There is no invite #99.") {
		t.Errorf("revoke an unknown invite: %d\n%s", code, body)
	}
	if code, body, _ := post(t, c, r.srv.URL+"/invites/revoke", url.Values{"id": {"x"}, "csrf": {csrf}}); code != http.StatusUnprocessableEntity || !strings.Contains(body, "id: &#34;x&#34; is not an invite id") {
		t.Errorf("revoke x: %d\n%s", code, body)
	}

	// The audit: made and revoked by the admin, through the web.
	var acts []string
	evs, err := r.svc.AuditPage(ctx, store.AuditQuery{Action: "", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind == "invite" {
			acts = append(acts, fmt.Sprintf("%s %s %s (%s)", e.Action, e.Rule, e.Actor, e.Interface))
		}
	}
	if want := []string{"create invite 1 " + admin + " (web)", "revoke invite 1 " + admin + " (web)"}; fmt.Sprint(acts) != fmt.Sprint(want) {
		t.Errorf("audited %q, want %q", acts, want)
	}
}

// decodePNG reads a QR code in a PNG as a scanner does.
func decodePNG(t *testing.T, b []byte) string {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("the QR code does not decode: %v", err)
	}
	return res.GetText()
}

// getBytes fetches u as it is.
func getBytes(t *testing.T, u string) (int, []byte, http.Header) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

// An invite's public page, without a login: for a usable invite the
// entity, the xmpp: link, its QR code (which reads back as the link) and
// which apps take it, and nothing of who made it; an unknown or revoked
// token gets one answer (404), an expired or used-up one says so (410);
// the headers keep the token from leaking; requests are limited per
// address.
func TestInviteLanding(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	root := roster.Actor{JID: "root@localhost", Via: roster.ViaChat}
	mk := func(o gate.InviteOptions) gate.NewInvite {
		t.Helper()
		inv, err := r.svc.CreateInvite(ctx, root, "helpdesk", o)
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}
	good := mk(gate.InviteOptions{TTL: time.Hour, Uses: 3, SubscribeBack: true})
	revoked := mk(gate.InviteOptions{Uses: 1})
	if _, err := r.svc.RevokeInvite(ctx, root, revoked.ID); err != nil {
		t.Fatal(err)
	}
	expired := mk(gate.InviteOptions{TTL: time.Nanosecond, Uses: 1})
	usedUp := mk(gate.InviteOptions{Uses: 1})
	el := &stanza.Element{Name: "presence", Type: "subscribe", From: "yan@example.com", To: "helpdesk@" + domain, Preauth: usedUp.Token}
	if err := r.eng.Handle(ctx, []*stanza.Element{el}, noIQ{t}); err != nil {
		t.Fatal(err)
	}
	c := browser(t) // no session

	if good.Landing != r.srv.URL+"/invite/"+good.Token {
		t.Fatalf("the landing page is %q", good.Landing)
	}
	code, body, hdr := get(t, c, good.Landing)
	if code != 200 {
		t.Fatalf("a usable invite's page: %d\n%s", code, body)
	}
	for _, want := range []string{
		"<h1>Add helpdesk@bots.localhost</h1>",
		`<strong id="jid" class="jid">helpdesk@bots.localhost</strong>`,
		`<a id="open" class="button primary big" href="xmpp:helpdesk@bots.localhost?roster;preauth=` + good.Token + `">`,
		`<img id="qr" class="qr" src="/invite/` + good.Token + `/qr.png"`,
		`<code id="uri" class="uri">` + good.URI + `</code>`,
		"It will ask to see your presence in return",
		"It works until " + good.Expires.UTC().Format("2006-01-02 15:04:05 UTC"),
		"<strong>Conversations</strong>", "<strong>Monal</strong>", "<strong>Siskin IM</strong>",
		"add <strong>helpdesk@bots.localhost</strong> as a contact by hand",
		`<meta name="robots" content="noindex, nofollow">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// Nothing of who made it, nor of the other invites; no admin's links.
	for _, not := range []string{"root@localhost", revoked.Token, usedUp.Token, `href="/inbox"`, "Log out", "<nav>"} {
		if strings.Contains(body, not) {
			t.Errorf("the page shows %q", not)
		}
	}
	for k, want := range map[string]string{"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY",
		"X-Robots-Tag": "noindex, nofollow", "X-Content-Type-Options": "nosniff"} {
		if hdr.Get(k) != want {
			t.Errorf("%s: %q, want %q", k, hdr.Get(k), want)
		}
	}
	csp := hdr.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "img-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "data:") {
		t.Errorf("CSP %q", csp)
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "style=") {
		t.Error("the page has a script or an inline style")
	}

	// The QR code reads back as exactly the link.
	code, img, hdr := getBytes(t, r.srv.URL+"/invite/"+good.Token+"/qr.png")
	if code != 200 || hdr.Get("Content-Type") != "image/png" || hdr.Get("Cache-Control") != "no-store" || hdr.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("the QR code: %d %q %q", code, hdr.Get("Content-Type"), hdr.Get("Cache-Control"))
	}
	if got := decodePNG(t, img); got != good.URI || got != "xmpp:helpdesk@bots.localhost?roster;preauth="+good.Token {
		t.Errorf("the QR code reads %q, want %q", got, good.URI)
	}

	// Not working: unknown and revoked alike; expired and used up told.
	notWorking := func(tok string) string {
		t.Helper()
		code, body, _ := get(t, c, r.srv.URL+"/invite/"+tok)
		if code != http.StatusNotFound || !strings.Contains(body, "This invite link does not work: it is not one of ours, or it was withdrawn.") {
			t.Errorf("%s: %d\n%s", tok, code, body)
		}
		if code, b, _ := getBytes(t, r.srv.URL+"/invite/"+tok+"/qr.png"); code != http.StatusNotFound || bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s's QR code: %d", tok, code)
		}
		return body
	}
	unknownBody := notWorking("rgi_" + strings.Repeat("A", 43))
	if revokedBody := notWorking(revoked.Token); revokedBody != unknownBody {
		t.Errorf("an unknown and a revoked invite's pages differ:\n%s\n---\n%s", unknownBody, revokedBody)
	}
	notWorking("nonsense")
	for _, tc := range []struct {
		name, tok, want string
	}{
		{"expired", expired.Token, "This invite link has expired."},
		{"used up", usedUp.Token, "This invite link has been used as many times as it allows."},
	} {
		code, body, _ := get(t, c, r.srv.URL+"/invite/"+tc.tok)
		if code != http.StatusGone || !strings.Contains(body, tc.want) || strings.Contains(body, "helpdesk") || strings.Contains(body, "root@") {
			t.Errorf("%s: %d\n%s", tc.name, code, body)
		}
		if code, _, _ := getBytes(t, r.srv.URL+"/invite/"+tc.tok+"/qr.png"); code != http.StatusGone {
			t.Errorf("%s's QR code: %d", tc.name, code)
		}
	}

	// An invite to an entity no longer configured works no more.
	p, err := policy.Compile(policy.Config{Default: policy.Review, UnknownEntity: policy.Reject})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.svc.Reload(ctx, engine.Settings{Entities: []engine.Entity{{Local: "sales"}}, Policy: p, Admins: []string{admin}}); err != nil {
		t.Fatal(err)
	}
	notWorking(good.Token)
	if err := r.svc.Reload(ctx, settings(t, admin)); err != nil {
		t.Fatal(err)
	}

	// Requests are limited per address (the page and its QR code alike).
	limited := false
	for range 40 {
		code, _, hdr := get(t, c, good.Landing)
		if code == http.StatusTooManyRequests {
			limited = hdr.Get("Retry-After") != ""
			break
		}
	}
	if !limited {
		t.Error("no limit on an invite's page per address")
	}
	if code, _, _ := getBytes(t, r.srv.URL+"/invite/"+good.Token+"/qr.png"); code != http.StatusTooManyRequests {
		t.Errorf("the QR code over the limit: %d", code)
	}
}
