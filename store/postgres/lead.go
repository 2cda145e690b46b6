package postgres

// Active and standby instances on one database (store.Leader).
//
// # The lead
//
// The lead is the session-level advisory lock of holdLockKey, the key Hold
// takes: one key per database, as one database serves one component
// domain. Lead takes it on a connection of its own (not the pool's), so
// that the lock lives exactly as long as that session:
//
//   - A standby waits for it on the server (pg_advisory_lock), in slices
//     of at most leaseWait (lock_timeout), saying between two slices that
//     it runs (its row in instances). The lock goes to a waiter as soon as
//     its holder lets go: when the active instance releases it, or its
//     session ends (its process died, its connection was cut, the server
//     ended it).
//   - The lead's session ends on the server once it has been idle for the
//     lease's timeout T (idle_session_timeout, PostgreSQL 14 or later), and
//     the holder pings it every T/3: a holder that stops (paused, its
//     network cut, its host gone) loses the lead at most T after its last
//     ping. The holder counts the lead lost (Lost, and its writes refused)
//     when a ping fails, or has not answered by T after the last one that
//     did was sent: never later than the server ends the session.
//
// # Fencing
//
// Once it has the lock, Lead bumps the epoch in the table lead, on the
// lead's connection, and the DB remembers it. Every write transaction of a
// DB that has led starts with lead_check(epoch) (see 0002_lead.sql), which
// fails with SQLSTATE RG001 (store.ErrFenced) unless the epoch is still its
// own, and holds the lead row FOR SHARE until the transaction ends. The
// bump is an UPDATE of that row, so:
//
//   - a write of the old active instance that passed the check commits (or
//     rolls back) before the bump does: the new active instance, which
//     replays the outbox and reads the state once Lead has returned, sees
//     it;
//   - a write whose check comes after the bump, or waits for it, reads the
//     new epoch and fails, writing nothing.
//
// A DB whose lease is lost or released refuses its writes at once, without
// asking the server, until it leads again. A DB that never led (the
// command line) writes unchecked: its queued acts and tokens go in whoever
// leads. A transaction left idle for T (the writer paused with a write
// open) is ended by the server (idle_in_transaction_session_timeout on
// every connection of the DB), so a bump waits for it at most that long.
//
// Hold and Lead take the same lock: while an instance is active, Hold
// fails with store.ErrHeld (the command line's "rostergate runs"); while
// only standbys wait, Hold succeeds, and the standbys wait for its release
// too (an import is not taken over half-way). A DB that holds Hold cannot
// Lead.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"rostergate/store"
)

const (
	// leaseWait is the longest a standby waits for the lock in one go
	// (lock_timeout on its connection); between two waits it says it runs.
	leaseWait = 5 * time.Second
	// seenEvery is how often an instance says it runs (instances.seen).
	seenEvery = 5 * time.Second
	// seenWithin is how recently an instance must have said it runs to be
	// listed by Instances.
	seenWithin = time.Minute
	// connectTimeout bounds a connection to the server for the lead.
	connectTimeout = 10 * time.Second
	// retryMax bounds the pause between two tries of a standby whose
	// connection failed (the server restarting, say).
	retryMax = 2 * time.Second
	// fencedCode is the SQLSTATE lead_check raises.
	fencedCode = "RG001"
	// checkLead is the first statement of a fenced write.
	checkLead = `SELECT lead_check($1)`
)

// fencedError is a write refused because another instance leads now; it
// matches store.ErrFenced (and the server's error, if it came from there).
type fencedError struct{ cause error }

func (e fencedError) Error() string {
	if e.cause != nil {
		return "postgres: fenced: " + e.cause.Error()
	}
	return "postgres: fenced: this instance's lead is lost or given up; nothing was written"
}

func (e fencedError) Unwrap() []error {
	if e.cause == nil {
		return []error{store.ErrFenced}
	}
	return []error{store.ErrFenced, e.cause}
}

// fenceErr turns the server's refusal of a check into a fencedError.
func fenceErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == fencedCode {
		return fencedError{cause: err}
	}
	return err
}

// fenceEpoch returns the epoch a write of db must check in its
// transaction, 0 if none (db never led), or an error matching
// store.ErrFenced if db's lead is lost or its time is up.
func (db *DB) fenceEpoch() (int64, error) {
	f := db.fence.Load()
	if f == 0 {
		return 0, nil
	}
	if db.serverFenceOnly {
		return max(f, -f), nil
	}
	if f < 0 {
		return 0, fencedError{}
	}
	if end := db.leaseEnd.Load(); end != 0 && mono() > end {
		return 0, fencedError{}
	}
	return f, nil
}

// write sends the statements queue queues in one batch, after the lead's
// check when db has led: one implicit transaction, one round trip. Its
// error matches store.ErrFenced when the check failed.
func (db *DB) write(ctx context.Context, queue func(b *pgx.Batch)) error {
	epoch, err := db.fenceEpoch()
	if err != nil {
		return err
	}
	var b pgx.Batch
	if epoch != 0 {
		b.Queue(checkLead, epoch)
	}
	queue(&b)
	return fenceErr(db.pool.SendBatch(ctx, &b).Close())
}

// checkTx runs the lead's check first in tx when db has led.
func (db *DB) checkTx(ctx context.Context, tx pgx.Tx) error {
	epoch, err := db.fenceEpoch()
	if err != nil || epoch == 0 {
		return err
	}
	_, err = tx.Exec(ctx, checkLead, epoch)
	return fenceErr(err)
}

// queueCheck queues the lead's check first in b when db has led.
func (db *DB) queueCheck(b *pgx.Batch) error {
	epoch, err := db.fenceEpoch()
	if err != nil || epoch == 0 {
		return err
	}
	b.Queue(checkLead, epoch)
	return nil
}

// The statements of the lead.
const (
	lockLead   = `SELECT pg_advisory_lock($1)`
	unlockLead = `SELECT pg_advisory_unlock($1)`
	// sayStandby and sayActive upsert the instance's row (the table is
	// emptied by a crash), on the lead's connection.
	sayStandby = `INSERT INTO instances (id, host, pid, started, seen, backend, active)
		VALUES ($1, $2, $3, $4, now(), pg_backend_pid(), false)
		ON CONFLICT (id) DO UPDATE SET seen = now(), backend = excluded.backend, active = false, since = NULL`
	sayActive = `INSERT INTO instances (id, host, pid, started, seen, backend, active, since)
		VALUES ($1, $2, $3, $4, now(), pg_backend_pid(), true, $5)
		ON CONFLICT (id) DO UPDATE SET seen = now(), backend = excluded.backend, active = true, since = excluded.since`
	bumpLead   = `UPDATE lead SET epoch = epoch + 1, instance = $1, since = now() WHERE id = 1 RETURNING epoch, since`
	unmarkLead = `UPDATE instances SET active = false, since = NULL WHERE active AND id <> $1`
	forget     = `DELETE FROM instances WHERE id = $1`
)

// Lead waits until self is the active instance, or ctx ends, and returns
// its lease. While it waits, self is listed as a standby. A zero ID, Host,
// PID or Started of self is filled in (ID from the other three).
//
// A failure to reach the server (it restarts, say) is retried, with pauses
// of at most 2 s; other errors (PostgreSQL older than 14, say) are
// returned. A DB leads once at a time, and not while it holds Hold.
func (db *DB) Lead(ctx context.Context, self store.Instance) (store.Lease, error) {
	self = fillInstance(self)
	db.mu.Lock()
	switch {
	case db.held != nil:
		db.mu.Unlock()
		return nil, errors.New("postgres: lead: this store is held (Hold): a running instance leads instead")
	case db.leading:
		db.mu.Unlock()
		return nil, errors.New("postgres: lead: this store leads, or waits to, already")
	}
	db.leading = true
	db.mu.Unlock()
	l, err := db.lead(ctx, self)
	db.mu.Lock()
	if err != nil {
		db.leading = false
	} else {
		db.lease = l
	}
	db.mu.Unlock()
	if err != nil {
		return nil, err
	}
	go l.run()
	return l, nil
}

func (db *DB) lead(ctx context.Context, self store.Instance) (*lease, error) {
	pause := 100 * time.Millisecond
	for {
		l, err := db.tryLead(ctx, self)
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil {
			db.forget(self.ID)
			return nil, fmt.Errorf("postgres: lead: %w", ctx.Err())
		}
		if !transient(err) {
			db.forget(self.ID)
			return nil, fmt.Errorf("postgres: lead: %w", err)
		}
		select {
		case <-ctx.Done():
			db.forget(self.ID)
			return nil, fmt.Errorf("postgres: lead: %w", ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, retryMax)
	}
}

// tryLead connects, waits for the lock and bumps the epoch; on an error
// its connection is closed (and the lock with it).
func (db *DB) tryLead(ctx context.Context, self store.Instance) (*lease, error) {
	c, err := db.leadConn(ctx)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			closeConn(c)
		}
	}()
	// Ended, ctx cancels the wait on the server, then breaks off.
	qctx, qcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer qcancel()
	stop := context.AfterFunc(ctx, func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.PgConn().CancelRequest(cctx)
		cancel()
		qcancel()
	})
	defer stop()

	for {
		// Two statements, not a batch (one transaction): the row is
		// written before the wait.
		sctx, cancel := context.WithTimeout(qctx, leaseWait+db.opts.LeaseTimeout)
		_, err := c.Exec(sctx, sayStandby, self.ID, self.Host, self.PID, ms(self.Started))
		if err == nil {
			_, err = c.Exec(sctx, lockLead, holdLockKey)
		}
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !isCode(err, "55P03") { // lock_not_available: another slice
			return nil, err
		}
	}
	// The lock is held: bump the epoch, mark self active. The bump waits
	// for the writes of the old active instance that passed their check.
	var (
		epoch int64
		since time.Time
	)
	sent := time.Now()
	for {
		sctx, cancel := context.WithTimeout(qctx, leaseWait+db.opts.LeaseTimeout)
		err := pgx.BeginFunc(sctx, c, func(tx pgx.Tx) error {
			if err := tx.QueryRow(sctx, bumpLead, self.ID).Scan(&epoch, &since); err != nil {
				return err
			}
			var b pgx.Batch
			b.Queue(unmarkLead, self.ID)
			b.Queue(sayActive, self.ID, self.Host, self.PID, ms(self.Started), since)
			return tx.SendBatch(sctx, &b).Close()
		})
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !isCode(err, "55P03") {
			return nil, err
		}
		sent = time.Now()
	}
	if !stop() {
		return nil, ctx.Err()
	}
	self.Active, self.Since = true, since
	l := &lease{
		db:      db,
		conn:    c,
		self:    self,
		epoch:   epoch,
		pid:     c.PgConn().PID(),
		lastOK:  sent,
		lost:    make(chan struct{}),
		done:    make(chan struct{}),
		release: make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	db.leaseEnd.Store(monoAt(sent.Add(db.opts.LeaseTimeout)))
	db.fence.Store(epoch)
	ok = true
	return l, nil
}

// leadConn connects for the lead: a session that the server ends once
// idle for the lease's timeout, whose lock waits last leaseWait at most.
func (db *DB) leadConn(ctx context.Context) (*pgx.Conn, error) {
	cfg := db.pool.Config().ConnConfig.Copy()
	millis := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	cfg.RuntimeParams["idle_session_timeout"] = millis(db.opts.LeaseTimeout)
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = millis(db.opts.LeaseTimeout)
	cfg.RuntimeParams["lock_timeout"] = millis(leaseWait)
	cfg.RuntimeParams["statement_timeout"] = "0"
	cfg.RuntimeParams["application_name"] = "rostergate lead"
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c, err := pgx.ConnectConfig(cctx, cfg)
	if isCode(err, "42704") { // undefined_object: idle_session_timeout
		return nil, fmt.Errorf("the lead needs PostgreSQL 14 or later (idle_session_timeout): %w", err)
	}
	return c, err
}

// forget deletes self's row, bounded: a standby that gives up waiting, or
// an active instance that gives up the lead, no longer runs as one.
func (db *DB) forget(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = db.pool.Exec(ctx, forget, id)
}

// transient reports whether err may pass on its own: the server out of
// reach, restarting, ending sessions, short of resources.
func transient(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return true // the network, a timeout, a closed connection
	}
	switch pe.Code[:2] {
	case "08", "40", "53", "57", "58":
		return true
	}
	return pe.Code == "55P03" || pe.Code == "25P03"
}

// isCode reports whether err is the server's error of this SQLSTATE.
func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// monoBase is the origin of mono: the lease's deadlines are kept on the
// monotonic clock, which a change of the wall clock does not move.
var monoBase = time.Now()

// mono returns the monotonic time now, monoAt that of t (from time.Now).
func mono() int64              { return int64(time.Since(monoBase)) }
func monoAt(t time.Time) int64 { return int64(t.Sub(monoBase)) }

// fillInstance fills in what self leaves out.
func fillInstance(self store.Instance) store.Instance {
	if self.Host == "" {
		self.Host, _ = os.Hostname()
	}
	if self.PID == 0 {
		self.PID = os.Getpid()
	}
	if self.Started.IsZero() {
		self.Started = time.Now()
	}
	if self.ID == "" {
		self.ID = fmt.Sprintf("%s/%d/%d", self.Host, self.PID, self.Started.UnixMilli())
	}
	return self
}

// lease is a held lead: its connection, pinged by run until released or
// lost.
type lease struct {
	db    *DB
	conn  *pgx.Conn // run's alone once Lead returned
	self  store.Instance
	epoch int64
	pid   uint32 // the server process of conn (tests end it)

	ctx    context.Context // cancelled by Release: ends a ping under way
	cancel context.CancelFunc

	lastOK time.Time // when the last ping that was answered was sent (run's)

	lost     chan struct{}
	lostOnce sync.Once
	release  chan struct{}
	relOnce  sync.Once
	done     chan struct{} // closed when run has returned

	mu     sync.Mutex
	frozen chan struct{} // tests: while set, run does nothing until it is closed
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

// Release gives the lead up: the DB's writes are refused from now on, the
// lock is unlocked and its connection closed. Again: a no-op.
func (l *lease) Release() {
	l.relOnce.Do(func() {
		l.fenceOff()
		close(l.release)
		l.cancel()
	})
	<-l.done
}

// fenceOff refuses the DB's writes from now on (until it leads again).
func (l *lease) fenceOff() {
	l.db.fence.CompareAndSwap(l.epoch, -l.epoch)
}

// run pings the lead's session every timeout/3 (every seenEvery, the ping
// says the instance runs), until Release or the lease is lost, then lets
// go of the lock and the DB's lead.
func (l *lease) run() {
	defer func() {
		released := l.ctx.Err() != nil
		l.fenceOff()
		db := l.db
		db.mu.Lock()
		if db.lease == l {
			db.lease, db.leading = nil, false
			db.leaseEnd.Store(0)
		}
		db.mu.Unlock()
		l.lostOnce.Do(func() { close(l.lost) })
		if released && !l.conn.IsClosed() {
			// Unlock first, so that a standby takes over before
			// Release returns, unless the connection is gone.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = l.conn.Exec(ctx, unlockLead, holdLockKey)
			cancel()
		}
		closeConn(l.conn) // the lock goes with the session
		if released {
			db.forget(l.self.ID)
		}
		close(l.done)
	}()
	timeout := l.db.opts.LeaseTimeout
	tick := time.NewTicker(timeout / 3)
	defer tick.Stop()
	lastSeen := time.Now()
	for {
		select {
		case <-l.release:
			return
		case <-tick.C:
		}
		l.waitThawed()
		end := l.lastOK.Add(timeout)
		if time.Now().After(end) {
			return
		}
		sent := time.Now()
		ctx, cancel := context.WithDeadline(l.ctx, end)
		var err error
		if sent.Sub(lastSeen) >= seenEvery {
			_, err = l.conn.Exec(ctx, sayActive, l.self.ID, l.self.Host, l.self.PID, ms(l.self.Started), l.self.Since)
			lastSeen = sent
		} else {
			err = l.conn.Ping(ctx)
		}
		cancel()
		if err != nil {
			return
		}
		l.lastOK = sent
		l.db.leaseEnd.Store(monoAt(sent.Add(timeout)))
	}
}

// freeze stops run where it is, as if the process were paused, until thaw.
func (l *lease) freeze() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frozen == nil {
		l.frozen = make(chan struct{})
	}
}

func (l *lease) thaw() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frozen != nil {
		close(l.frozen)
		l.frozen = nil
	}
}

func (l *lease) waitThawed() {
	l.mu.Lock()
	f := l.frozen
	l.mu.Unlock()
	if f != nil {
		<-f
	}
}

// Instances returns the instances that said they run within the last
// minute, the active one first (active only while its lead's session holds
// the lock), then by start.
func (db *DB) Instances(ctx context.Context) ([]store.Instance, error) {
	rows, err := db.pool.Query(ctx, `SELECT i.id, i.host, i.pid, i.started, i.seen, i.since,
			i.active AND EXISTS (SELECT 1 FROM pg_locks l
				WHERE l.locktype = 'advisory' AND l.granted AND l.pid = i.backend
					AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
					AND l.classid::bigint = $2 AND l.objid::bigint = $3 AND l.objsubid = 1) AS active
		FROM instances i WHERE i.seen > now() - make_interval(secs => $1)
		ORDER BY active DESC, i.started, i.id`,
		seenWithin.Seconds(), int64(uint64(holdLockKey)>>32), holdLockKey&0xffff_ffff)
	if err != nil {
		return nil, fmt.Errorf("postgres: instances: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Instance, error) {
		var in store.Instance
		var since *time.Time
		if err := r.Scan(&in.ID, &in.Host, &in.PID, &in.Started, &in.Seen, &since, &in.Active); err != nil {
			return in, err
		}
		in.Started, in.Seen = in.Started.UTC(), in.Seen.UTC()
		if in.Active && since != nil {
			in.Since = since.UTC()
		}
		return in, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: instances: %w", err)
	}
	return out, nil
}

var _ store.Leader = (*DB)(nil)
