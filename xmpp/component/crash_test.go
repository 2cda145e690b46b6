package component

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/engine"
	"rostergate/policy"
	"rostergate/store/sqlite"
)

// TestMain lets this test binary play rostergate itself in a child process,
// for the crash test.
func TestMain(m *testing.M) {
	if os.Getenv("ROSTERGATE_CRASH_CHILD") == "1" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}

// crashPolicy accepts good.example, rejects bad.example, holds the rest.
func crashPolicy() (*policy.Policy, error) {
	return policy.Compile(policy.Config{
		Default: policy.Review,
		Rules: []policy.Rule{
			{Domain: "good.example", Action: policy.Accept},
			{Domain: "bad.example", Action: policy.Reject},
		},
	})
}

func crashChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	db, err := sqlite.Open(ctx, os.Getenv("ROSTERGATE_DB"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	p, err := crashPolicy()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, _, _, err := newStack(testOpts{
		Options: Options{
			Server: os.Getenv("ROSTERGATE_SERVER"), Secret: "s3cret",
			Logger:     hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Info}),
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		},
		Domain:   "bots.localhost",
		Settings: engine.Settings{Entities: []engine.Entity{{Local: "helpdesk"}}, Policy: p},
		Store:    db,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// answers records what each contact was answered.
type answers struct {
	mu      sync.Mutex
	got     map[string]map[string]int // contact → presence type → count
	changed chan struct{}             // signalled (without blocking) on every answer
}

func newAnswers() *answers {
	return &answers{got: map[string]map[string]int{}, changed: make(chan struct{}, 1)}
}

func (a *answers) add(contact, typ string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.got[contact] == nil {
		a.got[contact] = map[string]int{}
	}
	a.got[contact][typ]++
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds, checking it again on every answer, for
// as long as answers keep coming: it gives up after idle without one. It
// reports whether cond holds.
func (a *answers) waitFor(cond func() bool, idle time.Duration) bool {
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for range 1_000_000 {
		if cond() {
			return true
		}
		select {
		case <-a.changed:
			timer.Reset(idle) // no stale expiry to drain since Go 1.23
		case <-timer.C:
			return cond()
		}
	}
	return cond()
}

func (a *answers) has(key, typ string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got[key][typ] > 0
}

func (a *answers) answered(contact string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.got[contact]
	return m["subscribed"] > 0 || m["unsubscribed"] > 0
}

// read records the answers on one stream until it ends.
func (a *answers) read(c *fakeConn) {
	d := xml.NewDecoder(c.r)
	for {
		tok, err := d.Token()
		if err != nil {
			return
		}
		se, ok := tok.(xml.StartElement)
		if !ok || (se.Name.Local != "presence" && se.Name.Local != "iq") {
			continue
		}
		var to, typ, id string
		for _, at := range se.Attr {
			switch at.Name.Local {
			case "to":
				to = at.Value
			case "type":
				typ = at.Value
			case "id":
				id = at.Value
			}
		}
		if se.Name.Local == "iq" {
			to = "iq:" + id // answers to our pings
		}
		a.add(to, typ)
	}
}

func contactOf(i int) string {
	domain := [...]string{"good.example", "bad.example", "held.example"}[i%3]
	return fmt.Sprintf("u%05d@%s", i, domain)
}

// Under a steady stream of requests, rostergate is killed with SIGKILL at
// random moments and restarted. Afterwards every answer matches the stored
// state, no contact got contradicting answers, every request is answered or
// held once (clients resend what got no answer), and the database is sound.
func TestCrashUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	srv := newFakeServer(t, "s3cret")
	dbPath := filepath.Join(t.TempDir(), "rg.db")
	var childLog syncBuffer
	child := func() *childProc {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ROSTERGATE_CRASH_CHILD=1", "ROSTERGATE_DB="+dbPath, "ROSTERGATE_SERVER="+srv.addr())
		cmd.Stderr = &childLog
		cmd.WaitDelay = 10 * time.Second // bounds Wait should the log pipe stay open
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &childProc{cmd: cmd}
		// However the test ends (a t.Fatal included), no child is left
		// running: each is killed and reaped.
		t.Cleanup(func() {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			_ = p.wait()
		})
		return p
	}
	ans := newAnswers()
	var mu sync.Mutex
	sent := 0 // contacts 0..sent-1 have been asked at least once

	// serve pumps requests into one stream until it dies.
	serve := func(c *fakeConn, from, to int) {
		go ans.read(c)
		for i := from; i < to; i++ {
			if _, err := io.WriteString(c, "<presence from='"+contactOf(i)+"' to='helpdesk@bots.localhost' type='subscribe'/>"); err != nil {
				return
			}
			if i%25 == 0 {
				time.Sleep(time.Millisecond) // a steady rate, not one burst
			}
		}
	}

	const kills = 24
	deadline := time.Now().Add(60 * time.Second)
	for k := 0; k < kills && time.Now().Before(deadline); k++ {
		p := child()
		c := srv.next(t)
		mu.Lock()
		from := sent
		sent += 400
		to := sent
		mu.Unlock()
		go serve(c, from, to)
		time.Sleep(time.Duration(20+rand.IntN(120)) * time.Millisecond) // a random moment to kill at
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.wait()
		c.Close()
	}
	total := sent

	// The last run: it replays its outbox; clients resend what got no answer.
	p := child()
	c := srv.next(t)
	go ans.read(c)
	unanswered := func() []string {
		var out []string
		for i := range total {
			if i%3 != 2 && !ans.answered(contactOf(i)) {
				out = append(out, contactOf(i))
			}
		}
		return out
	}
	// Each round resends what got no answer, then waits for the answers
	// (for as long as they keep coming).
	for round := 0; round < 3; round++ {
		left := unanswered()
		if len(left) == 0 {
			break
		}
		var b strings.Builder
		for _, ct := range left {
			b.WriteString("<presence from='" + ct + "' to='helpdesk@bots.localhost' type='subscribe'/>")
		}
		if _, err := io.WriteString(c, b.String()); err != nil {
			t.Fatalf("resending: %v", err)
		}
		ans.waitFor(func() bool {
			for _, ct := range left {
				if !ans.answered(ct) {
					return false
				}
			}
			return true
		}, 10*time.Second)
	}
	// Held requests too: a resend of those is a duplicate and changes nothing.
	var b strings.Builder
	for i := 2; i < total; i += 3 {
		b.WriteString("<presence from='" + contactOf(i) + "' to='helpdesk@bots.localhost' type='subscribe'/>")
	}
	b.WriteString(ping) // answered after everything before it
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatalf("resending: %v", err)
	}
	if !ans.waitFor(func() bool { return ans.has("iq:p1", "result") }, 10*time.Second) {
		t.Error("the last run did not answer the final ping")
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil {
		t.Errorf("last run exited: %v", err)
	}
	c.Close()

	db, err := sqlite.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	reqs, err := db.Requests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]int{}
	for _, r := range reqs {
		held[r.Contact]++
	}
	bad := 0
	for i := range total {
		ct := contactOf(i)
		ans.mu.Lock()
		got := ans.got[ct]
		ans.mu.Unlock()
		it, gerr := db.Get(context.Background(), "helpdesk", ct)
		switch i % 3 {
		case 0: // accepted
			if got["unsubscribed"] > 0 || got["subscribed"] == 0 || gerr != nil || it.Sub != "from" {
				bad++
				if bad < 5 {
					t.Errorf("%s: answers %v, item %+v %v; want subscribed and from", ct, got, it, gerr)
				}
			}
		case 1: // rejected
			if got["subscribed"] > 0 || got["unsubscribed"] == 0 || gerr == nil {
				bad++
				if bad < 5 {
					t.Errorf("%s: answers %v, item %+v; want unsubscribed and no item", ct, got, it)
				}
			}
		case 2: // held
			if len(got) > 0 || held[ct] != 1 || gerr != nil || !it.PendingIn {
				bad++
				if bad < 5 {
					t.Errorf("%s: answers %v, held %d times, item %+v %v; want held once, unanswered", ct, got, held[ct], it, gerr)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d contacts inconsistent", bad, total)
	}
	log := childLog.String()
	t.Logf("%d requests over %d kills (SIGKILL), all consistent; outbox replays after a kill: %d; decisions: %d",
		total, kills, strings.Count(log, "outbox replayed"), strings.Count(log, "engine: decision: "))
	if t.Failed() {
		t.Logf("rostergate's log:\n%s", log)
	}
}

// childProc is a rostergate child process, waited for once.
type childProc struct {
	cmd  *exec.Cmd
	once sync.Once
	err  error
}

// wait reaps the child (once; later calls return the same result).
func (p *childProc) wait() error {
	p.once.Do(func() { p.err = p.cmd.Wait() })
	return p.err
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
