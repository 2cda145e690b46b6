package component

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
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
			Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
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
	mu  sync.Mutex
	got map[string]map[string]int // contact → presence type → count
}

func (a *answers) add(contact, typ string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.got[contact] == nil {
		a.got[contact] = map[string]int{}
	}
	a.got[contact][typ]++
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
	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ROSTERGATE_CRASH_CHILD=1", "ROSTERGATE_DB="+dbPath, "ROSTERGATE_SERVER="+srv.addr())
		cmd.Stderr = &childLog
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	ans := &answers{got: map[string]map[string]int{}}
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
		cmd := child()
		c := srv.next(t)
		mu.Lock()
		from := sent
		sent += 400
		to := sent
		mu.Unlock()
		go serve(c, from, to)
		time.Sleep(time.Duration(20+rand.IntN(120)) * time.Millisecond) // a random moment to kill at
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		c.Close()
	}
	total := sent

	// The last run: it replays its outbox; clients resend what got no answer.
	cmd := child()
	c := srv.next(t)
	go ans.read(c)
	resend := func() int {
		n := 0
		var b strings.Builder
		for i := range total {
			if i%3 != 2 && !ans.answered(contactOf(i)) {
				b.WriteString("<presence from='" + contactOf(i) + "' to='helpdesk@bots.localhost' type='subscribe'/>")
				n++
			}
		}
		io.WriteString(c, b.String())
		return n
	}
	for round := 0; round < 50; round++ {
		if resend() == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond) // answers arrive on the stream; polled, bounded
	}
	// Held requests too: a resend of those is a duplicate and changes nothing.
	var b strings.Builder
	for i := 2; i < total; i += 3 {
		b.WriteString("<presence from='" + contactOf(i) + "' to='helpdesk@bots.localhost' type='subscribe'/>")
	}
	b.WriteString(ping) // answered after everything before it
	io.WriteString(c, b.String())
	for wait := 0; wait < 200 && !ans.has("iq:p1", "result"); wait++ {
		time.Sleep(50 * time.Millisecond) // polled, bounded: 10 s
	}
	if !ans.has("iq:p1", "result") {
		t.Error("the last run did not answer the final ping within 10 s")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
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
		total, kills, strings.Count(log, "outbox replayed"), strings.Count(log, "msg=decision"))
	if t.Failed() {
		t.Logf("rostergate's log:\n%s", log)
	}
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
