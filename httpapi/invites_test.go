package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"rostergate/engine"
	"rostergate/httpapi"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/xmpp/stanza"
)

// The admin API's invites: an admin token makes one (the defaults, or
// its options; bad bodies refused with the field named, nothing made),
// lists them without their tokens, and revokes one; its token is accepted
// on a subscribe where the policy holds every other request; the acts are
// audited as the token's through "api"; an entity's token may do none of
// it.
func TestAdminInvites(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	ctx := context.Background()
	p, err := policy.Compile(policy.Config{Default: policy.Review, UnknownEntity: policy.Drop})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Reload(ctx, engine.Settings{Entities: []engine.Entity{{Local: "helpdesk"}, {Local: "sales"}}, Policy: p}); err != nil {
		t.Fatal(err)
	}
	admin, at, err := f.svc.CreateAdminToken(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	bot := f.token(t, "helpdesk")
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/api/v1/admin/invites", ""},
		{"POST", "/api/v1/admin/invites", `{"entity":"helpdesk"}`},
		{"DELETE", "/api/v1/admin/invites/1", ""},
	} {
		if code, body := f.call(t, c.method, c.path, bot, c.body); code != 403 || !strings.Contains(body, "not an admin's") {
			t.Errorf("%s %s with an entity's token: %d %s", c.method, c.path, code, body)
		}
		if code, _ := f.call(t, c.method, c.path, "", c.body); code != 401 {
			t.Errorf("%s %s without a token: %d", c.method, c.path, code)
		}
	}
	if code, body := f.call(t, "GET", "/api/v1/admin/invites", admin, ""); code != 200 || body != `{"invites":[]}`+"\n" {
		t.Errorf("no invites: %d %q", code, body)
	}

	// Bad bodies: the field named; nothing made.
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"not JSON", `entity=helpdesk`, 400, "the body is not the JSON object asked for"},
		{"unknown field", `{"entity":"helpdesk","max_uses":3}`, 400, `unknown field \"max_uses\"`},
		{"uses as text", `{"entity":"helpdesk","uses":"3"}`, 400, "uses"},
		{"ttl as a number", `{"entity":"helpdesk","ttl":72}`, 400, "ttl"},
		{"two objects", `{"entity":"helpdesk"}{}`, 400, "more than one JSON value"},
		{"no entity", `{}`, 422, "entity: required"},
		{"unknown entity", `{"entity":"nosuch"}`, 422, `entity: \"nosuch\" is no [[entity]] of ` + domain},
		{"the domain", `{"entity":"` + domain + `"}`, 422, `entity: \"` + domain + `\" is no [[entity]]`},
		{"bad JID", `{"entity":"a@b@c"}`, 422, "entity: "},
		{"bad ttl", `{"entity":"helpdesk","ttl":"3 days"}`, 422, `ttl: \"3 days\" is not a duration`},
		{"negative ttl", `{"entity":"helpdesk","ttl":"-1h"}`, 422, "ttl -1h0m0s is negative"},
		{"ttl over a year", `{"entity":"helpdesk","ttl":"9000h"}`, 422, "ttl 9000h0m0s is over a year"},
		{"no uses", `{"entity":"helpdesk","uses":0}`, 422, "uses 0: want 1 to 1000000"},
		{"too many uses", `{"entity":"helpdesk","uses":1000001}`, 422, "uses 1000001: want 1 to 1000000"},
	} {
		code, body := f.call(t, "POST", "/api/v1/admin/invites", admin, tc.body)
		var e struct{ Error string }
		if code != tc.status || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, code, body, tc.status, tc.want)
		}
	}
	if code, body := f.call(t, "GET", "/api/v1/admin/invites", admin, ""); code != 200 || body != `{"invites":[]}`+"\n" {
		t.Fatalf("bad bodies made invites: %s", body)
	}

	// The defaults: 72 hours, one use.
	code, body := f.call(t, "POST", "/api/v1/admin/invites", admin, `{"entity":"helpdesk"}`)
	var def httpapi.NewInvite
	if err := json.Unmarshal([]byte(body), &def); code != 201 || err != nil {
		t.Fatalf("make: %d %s", code, body)
	}
	if def.ID != 1 || def.Entity != "helpdesk@"+domain || def.MaxUses != 1 || def.Uses != 0 || def.SubscribeBack || def.State != "usable" ||
		def.Creator != "token:"+itoa(at.ID) || def.Revoked != nil || def.Expires == nil || !strings.HasPrefix(def.Token, "rgi_") ||
		def.URI != "xmpp:helpdesk@"+domain+"?roster;preauth="+def.Token || def.Landing != "" {
		t.Errorf("made with the defaults: %s", body)
	}
	if d := def.Expires.Sub(def.Created); d != 72*time.Hour {
		t.Errorf("expires %s after it was made, want 72h", d)
	}
	// Options: by JID, no end, three uses, subscribing back.
	code, body = f.call(t, "POST", "/api/v1/admin/invites", admin, `{"entity":"sales@`+domain+`","ttl":"0","uses":3,"subscribe_back":true}`)
	var opt httpapi.NewInvite
	if err := json.Unmarshal([]byte(body), &opt); code != 201 || err != nil || opt.Entity != "sales@"+domain || opt.Expires != nil ||
		opt.MaxUses != 3 || !opt.SubscribeBack || !strings.Contains(body, `"expires":null`) {
		t.Errorf("made with options: %d %s", code, body)
	}

	// Its token is accepted where the policy holds every other request.
	f.w.Reset()
	f.handle(t, &stanza.Element{Name: "presence", Type: "subscribe", From: "zoe@example.com", To: "helpdesk@" + domain, Preauth: def.Token})
	if !strings.Contains(f.w.String(), "type='subscribed'") {
		t.Errorf("the invite's subscribe was not accepted:\n%s", f.w.String())
	}

	// Revoke: 200 once, then false; an unknown id 404.
	for _, tc := range []struct {
		path   string
		status int
		want   string
	}{
		{"/api/v1/admin/invites/2", 200, `{"revoked":true}`},
		{"/api/v1/admin/invites/2", 200, `{"revoked":false}`},
		{"/api/v1/admin/invites/99", 404, `{"error":"no invite 99"}`},
		{"/api/v1/admin/invites/x", 404, `{"error":"no invite \"x\"`},
	} {
		if code, body := f.call(t, "DELETE", tc.path, admin, ""); code != tc.status || !strings.HasPrefix(body, tc.want) {
			t.Errorf("DELETE %s: %d %s, want %d %s", tc.path, code, body, tc.status, tc.want)
		}
	}

	// The list: the state of each, never a token.
	code, body = f.call(t, "GET", "/api/v1/admin/invites", admin, "")
	var list struct{ Invites []httpapi.Invite }
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list.Invites) != 2 {
		t.Fatalf("list: %d %s", code, body)
	}
	if a, b := list.Invites[0], list.Invites[1]; a.ID != 1 || a.State != "used up" || a.Uses != 1 || b.ID != 2 || b.State != "revoked" || b.Revoked == nil {
		t.Errorf("list: %s", body)
	}
	if strings.Contains(body, def.Token) || strings.Contains(body, opt.Token) || strings.Contains(body, "token\"") || strings.Contains(body, "rgi_") {
		t.Errorf("the list shows a token: %s", body)
	}

	// Audited as the token's acts, through the API.
	var acts []string
	for _, e := range f.audit(t) {
		if e.Kind == "invite" {
			acts = append(acts, e.Action+" "+e.Rule+" "+e.Actor+" "+e.Interface)
		}
	}
	tok := "token:" + itoa(at.ID)
	want := []string{"create invite 1 " + tok + " " + roster.ViaAPI, "create invite 2 " + tok + " " + roster.ViaAPI, "revoke invite 2 " + tok + " " + roster.ViaAPI}
	if strings.Join(acts, "|") != strings.Join(want, "|") {
		t.Errorf("audited %q, want %q", acts, want)
	}
}

// With the web page, a new invite's answer names its page.
func TestAdminInviteLanding(t *testing.T) {
	web := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	f := newFixture(t, httpapi.Options{Web: web})
	f.svc.SetWebURL("https://rg.example/")
	admin, _, err := f.svc.CreateAdminToken(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	code, body := f.call(t, "POST", "/api/v1/admin/invites", admin, `{"entity":"helpdesk","uses":1}`)
	var inv httpapi.NewInvite
	if err := json.Unmarshal([]byte(body), &inv); code != 201 || err != nil || inv.Landing != "https://rg.example/invite/"+inv.Token {
		t.Errorf("make: %d %s", code, body)
	}
}
