package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"rostergate/gate"
	"rostergate/httpapi"
	"rostergate/internal/xmpptest"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/postgres"
)

// heldAdmin is the admins of the kills-under-load test. While instances
// come and go, they decide the held requests they find in the store, each
// request once, through one interface by its id modulo 3: `rostergate
// pending approve|reject` (an act queued in the store for the active
// instance), the admin API of the instance active at the time, and chat
// commands from an admin's account. Each act names one or two requests;
// each interface approves and rejects by turns. A request whose act was not
// reported done is tried once more, as an admin would, through the next
// interface and the other way (approve after reject): the first act may
// still be carried out (a queued act, or one cut by the kill), and only one
// of the two may have effect. The last user's requests are left held, and
// the one before's kept for settle: once the kills are over, each interface
// that has had no act reported done decides one more.
type heldAdmin struct {
	r     *loadRig
	db    *postgres.DB
	token string           // an admin's API token
	chat  *xmpptest.Client // an admin's account

	mu      sync.Mutex
	api     string // the active instance's HTTP base URL ("" unknown)
	calm    bool   // no instance is killed any more (settle)
	claimed map[int64]bool
	retry   map[string][]retryReq // requests to try again, by the interface to try them through
	acts    []adminAct
	done    map[string]int // acts reported done, by interface
	cliRuns int            // pending approve|reject commands run

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// adminAct is one act of an admin: the requests it named, and what the
// interface reported for each.
type adminAct struct {
	via     string // roster.ViaCLI, ViaAPI or ViaChat: as the audit log names it
	approve bool
	again   bool // the requests are tried again, after an act not reported done
	reqs    []roster.Request
	outs    []actOutcome // by reqs
	said    string       // what the interface answered
}

// retryReq is a request to decide again, the other way, after an act that
// was not reported done.
type retryReq struct {
	req     roster.Request
	approve bool
}

// actOutcome is what an interface reported of one request named by an act.
type actOutcome int

const (
	// actUnknown: no answer (the instance died, say), or the act was
	// queued: it may or may not have been carried out.
	actUnknown actOutcome = iota
	// actDone: reported decided; the decision must be in the store, and
	// its answer must reach the requester.
	actDone
	// actFailed: reported not done (an error to the admin); it may be lost.
	actFailed
)

// adminVias are the interfaces the admins decide through, by request id
// modulo 3.
func adminVias() []string { return []string{roster.ViaCLI, roster.ViaAPI, roster.ViaChat} }

func newHeldAdmin(t *testing.T, r *loadRig) *heldAdmin {
	t.Helper()
	out, _, err := runCmd(t, "token", "create", "-config", r.cfg, "-admin")
	if err != nil {
		t.Fatalf("token create -admin: %v", err)
	}
	db, err := postgres.Open(context.Background(), r.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a := &heldAdmin{r: r, db: db, token: strings.TrimSpace(out), chat: r.srv.NewUser(t, "admin"),
		claimed: map[int64]bool{}, retry: map[string][]retryReq{}, done: map[string]int{}, stop: make(chan struct{})}
	t.Cleanup(a.halt) // before the store is closed
	return a
}

// setActive points the admin API's calls at c, which is active now.
func (a *heldAdmin) setActive(c *child) {
	var api string
	if m := apiURL.FindAllStringSubmatch(c.log.String(), -1); len(m) > 0 {
		api = m[len(m)-1][1]
	}
	a.mu.Lock()
	a.api = api
	a.mu.Unlock()
}

// start sets the admins acting, one goroutine per interface.
func (a *heldAdmin) start() {
	for k, via := range adminVias() {
		a.wg.Add(1)
		go a.run(k, via)
	}
}

// settle tells the admins the kills are over, and stops them once each
// interface has had an act reported done (at most waitFor from now).
func (a *heldAdmin) settle() {
	a.mu.Lock()
	a.calm = true
	a.mu.Unlock()
	finished := make(chan struct{})
	go func() {
		a.wg.Wait()
		close(finished)
	}()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	select {
	case <-finished:
	case <-timer.C:
	}
	a.halt()
}

// halt stops the admins and waits for the acts under way to end.
func (a *heldAdmin) halt() {
	a.stopOnce.Do(func() { close(a.stop) })
	a.wg.Wait()
}

// run decides, through via, the held requests whose id is k modulo 3, as
// they appear in the store, until halted, or until the kills are over and
// an act through via has been reported done.
func (a *heldAdmin) run(k int, via string) {
	defer a.wg.Done()
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	approve := true
	for range 1500 { // a minute of ticks; the kills take seconds
		select {
		case <-a.stop:
			return
		case <-tick.C:
		}
		a.mu.Lock()
		calm, done := a.calm, a.done[via] > 0
		a.mu.Unlock()
		if calm && done {
			return
		}
		act := adminAct{via: via}
		if act.reqs, act.approve = a.retried(via); len(act.reqs) > 0 {
			act.again = true
		} else {
			act.reqs, act.approve = a.pick(k, calm), approve
			if len(act.reqs) == 0 {
				continue
			}
			approve = !approve
		}
		act.outs = make([]actOutcome, len(act.reqs))
		switch via {
		case roster.ViaCLI:
			a.viaCLI(&act)
		case roster.ViaAPI:
			a.viaAPI(&act)
		default:
			a.viaChat(&act)
		}
		a.mu.Lock()
		a.acts = append(a.acts, act)
		if slices.Contains(act.outs, actDone) {
			a.done[via]++
		}
		vias := adminVias()
		next := vias[(slices.Index(vias, via)+1)%len(vias)]
		for i, q := range act.reqs {
			if act.outs[i] != actDone && !act.again {
				a.retry[next] = append(a.retry[next], retryReq{q, !act.approve})
			}
		}
		a.mu.Unlock()
	}
}

// retried takes up to two requests to try again through via, to be decided
// the same way.
func (a *heldAdmin) retried(via string) ([]roster.Request, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.retry[via]
	if len(rs) == 0 {
		return nil, false
	}
	out := []roster.Request{rs[0].req}
	approve := rs[0].approve
	rs = rs[1:]
	if len(rs) > 0 && rs[0].approve == approve {
		out = append(out, rs[0].req)
		rs = rs[1:]
	}
	a.retry[via] = rs
	return out, approve
}

// pick claims up to two held requests that no act has named, from the
// store's listing: while the kills go on, those with ids k modulo 3 but the
// last two users'; once they are over (calm), any but the last user's.
func (a *heldAdmin) pick(k int, calm bool) []roster.Request {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	reqs, err := a.db.Requests(ctx)
	if err != nil {
		return nil
	}
	n := len(a.r.users)
	kept, reserve := a.r.users[n-1].Bare, a.r.users[n-2].Bare
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []roster.Request
	for _, q := range reqs {
		if q.Contact == kept || a.claimed[q.ID] || !calm && (q.ID%3 != int64(k) || q.Contact == reserve) {
			continue
		}
		a.claimed[q.ID] = true
		if out = append(out, q); len(out) == 2 {
			break
		}
	}
	return out
}

func (act *adminAct) verb() string {
	if act.approve {
		return "approve"
	}
	return "reject"
}

// ids returns the ids of the requests act names, as text.
func (act *adminAct) ids() []string {
	ids := make([]string, len(act.reqs))
	for i, q := range act.reqs {
		ids[i] = strconv.FormatInt(q.ID, 10)
	}
	return ids
}

// readLines reads the outcome lines of the command line or the chat
// commands (adminui.OutcomeLines): "Approved #7 (…)" is done, "#7: …" is
// refused.
func (act *adminAct) readLines(text string) {
	done := "Rejected #%d ("
	if act.approve {
		done = "Approved #%d ("
	}
	for i, q := range act.reqs {
		switch {
		case strings.Contains(text, fmt.Sprintf(done, q.ID)):
			act.outs[i] = actDone
		case strings.Contains(text, fmt.Sprintf("#%d: ", q.ID)):
			act.outs[i] = actFailed
		}
	}
}

// viaCLI runs `rostergate pending approve|reject ID…`.
func (a *heldAdmin) viaCLI(act *adminAct) {
	var o, e bytes.Buffer
	err := run(context.Background(), append([]string{"pending", "-config", a.r.cfg, act.verb()}, act.ids()...), proc{stdout: &o, stderr: &e, getenv: noEnv})
	a.mu.Lock()
	a.cliRuns++
	a.mu.Unlock()
	act.said = strings.TrimSpace(o.String() + e.String())
	if err != nil {
		// Queued but not waited for to the end: unknown.
		act.said += fmt.Sprintf(" (%v)", err)
		return
	}
	act.readLines(o.String())
}

// viaAPI posts the decision to the admin API of the active instance.
func (a *heldAdmin) viaAPI(act *adminAct) {
	a.mu.Lock()
	base := a.api
	a.mu.Unlock()
	ids := make([]int64, len(act.reqs))
	for i, q := range act.reqs {
		ids[i] = q.ID
	}
	body, err := json.Marshal(httpapi.DecideRequest{IDs: ids, Action: act.verb()})
	if err != nil {
		act.said = err.Error()
		return
	}
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/admin/requests/decide", bytes.NewReader(body))
	if err != nil {
		act.said = err.Error()
		return
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		// Refused, or cut while the instance decided: unknown.
		act.said = err.Error()
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	act.said = fmt.Sprintf("%d %s", resp.StatusCode, b)
	if err != nil {
		return
	}
	var res struct {
		Results []httpapi.Decision `json:"results"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &res) != nil {
		for i := range act.outs {
			act.outs[i] = actFailed
		}
		return
	}
	for i, q := range act.reqs {
		switch {
		case i >= len(res.Results) || res.Results[i].ID != q.ID:
		case res.Results[i].OK:
			act.outs[i] = actDone
		default:
			act.outs[i] = actFailed
		}
	}
}

// viaChat sends "approve|reject ID…" to the component domain from the
// admin's account and reads the answer, if one comes within a second.
func (a *heldAdmin) viaChat(act *adminAct) {
	domain := a.r.srv.ComponentDomain
	cmd := act.verb() + " " + strings.Join(act.ids(), " ")
	if err := a.chat.SendMessage(domain, cmd); err != nil {
		act.said = err.Error()
		return
	}
	first := act.reqs[0].ID
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, err := a.chat.WaitMessage(ctx, func(m xmpptest.Message) bool {
		if m.From != domain {
			return false
		}
		if m.Type == "error" {
			return strings.Contains(m.Body, cmd)
		}
		return strings.Contains(m.Body, fmt.Sprintf(" #%d (", first)) || strings.Contains(m.Body, fmt.Sprintf("#%d: ", first))
	})
	if err != nil {
		act.said = "no answer"
		return
	}
	act.said = m.Body
	if m.Type == "error" {
		for i := range act.outs {
			act.outs[i] = actFailed
		}
		return
	}
	act.readLines(m.Body)
}

// waitCarriedOut waits, at most waitFor, until no act queued by the
// command line waits for the active instance.
func (a *heldAdmin) waitCarriedOut(t *testing.T, db *postgres.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		waiting, err := db.WaitingActions(ctx)
		if err == nil && len(waiting) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("acts the command line queued were never carried out: %+v (%v)", waiting, err)
			return
		case <-tick.C:
		}
	}
}

// heldPair is a held request's entity (localpart) and contact.
type heldPair struct{ entity, contact string }

// checkHeld checks the requests sent to entities that hold them (held):
// each is stored (held) at most once, and is either still held, listed
// once and unanswered, or decided once, by one of adm's acts that named it,
// with the answer that act asked for and never the other; a request not
// stored is not answered either. With adm, it then checks the acts: each
// an interface reported done is decided as it asked, and every act the
// command line queued was carried out, its result agreeing with the store.
func (r *loadRig) checkHeld(t *testing.T, db *postgres.DB, what string, held []loadReq, adm *heldAdmin) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	pending, err := db.Requests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[heldPair][]roster.Request{}
	ids := map[int64]bool{}
	for _, q := range pending {
		if ids[q.ID] {
			t.Errorf("%s: request #%d listed twice", what, q.ID)
		}
		ids[q.ID] = true
		listed[heldPair{q.Entity, q.Contact}] = append(listed[heldPair{q.Entity, q.Contact}], q)
	}
	reviews := map[heldPair]int{}
	decisions := map[heldPair][]roster.Event{}
	byID := map[int64]roster.Event{} // the decision of each decided request
	err = db.Events(ctx, time.Time{}, func(ev roster.Event) error {
		p := heldPair{ev.Entity, ev.Contact}
		switch {
		case ev.Kind == "subscribe" && ev.Action == "review":
			reviews[p]++
		case ev.Kind == "approve" || ev.Kind == "reject":
			decisions[p] = append(decisions[p], ev)
			if id, err := strconv.ParseInt(strings.TrimPrefix(ev.Detail, "request #"), 10, 64); err == nil {
				byID[id] = ev
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	type actRef struct {
		act *adminAct
		i   int
	}
	named := map[heldPair][]actRef{}
	if adm != nil {
		adm.mu.Lock()
		defer adm.mu.Unlock()
		for k := range adm.acts {
			for i, q := range adm.acts[k].reqs {
				p := heldPair{q.Entity, q.Contact}
				named[p] = append(named[p], actRef{&adm.acts[k], i})
			}
		}
	}
	// wants is the decision act asks for, as the audit log has it.
	wants := func(act *adminAct, id int64, ev roster.Event) bool {
		return ev.Kind == act.verb() && ev.Interface == act.via && ev.Detail == "request #"+strconv.FormatInt(id, 10)
	}
	var stored, stillHeld, approved, rejected int
	for _, q := range held {
		entity, u := fmt.Sprintf("e%d", q.entity), r.users[q.user]
		p := heldPair{entity, u.Bare}
		jid := entity + "@" + r.srv.ComponentDomain
		name := fmt.Sprintf("%s: u%d → %s", what, q.user, jid)
		n, ls, ds := reviews[p], listed[p], decisions[p]
		stored += min(n, 1)
		if n > 1 || len(ls) > 1 || len(ds) > 1 || len(ls)+len(ds) != n {
			t.Errorf("%s: held %d times, listed %d times (%+v), decided %d times (%+v): want held once and then listed or decided, or neither", name, n, len(ls), ls, len(ds), ds)
		}
		it, gerr := db.Get(ctx, entity, u.Bare)
		want := "" // the answer the requester must have had
		switch {
		case len(ds) > 0:
			d := ds[0]
			var asked []string
			for _, ref := range named[p] {
				if wants(ref.act, ref.act.reqs[ref.i].ID, d) {
					asked = nil
					break
				}
				asked = append(asked, fmt.Sprintf("%s #%d through %s", ref.act.verb(), ref.act.reqs[ref.i].ID, ref.act.via))
			}
			if len(named[p]) == 0 || len(asked) > 0 {
				t.Errorf("%s: decided %s by %s (%s, %s), but the admins' acts that named it asked to %v", name, d.Kind, d.Actor, d.Interface, d.Detail, asked)
			}
			if d.Kind == "approve" {
				approved++
				want = "subscribed"
				if gerr != nil || it.Sub != roster.SubFrom || it.PendingIn {
					t.Errorf("%s: approved, but its item is %+v (%v)", name, it, gerr)
				}
			} else {
				rejected++
				want = "unsubscribed"
				if gerr == nil && (it.Sub != roster.SubNone || it.PendingIn) {
					t.Errorf("%s: rejected, but its item is %+v", name, it)
				}
			}
		case len(ls) > 0:
			stillHeld++
			if gerr != nil || it.Sub != roster.SubNone || !it.PendingIn {
				t.Errorf("%s: held, but its item is %+v (%v)", name, it, gerr)
			}
		case !errors.Is(gerr, store.ErrNotFound):
			t.Errorf("%s: never held, but its item is %+v (%v)", name, it, gerr)
		}
		if want != "" {
			if _, err := u.WaitPresence(ctx, func(pr xmpptest.Presence) bool { return pr.Type == want && strings.HasPrefix(pr.From, jid) }); err != nil {
				t.Errorf("%s: decided, but the requester was never told %q: %v", name, want, err)
			}
		}
		for _, pr := range u.Presences() {
			if strings.HasPrefix(pr.From, jid) && (pr.Type == "subscribed" || pr.Type == "unsubscribed") && pr.Type != want {
				t.Errorf("%s: the requester was told %q; want %q", name, pr.Type, want)
				break
			}
		}
	}
	t.Logf("%s: %d requests to entities that hold them: %d held; then %d approved and %d rejected by the admins, %d still held",
		what, len(held), stored, approved, rejected, stillHeld)
	if adm == nil {
		return
	}

	// Every act reported done was carried out as it asked.
	count := map[string]*[3]int{}
	for _, via := range adminVias() {
		count[via] = &[3]int{}
	}
	tried := 0 // requests tried again after an act not reported done
	for _, act := range adm.acts {
		for i, q := range act.reqs {
			count[act.via][act.outs[i]]++
			if act.again {
				tried++
			}
			if act.outs[i] != actDone {
				continue
			}
			if d, ok := byID[q.ID]; !ok || !wants(&act, q.ID, d) || len(decisions[heldPair{q.Entity, q.Contact}]) != 1 {
				t.Errorf("%s: %s of request #%d through %s reported done (%q), but the store's decisions of it are %+v", what, act.verb(), q.ID, act.via, act.said,
					decisions[heldPair{q.Entity, q.Contact}])
			}
		}
	}
	for _, via := range adminVias() {
		if count[via][actDone] == 0 {
			t.Errorf("%s: no act through %s was reported done: that interface was not exercised", what, via)
		}
	}

	// Every act the command line queued was carried out, and what it
	// recorded agrees with the store. One carried out again by the next
	// active instance, after a kill between the decision and its record,
	// finds the request decided by itself (no other act of the command
	// line named it).
	found, again := 0, 0
	for id := int64(1); id <= int64(adm.cliRuns)+20; id++ {
		a, err := db.Action(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		found++
		var req gate.DecideRequest
		var res gate.DecideResult
		if a.Kind != gate.KindDecide || json.Unmarshal([]byte(a.Request), &req) != nil || a.Done.IsZero() || json.Unmarshal([]byte(a.Result), &res) != nil {
			t.Errorf("%s: act %d of the command line: %+v: want a decision carried out", what, id, a)
			continue
		}
		act := adminAct{via: roster.ViaCLI, approve: req.Approve}
		for i, rid := range req.IDs {
			d, decided := byID[rid]
			switch {
			case i >= len(res.Results):
				t.Errorf("%s: act %d of the command line has no result for request #%d: %s", what, id, rid, a.Result)
			case res.Results[i].Error == "" && (!decided || !wants(&act, rid, d)):
				t.Errorf("%s: act %d of the command line: %s request #%d done, but the store's decision is %+v (%t)", what, id, act.verb(), rid, d, decided)
			case res.Results[i].Decided != nil:
				by := res.Results[i].Decided
				if by.Via == roster.ViaCLI {
					again++
				}
				if !decided || d.Action != by.Action || d.Actor != by.Actor || d.Interface != by.Via || by.Via == roster.ViaCLI && !wants(&act, rid, d) {
					t.Errorf("%s: act %d of the command line found request #%d decided (%s), but the store's decision is %+v (%t)", what, id, rid,
						res.Results[i].Error, d, decided)
				}
			}
		}
	}
	if found != adm.cliRuns {
		t.Errorf("%s: the command line decided %d times, the store holds %d of its acts", what, adm.cliRuns, found)
	}
	var b strings.Builder
	for _, via := range adminVias() {
		c := count[via]
		fmt.Fprintf(&b, "; %s: %d done, %d refused, %d unknown", via, c[actDone], c[actFailed], c[actUnknown])
	}
	t.Logf("%s: the admins' acts, by request named%s; %d tried again the other way; %d acts of the command line found their request decided by their own earlier run",
		what, b.String(), tried, again)
}
