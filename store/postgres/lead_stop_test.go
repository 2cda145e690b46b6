package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"rostergate/internal/pgtest"
	"rostergate/store"
)

// TestLeadPaused: an active instance that stops pinging (paused) loses its
// session on the server after the lease's timeout; the standby takes
// over; the old one, woken, finds its lead lost and its writes fenced.
func TestLeadPaused(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	a, b := openDSN(t, dsn), openDSN(t, dsn)
	ctx := t.Context()
	la := mustLead(t, a, "a")
	ch := goLead(t, b, "b")
	la.freeze()
	start := time.Now()
	lb := await(t, ch)
	t.Logf("paused: the standby leads after %v (lease timeout %v)", time.Since(start), DefaultLeaseTimeout)
	if _, err := a.Commit(ctx, itemBatch("paused@x")); !isFenced(err) {
		t.Errorf("Commit of the paused one, its lease's time up: %v, want store.ErrFenced", err)
	}
	select {
	case <-la.Lost():
		t.Error("Lost closed while paused")
	default:
	}
	woke := time.Now()
	la.thaw()
	lost := awaitLost(t, la)
	t.Logf("woken: Lost after %v", lost.Sub(woke))
	a.serverFenceOnly = true
	if _, err := a.Commit(ctx, itemBatch("paused@x")); !isFenced(err) || !isCode(err, fencedCode) {
		t.Errorf("Commit of the woken one, checked by the server: %v, want store.ErrFenced from the server", err)
	}
	if _, err := a.Get(ctx, "e", "paused@x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the fenced commit's item: %v", err)
	}
	if _, err := b.Commit(ctx, itemBatch("b@x")); err != nil {
		t.Errorf("the new active one's Commit: %v", err)
	}
	lb.Release()
}

// TestLeadRestart: PostgreSQL restarts; the active one loses the lead,
// and leads again once the server is back; its writes in between are
// refused.
func TestLeadRestart(t *testing.T) {
	s := pgtest.StartPrivate(t)
	dsn := s.NewDatabase(t)
	a := openDSN(t, dsn)
	ctx := t.Context()
	la := mustLead(t, a, "a")
	start := time.Now()
	s.Restart(t)
	lost := awaitLost(t, la)
	t.Logf("restart: Lost %v after the restart began", lost.Sub(start))
	if _, err := a.Commit(ctx, itemBatch("lost@x")); !isFenced(err) {
		t.Errorf("Commit with the lead lost: %v, want store.ErrFenced", err)
	}
	start = time.Now()
	la2 := mustLead(t, a, "a")
	t.Logf("restart: led again in %v", time.Since(start))
	if la2.epoch <= la.epoch {
		t.Errorf("epoch %d after %d", la2.epoch, la.epoch)
	}
	if _, err := a.Commit(ctx, itemBatch("again@x")); err != nil {
		t.Errorf("Commit after leading again: %v", err)
	}
	ins, err := a.Instances(ctx)
	if err != nil || len(ins) != 1 || !ins[0].Active {
		t.Errorf("Instances = %+v, %v", ins, err)
	}
	la2.Release()
}

// TestLeadRace: the old active one commits as fast as it can while the
// standby takes over, again and again; the server's check alone fences it.
// What the new one sees once Lead has returned is every commit the old
// one made: none of the old one's lands after that, and each that
// returned success is there.
func TestLeadRace(t *testing.T) {
	s := pgtest.Start(t)
	dsn := s.NewDatabase(t)
	dbs := []*DB{openDSN(t, dsn), openDSN(t, dsn)}
	for _, db := range dbs {
		db.serverFenceOnly = true
	}
	admin := connect(t, s.DSN("postgres"))
	ctx := t.Context()
	count := func(db *DB, actor string) (n, maxID int64) {
		t.Helper()
		if err := db.pool.QueryRow(ctx, `SELECT count(*), coalesce(max(id), 0) FROM audit WHERE actor = $1`, actor).Scan(&n, &maxID); err != nil {
			t.Fatal(err)
		}
		return n, maxID
	}
	cur := mustLead(t, dbs[0], "i0")
	var (
		took  time.Duration
		total int64
	)
	const rounds = 50
	for i := range rounds {
		old, next := dbs[i%2], dbs[(i+1)%2]
		actor := fmt.Sprintf("round%d", i)
		type result struct {
			ok  int64
			err error
		}
		done := make(chan result, 1)
		first := make(chan struct{})
		go func() {
			var r result
			for try := 0; try < 100_000; try++ {
				b := itemBatch(fmt.Sprintf("c%d@x", try%50))
				b.Changes[0].Audit.Actor = actor
				if _, err := old.Commit(ctx, b); err != nil {
					r.err = err
					break
				}
				if r.ok++; r.ok == 1 {
					close(first)
				}
			}
			done <- r
		}()
		select {
		case <-first:
		case r := <-done:
			t.Fatalf("round %d: the old one's commits: %v", i, r.err)
		}
		ch := goLead(t, next, fmt.Sprintf("i%d", (i+1)%2))
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		start := time.Now()
		terminate(t, admin, cur.pid)
		l := await(t, ch)
		took += time.Since(start)
		seen, seenMax := count(next, actor)
		var r result
		select {
		case r = <-done:
		case <-time.After(bound):
			t.Fatalf("round %d: the old one's commits go on", i)
		}
		if !isCode(r.err, fencedCode) {
			t.Fatalf("round %d: the old one's commits ended with %v, want the server's fence", i, r.err)
		}
		n, maxID := count(next, actor)
		if n != seen || n != r.ok || maxID != seenMax {
			t.Fatalf("round %d: the old one committed %d (success returned), the new one saw %d once it led, %d there now (max id %d, then %d)",
				i, r.ok, seen, n, seenMax, maxID)
		}
		total += r.ok
		b := itemBatch("new@x")
		b.Changes[0].Audit.Actor = "new" + actor
		if _, err := next.Commit(ctx, b); err != nil {
			t.Fatalf("round %d: the new one's Commit: %v", i, err)
		}
		if b.Changes[0].Audit.ID <= maxID {
			t.Fatalf("round %d: the new one's first audit id %d, not after the old one's %d", i, b.Changes[0].Audit.ID, maxID)
		}
		cur.Release()
		cur = l
	}
	t.Logf("%d takeovers, the old one committing all along (%d commits in all); terminate to Lead: %v on average", rounds, total, took/rounds)
}

// childEnv, set to a DSN, makes TestLeadProcess the child that leads.
const childEnv = "ROSTERGATE_TEST_LEAD_CHILD"

// leadChild leads on dsn and commits every 20 ms, saying so on stdout,
// until a commit is fenced; then it waits for Lost and exits.
func leadChild(dsn string) {
	ctx := context.Background()
	db, err := Open(ctx, dsn)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	l, err := db.Lead(ctx, store.Instance{ID: "child"})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("leading")
	for i := 0; i < 100_000; i++ {
		b := itemBatch(fmt.Sprintf("child%d@x", i))
		b.Changes[0].Audit.Actor = "child"
		_, err := db.Commit(ctx, b)
		switch {
		case isFenced(err):
			fmt.Println("fenced")
			select {
			case <-l.Lost():
				fmt.Println("lost")
				os.Exit(0)
			case <-time.After(bound):
				fmt.Println("error: Lost not closed")
				os.Exit(1)
			}
		case err != nil:
			fmt.Println("commit error:", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	os.Exit(1)
}

// startChild starts the test binary as a child that leads, and returns it
// with its lines of output, once it leads.
func startChild(t *testing.T, dsn string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLeadProcess$")
	cmd.Env = append(os.Environ(), childEnv+"="+dsn)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect(t, lines, "leading")
	return cmd, lines
}

// expect reads the child's lines, bounded, until want (failing on an
// error line).
func expect(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	deadline := time.After(bound)
	for {
		select {
		case line, ok := <-lines:
			switch {
			case !ok:
				t.Fatalf("the child ended before %q", want)
			case line == want:
				return
			case strings.HasPrefix(line, "error:"):
				t.Fatalf("the child: %s", line)
			}
			t.Logf("the child: %s", line)
		case <-deadline:
			t.Fatalf("the child did not say %q", want)
		}
	}
}

// TestLeadProcess: an active instance in a process of its own, committing
// all along, is killed (SIGKILL), or paused (SIGSTOP) past its lease and
// woken: the standby takes over; the old one's commits stop where the new
// one found them.
func TestLeadProcess(t *testing.T) {
	if dsn := os.Getenv(childEnv); dsn != "" {
		leadChild(dsn)
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("signals to a child process: Linux only here")
	}
	children := func(db *DB) (n, maxID int64) {
		t.Helper()
		if err := db.pool.QueryRow(t.Context(), `SELECT count(*), coalesce(max(id), 0) FROM audit WHERE actor = 'child'`).Scan(&n, &maxID); err != nil {
			t.Fatal(err)
		}
		return n, maxID
	}
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		t.Run(sig.String(), func(t *testing.T) {
			dsn := pgtest.Start(t).NewDatabase(t)
			b := openDSN(t, dsn)
			ctx := t.Context()
			cmd, lines := startChild(t, dsn)
			waitUntil(t, "the child commits", func() bool { n, _ := children(b); return n >= 3 })
			ch := goLead(t, b, "b")
			waitUntil(t, "b waiting", func() bool {
				ins, err := b.Instances(ctx)
				return err == nil && len(ins) == 2
			})
			start := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			lb := await(t, ch)
			t.Logf("%v of the active one: the standby leads after %v", sig, time.Since(start))
			seen, seenMax := children(b)
			first := itemBatch("b@x")
			if _, err := b.Commit(ctx, first); err != nil {
				t.Fatalf("the new active one's Commit: %v", err)
			}
			if sig == syscall.SIGSTOP {
				if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
					t.Fatal(err)
				}
				expect(t, lines, "fenced")
				expect(t, lines, "lost")
			}
			if err := cmd.Wait(); sig == syscall.SIGSTOP && err != nil {
				t.Errorf("the child: %v", err)
			}
			if n, maxID := children(b); n != seen || maxID != seenMax || maxID >= first.Changes[0].Audit.ID {
				t.Errorf("the old one's commits: %d (max id %d) once the new one led, %d (max id %d) in the end; the new one's first id %d",
					seen, seenMax, n, maxID, first.Changes[0].Audit.ID)
			}
			lb.Release()
		})
	}
}
