package placement

import (
	"context"
	"errors"
	"time"

	"rostergate/engine"
	"rostergate/roster"
)

// GrantWait is how long Run waits, after the stream is up, for the
// server's advertisement of privileges before it takes none to be coming:
// Prosody sends it right after the handshake, ejabberd a moment later.
const GrantWait = 3 * time.Second

// GrantAction is the action of the audit event that records a stream's
// grant (kind "privilege"); its rule is the method in force: "privileged
// roster" or "subscription fallback".
const GrantAction = "grant"

// Runner is what Run needs of the engine besides Engine.
type Runner interface {
	Engine
	Reloaded() <-chan struct{}
}

// Run reconciles once the stream's grant is known (advertised, or
// GrantWait passed), then every Interval and after each reload, until ctx
// ends. advertised is closed when the server's advertisement has arrived.
// What the stream was granted is logged and audited once (kind
// "privilege"), when any entity has place_in.
func (p *Placer) Run(ctx context.Context, eng Runner, advertised <-chan struct{}) {
	t := time.NewTimer(GrantWait)
	select {
	case <-ctx.Done():
		t.Stop()
		return
	case <-advertised:
	case <-t.C:
	}
	t.Stop()
	told := false
	for {
		reloaded := eng.Reloaded()
		if p.Wanted() {
			if !told {
				told = true
				g := p.Grant()
				method := MethodFallback
				if g.CanSet() {
					method = MethodPrivileged
				}
				p.log.Info("placing entities in users' rosters", "method", method, "grant", g.String())
				ev := roster.Event{Kind: "privilege", Action: GrantAction, Rule: method, Actor: g.From, Interface: roster.ViaStream, Detail: g.String()}
				if ev.Actor == "" {
					ev.Actor = Actor
				}
				if err := eng.Audit(ctx, ev); err != nil && ctx.Err() == nil {
					p.log.Warn("recording the grant", "err", err)
				}
			}
			sum, err := p.Reconcile(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, engine.ErrNotConnected):
				return // the next stream starts again
			case err != nil:
				p.log.Error("placing entities", "err", err)
			case (sum.Placed+sum.Asked+sum.Accepted+sum.Failed+sum.Removed+sum.Declined > 0 || len(sum.Unsure) > 0):
				p.log.Info("placements reconciled", "placed", sum.Placed, "asked", sum.Asked, "accepted", sum.Accepted,
					"failed", sum.Failed, "removed", sum.Removed, "declined", sum.Declined, "unsure", sum.Unsure)
			}
		}
		t := time.NewTimer(eng.PlacementSettings().Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-reloaded:
		case <-t.C:
		}
		t.Stop()
	}
}
