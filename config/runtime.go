package config

import (
	"rostergate/engine"
	"rostergate/policy"
)

// Settings returns the parts of the config a reload may change, as the
// decision engine takes them: the one place the config becomes runtime
// settings.
func (c *Config) Settings() engine.Settings {
	p := c.Compiled()
	s := engine.Settings{
		Policy: p,
		// JIDs that are not an [[entity]] are online when the policy lets
		// users subscribe to them.
		UnknownOnline: p.UnknownEntity() == policy.Accept || p.UnknownEntity() == policy.Review,
		Admins:        c.Admin.JIDs,
		ReviewTTL:     c.Policy.ReviewTTL.Duration,
		Directory:     c.directoryConfig(),
		Placement:     engine.Placement{Interval: c.Placement.Interval.Duration, ResendAfter: c.Placement.ResendAfter.Duration},
		Limits: engine.Limits{
			ContactRate:         c.Limits.ContactRate,
			DomainRate:          c.Limits.DomainRate,
			MaxPendingPerDomain: c.Limits.MaxPendingPerDomain,
			MaxPending:          c.Limits.MaxPending,
			Action:              policy.Action(c.Limits.Action),
		},
	}
	for _, e := range c.Entities {
		s.Entities = append(s.Entities, engine.Entity{Local: e.Localpart(), Name: e.Name, Nick: e.Nick, Show: e.Show, Status: e.Status,
			AutoReply: e.AutoReply, AcceptMessages: e.AcceptMessages, Avatar: e.AvatarData, AvatarType: e.AvatarType,
			Webhook: e.Webhook != "", SendTo: e.SendTo, PlaceIn: e.PlaceIn})
	}
	return s
}

// RestartNeeded reports whether going from c to next changes what only a
// restart puts in force: the [component] and [storage] sections and
// [limits] max_stanza_bytes, [http] listen and its TLS files, and [log]
// format.
func (c *Config) RestartNeeded(next *Config) bool {
	a, b := c.Component, next.Component
	return a.Domain != b.Domain || a.Server != b.Server || a.Secret != b.Secret || a.Resource != b.Resource ||
		a.Keepalive != b.Keepalive || c.Storage.Path != next.Storage.Path || c.Limits.MaxStanzaBytes != next.Limits.MaxStanzaBytes ||
		c.HTTP.Listen != next.HTTP.Listen || c.HTTP.TLSCert != next.HTTP.TLSCert || c.HTTP.TLSKey != next.HTTP.TLSKey ||
		c.Log.Format != next.Log.Format
}
