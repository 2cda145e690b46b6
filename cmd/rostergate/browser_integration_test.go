package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"rostergate/internal/xmpptest"
	"rostergate/store"
	"rostergate/store/sqlite"
)

// screenshotsEnv, set to a directory, makes the browser test write its
// screenshots there (docs/screenshots was made so); otherwise they go to a
// temporary directory.
const screenshotsEnv = "ROSTERGATE_SCREENSHOTS"

// chromium starts a headless Chromium (Debian's chromium) for the test and
// returns a context driving one tab. Without Chromium the test fails under
// CI=true and is skipped otherwise.
func chromium(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no chromium on PATH (make deps installs Debian's chromium)")
		}
		t.Skip("no chromium on PATH (make deps installs Debian's chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in CI
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("proxy-server", "direct://"),
		chromedp.Flag("proxy-bypass-list", "*"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// shooter saves full-page screenshots by name.
type shooter struct {
	t   *testing.T
	dir string
}

func newShooter(t *testing.T) shooter {
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return shooter{t, dir}
}

func (s shooter) shot(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		png, err := chromedp.FullScreenshot(100)(ctx, t)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(s.dir, name+".png"), png, 0o644)
	})
}

// textOf reads an element's text into *into, as a step.
func textOf[S chromedp.Selectable](sel S, into *string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		var err error
		*into, err = chromedp.Text(sel)(ctx, t)
		return err
	})
}

// eval runs a script, as a step.
func eval(js string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](js+"; true")(ctx, t)
		return err
	})
}

var loginLink = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/login/rgl_[A-Za-z0-9_-]+`)

// An admin logs in to the web page through the link "login" gets over
// XMPP, approves a held request in a real browser, and the requester's
// roster on the real server changes; the inbox updates by itself when a
// request arrives; an invite made on the Invites page leads to a public
// page whose QR code loads and whose link a real client uses to be
// accepted; a forged form, a made-up link, an expired link and a former
// admin's link are refused.
func TestIntegrationBrowser(t *testing.T) {
	srv := xmpptest.Prosody(t)
	ctx := chromium(t)
	shots := newShooter(t)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "component.toml")
	text := fmt.Sprintf(testConfig, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret)
	text = strings.Replace(text, "[policy]\n", "[http]\nlisten = \"127.0.0.1:0\"\n[policy]\n", 1)
	write := func(admins string) {
		t.Helper()
		s := strings.Replace(text, `jids = ["admin@localhost"]`, "jids = "+admins, 1) + "default = \"review\"\n"
		if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`["admin@localhost"]`)
	d := startRun(t, cfg, make(chan os.Signal, 1))
	d.waitLog(t, "presence resync sent")
	m := apiURL.FindStringSubmatch(d.log.String())
	if m == nil {
		t.Fatalf("no HTTP address in the log:\n%s", d.log.String())
	}
	base := m[1]
	helpdesk := "helpdesk@" + srv.ComponentDomain

	admin := srv.NewUser(t, "admin")
	alice := srv.NewUser(t, "alice")
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	id := waitHeld(t, admin, "alice@"+srv.Domain, helpdesk)

	// The link, from the chat command.
	link := askLogin(t, admin, srv.ComponentDomain)
	if !strings.HasPrefix(link, base+"/login/") {
		t.Fatalf("link %q is not under %s", link, base)
	}
	var inbox string
	if err := chromedp.Do(ctx,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("#login")),
		shots.shot("login-link"),
		chromedp.Click(chromedp.ID("#login")),
		chromedp.WaitVisible(chromedp.ID("#rows")),
		textOf(chromedp.ID("#rows"), &inbox),
	); err != nil {
		t.Fatalf("logging in: %v", err)
	}
	if !strings.Contains(inbox, "alice@"+srv.Domain) || !strings.Contains(inbox, helpdesk) {
		t.Fatalf("the inbox does not show alice's request:\n%s", inbox)
	}

	// A request arrives while the page is open: the inbox shows it without
	// a reload.
	bob := srv.NewUser(t, "bob")
	if err := bob.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	bobID := waitHeld(t, admin, "bob@"+srv.Domain, helpdesk)
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.ID("#r"+bobID)),
		shots.shot("inbox"),
	); err != nil {
		t.Fatalf("the inbox did not show bob's request by itself: %v", err)
	}

	// Approve alice from the inbox: her server's roster changes.
	var note string
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`button[name="one"][value="approve:`+id+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(".note")),
		textOf(chromedp.CSS(".note"), &note),
		shots.shot("inbox-approved"),
	); err != nil {
		t.Fatalf("approving: %v", err)
	}
	if !strings.Contains(note, "Approved #"+id) {
		t.Errorf("after approving: %q", note)
	}
	wctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := alice.WaitRosterItem(wctx, helpdesk, func(it xmpptest.RosterItem) bool { return it.Subscription == "to" || it.Subscription == "both" }); err != nil {
		t.Fatalf("alice's roster on the server did not change: %v", err)
	}

	// A forged form (its CSRF token taken out) changes nothing.
	var refused string
	if err := chromedp.Do(ctx,
		eval(`document.querySelector('#decide input[name="csrf"]').remove()`),
		chromedp.Click(chromedp.CSS(`button[name="one"][value="reject:`+bobID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(".error")),
		textOf(chromedp.CSS(".error"), &refused),
	); err != nil {
		t.Fatalf("a forged form: %v", err)
	}
	if !strings.Contains(refused, "CSRF") {
		t.Errorf("a forged form: %q", refused)
	}
	if body := chatReply(t, admin, srv.ComponentDomain, "pending"); !strings.Contains(body, "#"+bobID+" bob@") {
		t.Errorf("bob's request after the forged form: %q", body)
	}

	// The other pages, for the screenshots and a look at each.
	for _, p := range []struct{ path, want, name string }{
		{"/audit", "(web)", "audit"},
		{"/rosters/helpdesk", "alice@" + srv.Domain, "roster"},
		{"/lists", "allow list", "lists"},
		{"/explain?contact=carol%40example.com&entity=helpdesk", "review", "explain"},
	} {
		var body string
		if err := chromedp.Do(ctx,
			chromedp.Navigate(base+p.path),
			chromedp.WaitVisible(chromedp.CSS("main")),
			textOf(chromedp.CSS("main"), &body),
			shots.shot(p.name),
		); err != nil {
			t.Fatalf("%s: %v", p.path, err)
		}
		if !strings.Contains(body, p.want) {
			t.Errorf("%s lacks %q:\n%s", p.path, p.want, body)
		}
	}

	// Invites: one made on the Invites page shows its link and QR code
	// once; its public page shows the xmpp: link and a QR code that loads;
	// a client sending the token from the page is accepted although the
	// policy holds every request.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/invites"),
		chromedp.WaitVisible(chromedp.ID("#create")),
		chromedp.SetValue(chromedp.ID("#entity"), "helpdesk"),
		chromedp.SetValue(chromedp.ID("#uses"), "1"),
		chromedp.Click(chromedp.CSS(`#create button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("#new-invite")),
	); err != nil {
		t.Fatalf("making an invite: %v", err)
	}
	imageLoaded(t, ctx, "#new-qr")
	newURI, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("#new-uri")))
	if err != nil {
		t.Fatal(err)
	}
	landing, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("#new-landing"), "href"))
	if err != nil || !strings.HasPrefix(landing.Value, base+"/invite/rgi_") || !strings.HasPrefix(newURI, "xmpp:"+helpdesk+"?roster;preauth=rgi_") {
		t.Fatalf("the new invite: link %q, page %q (%v)", newURI, landing.Value, err)
	}
	if err := chromedp.Do(ctx,
		shots.shot("invites-new"),
		chromedp.Navigate(landing.Value),
		chromedp.WaitVisible(chromedp.ID("#open")),
	); err != nil {
		t.Fatalf("the invite's page: %v", err)
	}
	imageLoaded(t, ctx, "#qr")
	open, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("#open"), "href"))
	if err != nil || open.Value != newURI {
		t.Fatalf("the invite's page links to %q, want %q (%v)", open.Value, newURI, err)
	}
	// On a phone too, without sideways scrolling.
	if err := chromedp.Do(ctx,
		shots.shot("invite"),
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(landing.Value),
		chromedp.WaitVisible(chromedp.ID("#qr")),
	); err != nil {
		t.Fatalf("the invite's page on a phone: %v", err)
	}
	imageLoaded(t, ctx, "#qr")
	if err := chromedp.Do(ctx, shots.shot("invite-phone")); err != nil {
		t.Fatal(err)
	}
	assertFits(t, ctx, "the invite's page")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}
	m = inviteURI.FindStringSubmatch(open.Value)
	if m == nil {
		t.Fatalf("no token in %q", open.Value)
	}
	frank := srv.NewUser(t, "frank")
	subscribeWith(t, frank, helpdesk, m[1])
	waitAccepted(t, frank, helpdesk, false)
	var invites string
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/invites"),
		chromedp.WaitVisible(chromedp.ID("#invites")),
		textOf(chromedp.ID("#invites"), &invites),
		shots.shot("invites"),
	); err != nil {
		t.Fatalf("the invites after the use: %v", err)
	}
	if !strings.Contains(invites, "1/1") || !strings.Contains(invites, "used up") || !strings.Contains(invites, "admin@localhost") {
		t.Errorf("the used invite's row:\n%s", invites)
	}
	var gone string
	if err := chromedp.Do(ctx,
		chromedp.Navigate(landing.Value),
		chromedp.WaitVisible(chromedp.CSS(".error")),
		textOf(chromedp.CSS(".error"), &gone),
		shots.shot("invite-used"),
	); err != nil {
		t.Fatalf("the used invite's page: %v", err)
	}
	if !strings.Contains(gone, "used as many times as it allows") {
		t.Errorf("the used invite's page: %q", gone)
	}

	// On a phone.
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(base+"/inbox"),
		chromedp.WaitVisible(chromedp.ID("#rows")),
		shots.shot("inbox-phone"),
	); err != nil {
		t.Fatalf("on a phone: %v", err)
	}
	assertFits(t, ctx, "the inbox")
	// The Invites page on a phone: its table stacks.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/invites"),
		chromedp.WaitVisible(chromedp.ID("#invites")),
		shots.shot("invites-phone"),
	); err != nil {
		t.Fatalf("the invites on a phone: %v", err)
	}
	assertFits(t, ctx, "the Invites page")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}

	// Log out; then a made-up link and an expired one are refused.
	refusedLink := func(u, want string) {
		t.Helper()
		var body string
		if err := chromedp.Do(ctx,
			chromedp.Navigate(u),
			chromedp.WaitVisible(chromedp.CSS(".error")),
			textOf(chromedp.CSS(".error"), &body),
		); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if !strings.Contains(body, want) {
			t.Errorf("%s: %q, want %q", u, body, want)
		}
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/inbox"),
		chromedp.Click(chromedp.CSS(".logout button")),
		chromedp.WaitVisible(chromedp.ID("#jid")),
		shots.shot("login"),
	); err != nil {
		t.Fatalf("logging out: %v", err)
	}
	refusedLink(link, "used already or expired")
	refusedLink(base+"/login/rgl_"+strings.Repeat("A", 43), "unknown, used already or expired")
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "rg.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	expired := "rgl_" + strings.Repeat("B", 43)
	h := sha256.Sum256([]byte(expired))
	past := time.Now().Add(-time.Second)
	if err := db.CreateWebKey(context.Background(), store.WebKey{Hash: h[:], Kind: store.KindLogin, JID: "admin@localhost", Created: past.Add(-5 * time.Minute), Expires: past}); err != nil {
		t.Fatal(err)
	}
	refusedLink(base+"/login/"+expired, "expired")

	// A non-admin gets no link; a link made while an admin is refused
	// once the config says otherwise.
	eve := srv.NewUser(t, "eve")
	if err := eve.SendMessage(srv.ComponentDomain, "login"); err != nil {
		t.Fatal(err)
	}
	em, err := eve.WaitMessage(wctx, func(m xmpptest.Message) bool { return m.From == srv.ComponentDomain })
	if err != nil || em.Type != "error" || loginLink.MatchString(em.Body) {
		t.Errorf("a non-admin's login: %+v, %v", em, err)
	}
	former := askLogin(t, admin, srv.ComponentDomain)
	write(`["root@localhost"]`)
	d.reload(t)
	d.waitLog(t, "reload done")
	refusedLink(former, "admin@localhost is no longer an admin")
}

// assertFits fails the test if the page is wider than the window: no
// sideways scrolling, of the page or of a table.
func assertFits(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth &&
		[...document.querySelectorAll('.scroll')].every(e => e.scrollWidth <= e.clientWidth)`))
	if err != nil || !fits {
		t.Errorf("%s is wider than a phone's screen (%v)", what, err)
	}
}

// imageLoaded waits for the image sel to have loaded, and fails the test
// unless it has a size (naturalWidth is 0 for an image that failed).
func imageLoaded(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	js := `document.querySelector(` + strconv.Quote(sel) + `)`
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js+`.complete`, chromedp.WithPollingTimeout(waitFor))); err != nil {
		t.Fatalf("the image %s did not load: %v", sel, err)
	}
	w, err := chromedp.Run(ctx, chromedp.Evaluate[int](js+`.naturalWidth`))
	if err != nil || w <= 0 {
		t.Fatalf("the image %s: naturalWidth %d (%v)", sel, w, err)
	}
}

// askLogin sends "login" to the component domain as the admin and returns
// the link in the answer.
func askLogin(t *testing.T, admin *xmpptest.Client, domain string) string {
	t.Helper()
	body := chatReply(t, admin, domain, "login")
	link := loginLink.FindString(body)
	if link == "" {
		t.Fatalf("no login link in %q", body)
	}
	return link
}

// chatReply sends a chat command and returns the answer's body.
func chatReply(t *testing.T, c *xmpptest.Client, domain, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.SendMessage(domain, cmd); err != nil {
		t.Fatal(err)
	}
	var re *regexp.Regexp
	switch cmd {
	case "login":
		re = loginLink
	case "pending":
		re = regexp.MustCompile(`Answer with "approve|^No pending requests`)
	default:
		re = regexp.MustCompile(``)
	}
	m, err := c.WaitMessage(ctx, func(m xmpptest.Message) bool { return m.From == domain && re.MatchString(m.Body) })
	if err != nil {
		t.Fatalf("no answer to %q: %v", cmd, err)
	}
	return m.Body
}
