package adminui

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"rostergate/roster"
	"rostergate/xmpp/stanza"
	"slices"
	"strconv"
	"strings"

	"mellium.im/xmpp/form"
)

const (
	nsStanzas   = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
	nsDiscoItem = "http://jabber.org/protocol/disco#items"

	// maxRaw bounds the command element Execute accepts.
	maxRaw = 256 << 10
	// maxOptions bounds the requests listed in one form.
	maxOptions = 250
)

// Error is an IQ error to send instead of a result.
type Error struct {
	Type      string // "cancel", "modify", …
	Condition string // RFC 6120 defined condition, e.g. "item-not-found", "bad-request"
	Specific  string // optional XEP-0050 application condition element name, e.g. "bad-sessionid", "malformed-action" (namespace NSCommands)
	Text      string
}

func (e *Error) Error() string {
	s := "adminui: " + e.Condition
	if e.Specific != "" {
		s += " (" + e.Specific + ")"
	}
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// XML returns the <error/> element: the defined condition, the text if any,
// then the XEP-0050 condition if any (the order of RFC 6120 §8.3.2).
func (e *Error) XML() string {
	typ := e.Type
	if !isName(typ) {
		typ = "cancel"
	}
	cond := e.Condition
	if !isName(cond) {
		cond = "undefined-condition"
	}
	var b strings.Builder
	b.WriteString("<error type='" + typ + "'>")
	b.WriteString("<" + cond + " xmlns='" + nsStanzas + "'/>")
	if e.Text != "" {
		b.WriteString("<text xmlns='" + nsStanzas + "' xml:lang='en'>" + escText(e.Text) + "</text>")
	}
	if isName(e.Specific) {
		b.WriteString("<" + e.Specific + " xmlns='" + NSCommands + "'/>")
	}
	b.WriteString("</error>")
	return b.String()
}

// isName reports whether s is a non-empty run of [a-z0-9-] (every condition
// and error type name is one).
func isName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

func badRequest(specific, text string) *Error {
	return &Error{Type: "modify", Condition: "bad-request", Specific: specific, Text: text}
}

func internalError(err error) *Error {
	return &Error{Type: "wait", Condition: "internal-server-error", Text: err.Error()}
}

// esc escapes s for XML text or a quoted attribute value; characters XML
// cannot carry become U+FFFD.
func esc(s string) string {
	var b bytes.Buffer
	stanza.Esc(&b, s)
	return b.String()
}

// escText is esc for element text, where line breaks can stay literal.
func escText(s string) string {
	return strings.ReplaceAll(esc(s), "&#xA;", "\n")
}

// DiscoItems returns the payload of a disco#items result for node
// NSCommands: one item per command.
func (h *Handler) DiscoItems() string {
	domain := esc(h.ops.Domain())
	var b strings.Builder
	b.WriteString("<query xmlns='" + nsDiscoItem + "' node='" + NSCommands + "'>")
	for _, c := range commands {
		b.WriteString("<item jid='" + domain + "' node='" + esc(c.Node) + "' name='" + esc(c.Name) + "'/>")
	}
	b.WriteString("</query>")
	return b.String()
}

// DiscoInfo returns the payload of a disco#info result for one command node,
// ok=false if there is no such node.
func (h *Handler) DiscoInfo(node string) (payload string, ok bool) {
	name, ok := commandName(node)
	if !ok {
		return "", false
	}
	return "<query xmlns='" + nsDiscoInfo + "' node='" + esc(node) + "'>" +
		"<identity category='automation' type='command-node' name='" + esc(name) + "'/>" +
		"<feature var='" + NSCommands + "'/>" +
		"<feature var='" + form.NS + "'/>" +
		"</query>", true
}

// request is a parsed <command/> element.
type request struct {
	node, sessionID, action string
	form                    *form.Data // the first jabber:x:data child, if any
	formType                string     // its type attribute
}

var errNotCommand = errors.New("not a command element")

// parseCommand parses a <command xmlns=NSCommands/> element.
func parseCommand(raw []byte) (request, error) {
	var req request
	d := xml.NewDecoder(bytes.NewReader(raw))
	var start xml.StartElement
	for {
		tok, err := d.Token()
		if err != nil {
			if err == io.EOF {
				return req, errNotCommand
			}
			return req, err
		}
		if s, ok := tok.(xml.StartElement); ok {
			start = s
			break
		}
	}
	if start.Name.Local != "command" || (start.Name.Space != NSCommands && start.Name.Space != "") {
		return req, errNotCommand
	}
	for _, a := range start.Attr {
		if a.Name.Space != "" {
			continue
		}
		switch a.Name.Local {
		case "node":
			req.node = a.Value
		case "sessionid":
			req.sessionID = a.Value
		case "action":
			req.action = a.Value
		}
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return req, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return req, nil // the end of <command/>
		case xml.StartElement:
			if t.Name.Space != form.NS || t.Name.Local != "x" || req.form != nil {
				if err := d.Skip(); err != nil {
					return req, err
				}
				continue
			}
			for _, a := range t.Attr {
				if a.Name.Space == "" && a.Name.Local == "type" {
					req.formType = a.Value
				}
			}
			data := &form.Data{}
			if err := data.UnmarshalXML(d, t); err != nil {
				return req, fmt.Errorf("data form: %w", err)
			}
			req.form = data
		}
	}
}

// reply is a <command/> result.
type reply struct {
	node, sessionID, status string
	actions                 bool // <actions execute='complete'><complete/></actions>
	noteType, note          string
	form                    *form.Data
}

func (r reply) String() string {
	var b strings.Builder
	b.WriteString("<command xmlns='" + NSCommands + "' node='" + esc(r.node) + "'")
	if r.sessionID != "" {
		b.WriteString(" sessionid='" + esc(r.sessionID) + "'")
	}
	b.WriteString(" status='" + r.status + "'>")
	if r.actions {
		b.WriteString("<actions execute='complete'><complete/></actions>")
	}
	if r.note != "" {
		b.WriteString("<note type='" + r.noteType + "'>" + escText(r.note) + "</note>")
	}
	if r.form != nil {
		if x, err := xml.Marshal(r.form); err == nil {
			b.Write(x)
		}
	}
	b.WriteString("</command>")
	return b.String()
}

// noteType is info when every one of n things succeeded, error when none
// did, warn otherwise.
func noteType(ok, n int) string {
	switch {
	case ok == n:
		return "info"
	case ok == 0:
		return "error"
	default:
		return "warn"
	}
}

// Execute handles the payload of an <iq type='set'> to the domain: raw is the
// <command xmlns=NSCommands …>…</command> element as received. It returns the
// payload of the IQ result (a <command> element), or a non-nil *Error to send
// as the IQ error instead.
func (h *Handler) Execute(ctx context.Context, actor string, raw []byte) (payload string, err *Error) {
	if len(raw) > maxRaw {
		return "", badRequest("", "command too large")
	}
	req, perr := parseCommand(raw)
	if perr != nil {
		if perr == errNotCommand {
			return "", badRequest("", "expected a <command xmlns='"+NSCommands+"'/> element")
		}
		return "", badRequest("bad-payload", "malformed command: "+perr.Error())
	}
	switch req.action {
	case "", "execute", "complete", "cancel", "next", "prev":
	default:
		return "", badRequest("malformed-action", "unknown action "+strconv.Quote(req.action))
	}
	if _, ok := commandName(req.node); !ok {
		return "", &Error{Type: "cancel", Condition: "item-not-found", Text: "no command " + strconv.Quote(req.node)}
	}

	if req.sessionID == "" {
		switch req.action {
		case "", "execute":
			return h.start(ctx, actor, req.node)
		case "cancel":
			return reply{node: req.node, sessionID: newSessionID(), status: "canceled"}.String(), nil
		default:
			return "", badRequest("bad-action", "action "+strconv.Quote(req.action)+" needs a session; execute the command first")
		}
	}

	s := h.session(req.sessionID)
	if s == nil || s.actor != actor {
		return "", badRequest("bad-sessionid", "unknown or expired session")
	}
	if s.node != req.node {
		return "", badRequest("", "session "+req.sessionID+" is for command "+strconv.Quote(s.node))
	}
	if req.action == "cancel" || (req.form != nil && req.formType == string(form.TypeCancel)) {
		if !h.claim(s) {
			return "", badRequest("bad-sessionid", "unknown or expired session")
		}
		return reply{node: s.node, sessionID: s.id, status: "canceled"}.String(), nil
	}
	if req.action == "next" || req.action == "prev" {
		return "", badRequest("bad-action", "action "+strconv.Quote(req.action)+" is not allowed here; use complete")
	}
	if req.form == nil {
		return "", badRequest("bad-payload", "a submitted data form is needed")
	}
	if req.formType != string(form.TypeSubmit) {
		return "", badRequest("bad-payload", "the data form must be of type submit, not "+strconv.Quote(req.formType))
	}
	if !h.claim(s) {
		return "", badRequest("bad-sessionid", "unknown or expired session")
	}
	r := h.complete(ctx, s, req.form)
	r.node, r.sessionID, r.status = s.node, s.id, "completed"
	return r.String(), nil
}

// start answers the first request of a command: its form, or, for a command
// with nothing to act on, its completion.
func (h *Handler) start(ctx context.Context, actor, node string) (string, *Error) {
	var f *form.Data
	var allow, deny []string
	switch node {
	case nodePending, nodeApprove, nodeReject:
		reqs, err := h.ops.Pending(ctx)
		if err != nil {
			return "", internalError(err)
		}
		if len(reqs) == 0 {
			return reply{node: node, sessionID: newSessionID(), status: "completed", noteType: "info", note: "No pending requests"}.String(), nil
		}
		f = h.requestsForm(node, reqs)
	case nodeExplain:
		f = form.New(
			form.Title("Explain a decision"),
			form.Instructions("What would the policy do if this contact asked to subscribe to this entity?"),
			form.JID("contact", form.Label("Contact (bare JID)"), form.Required),
			h.entityField(),
		)
	case nodeRoster:
		f = form.New(
			form.Title("Roster of an entity"),
			h.entityField(),
		)
	case nodeLists:
		var err error
		allow, deny, err = h.ops.Lists(ctx)
		if err != nil {
			return "", internalError(err)
		}
		f = form.New(
			form.Title("Allow and deny lists"),
			form.Instructions("One pattern per line. Submitting replaces the lists: lines you add are added, lines you delete are removed."),
			textMulti("allow", "Allow list", allow),
			textMulti("deny", "Deny list", deny),
		)
	}
	s := h.newSession(actor, node)
	s.allow, s.deny = allow, deny // s is not shared until the client answers
	return reply{node: node, sessionID: s.id, status: "executing", actions: true, form: f}.String(), nil
}

func textMulti(id, label string, lines []string) form.Field {
	opts := []form.Option{form.Label(label)}
	for _, l := range lines {
		opts = append(opts, form.Value(l))
	}
	return form.TextMulti(id, opts...)
}

// entityField is a list-single "entity" of the configured entities (values
// are their JIDs), the first one preselected.
func (h *Handler) entityField() form.Field {
	domain := h.ops.Domain()
	opts := []form.Option{form.Label("Entity"), form.Required}
	for i, e := range h.ops.Entities() {
		j := roster.EntityJID(domain, e)
		if i == 0 {
			opts = append(opts, form.Value(j))
		}
		opts = append(opts, form.ListItem(j, j))
	}
	return form.List("entity", opts...)
}

// requestsForm lists the pending requests: fields approve and reject for
// node pending, ids for approve and reject.
func (h *Handler) requestsForm(node string, reqs []roster.Request) *form.Data {
	domain := h.ops.Domain()
	now := h.now()
	n := len(reqs)
	if len(reqs) > maxOptions {
		reqs = reqs[:maxOptions]
	}
	var items []form.Option
	var labels []string
	for _, r := range reqs {
		label := fmt.Sprintf("#%d %s → %s %s", r.ID, r.Contact, entityShort(domain, r.Entity), requestDetail(now, r))
		items = append(items, form.ListItem(label, strconv.FormatInt(r.ID, 10)))
		labels = append(labels, label)
	}
	instr := fmt.Sprintf("%d pending %s, oldest first.", n, plural(n, "request", "requests"))
	if n > len(reqs) {
		instr += fmt.Sprintf(" Showing the oldest %d.", len(reqs))
	}
	// Text clients show an option's value, not its label, until it is
	// chosen: the requests are listed here too.
	for _, l := range labels {
		instr += "\n" + l
	}
	name, _ := commandName(node)
	switch node {
	case nodePending:
		instr += " Choose the requests to approve and those to reject; the others stay pending."
		return form.New(form.Title(name), form.Instructions(instr),
			form.ListMulti("approve", append([]form.Option{form.Label("Approve")}, items...)...),
			form.ListMulti("reject", append([]form.Option{form.Label("Reject")}, items...)...),
		)
	default:
		return form.New(form.Title(name), form.Instructions(instr),
			form.ListMulti("ids", append([]form.Option{form.Label("Requests"), form.Required}, items...)...),
		)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// complete handles the submitted form of session s.
func (h *Handler) complete(ctx context.Context, s *session, f *form.Data) reply {
	switch s.node {
	case nodePending:
		approve, _ := f.Raw("approve")
		reject, _ := f.Raw("reject")
		return h.decide(ctx, s.actor, approve, reject)
	case nodeApprove:
		ids, _ := f.Raw("ids")
		return h.decide(ctx, s.actor, ids, nil)
	case nodeReject:
		ids, _ := f.Raw("ids")
		return h.decide(ctx, s.actor, nil, ids)
	case nodeExplain:
		return h.explain(ctx, f)
	case nodeRoster:
		return h.roster(ctx, f)
	case nodeLists:
		return h.editLists(ctx, s, f)
	}
	return reply{noteType: "error", note: "unknown command"}
}

// parseIDs parses submitted id values: the ids, and a line for every value
// that is not one. Duplicates are dropped.
func parseIDs(values []string, seen map[int64]bool) (ids []int64, bad []string) {
	for _, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		id, ok := parseID(v)
		if !ok {
			bad = append(bad, fmt.Sprintf("%s is not a request id", quoteShort(v)))
			continue
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, bad
}

// decide approves and rejects the submitted ids; an id in both is skipped.
func (h *Handler) decide(ctx context.Context, actor string, approveVals, rejectVals []string) reply {
	ap, bad := parseIDs(approveVals, map[int64]bool{})
	rj, bad2 := parseIDs(rejectVals, map[int64]bool{})
	bad = append(bad, bad2...)
	inReject := make(map[int64]bool)
	for _, id := range rj {
		inReject[id] = true
	}
	var lines []string
	both := make(map[int64]bool)
	var ap2 []int64
	for _, id := range ap {
		if inReject[id] {
			both[id] = true
			lines = append(lines, fmt.Sprintf("#%d: chosen to approve and to reject; left pending", id))
			continue
		}
		ap2 = append(ap2, id)
	}
	var rj2 []int64
	for _, id := range rj {
		if !both[id] {
			rj2 = append(rj2, id)
		}
	}
	if len(ap2)+len(rj2)+len(lines)+len(bad) == 0 {
		return reply{noteType: "info", note: "Nothing chosen; no request was decided."}
	}
	l1, ok1 := h.decideLines(ctx, ap2, true, roster.Actor{JID: actor, Via: roster.ViaAdhoc})
	l2, ok2 := h.decideLines(ctx, rj2, false, roster.Actor{JID: actor, Via: roster.ViaAdhoc})
	all := append(append(append(l1, l2...), lines...), bad...)
	return reply{noteType: noteType(ok1+ok2, len(all)), note: strings.Join(all, "\n")}
}

// first returns the first non-blank value of field id, trimmed.
func first(f *form.Data, id string) string {
	vals, _ := f.Raw(id)
	for _, v := range vals {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

func (h *Handler) explain(ctx context.Context, f *form.Data) reply {
	contact, entity := first(f, "contact"), first(f, "entity")
	switch {
	case contact == "":
		return reply{noteType: "error", note: "No contact given."}
	case entity == "" && len(h.ops.Entities()) != 1:
		return reply{noteType: "error", note: "No entity chosen."}
	case entity == "":
		entity = roster.EntityJID(h.ops.Domain(), h.ops.Entities()[0])
	}
	ex, err := h.ops.Explain(ctx, contact, entity)
	if err != nil {
		return reply{noteType: "error", note: "explain: " + roster.UserText(err)}
	}
	return reply{
		noteType: "info",
		note:     explainSummary(ex),
		form: form.New(form.Result, form.Title("Explanation"),
			form.Text("contact", form.Label("Contact"), form.Value(ex.Contact)),
			form.Text("entity", form.Label("Entity"), form.Value(ex.Entity)),
			form.Text("action", form.Label("Action"), form.Value(ex.Action)),
			form.Text("rule", form.Label("Decided by"), form.Value(ex.Rule)),
			form.Boolean("subscribe_back", form.Label("Subscribes back"), form.Value(strconv.FormatBool(ex.SubscribeBack))),
			form.Text("message", form.Label("Message to the requester"), form.Value(ex.Message)),
			textMulti("groups", "Group rules consulted", ex.Groups),
		),
	}
}

// explainSummary is "alice@localhost → helpdesk@bots.localhost: accept, subscribe back (rule 2: …)".
func explainSummary(ex roster.Explanation) string {
	s := ex.Contact + " → " + ex.Entity + ": " + ex.Action
	if ex.SubscribeBack {
		s += ", subscribe back"
	}
	if ex.Rule != "" {
		s += " (" + ex.Rule + ")"
	}
	return s
}

func (h *Handler) roster(ctx context.Context, f *form.Data) reply {
	domain := h.ops.Domain()
	entity := first(f, "entity")
	if entity == "" {
		if len(h.ops.Entities()) != 1 {
			return reply{noteType: "error", note: "No entity chosen."}
		}
		entity = h.ops.Entities()[0]
	}
	local, err := roster.ParseEntity(domain, entity)
	if err != nil {
		return reply{noteType: "error", note: "roster: " + roster.UserText(err)}
	}
	j := roster.EntityJID(domain, local)
	items, err := h.ops.Roster(ctx, j, maxRosterLines)
	if err != nil {
		return reply{noteType: "error", note: "roster: " + roster.UserText(err)}
	}
	lines := make([]string, 0, len(items))
	for _, it := range items {
		lines = append(lines, rosterLine(it))
	}
	note := fmt.Sprintf("%s has %d roster %s.", j, len(items), plural(len(items), "item", "items"))
	if len(items) == 0 && !slices.Contains(h.ops.Entities(), local) {
		return reply{noteType: "error", note: "roster: " + j + " is not an entity (no [[entity]] with local = \"" + local + "\")."}
	}
	if len(lines) > 0 {
		// Some clients (profanity) show the note, not the result form.
		note = strings.TrimSuffix(note, ".") + ":\n" + strings.Join(lines, "\n")
	}
	return reply{
		noteType: "info",
		note:     note,
		form: form.New(form.Result, form.Title("Roster of "+j),
			form.Text("entity", form.Label("Entity"), form.Value(j)),
			textMulti("items", "Items (contact: subscription, flags)", lines),
		),
	}
}

// editLists applies the difference between the lists shown in the form and
// the lists submitted, removals first, and shows the lists as they are now.
// A field not submitted leaves its list alone.
func (h *Handler) editLists(ctx context.Context, s *session, f *form.Data) reply {
	var lines []string
	ok, n := 0, 0
	for _, l := range []struct {
		name string
		old  []string
	}{{"allow", s.allow}, {"deny", s.deny}} {
		vals, present := f.Raw(l.name)
		if !present {
			continue
		}
		removes, adds := listChanges(l.old, splitLines(vals))
		for _, p := range removes {
			n++
			if _, err := h.ops.EditList(ctx, roster.Actor{JID: s.actor, Via: roster.ViaAdhoc}, l.name, false, p); err != nil {
				lines = append(lines, fmt.Sprintf("%s: could not remove %s: %v", l.name, strconv.Quote(p), err))
				continue
			}
			ok++
			lines = append(lines, fmt.Sprintf("%s: removed %s", l.name, strconv.Quote(p)))
		}
		for _, p := range adds {
			n++
			if _, err := h.ops.EditList(ctx, roster.Actor{JID: s.actor, Via: roster.ViaAdhoc}, l.name, true, p); err != nil {
				lines = append(lines, fmt.Sprintf("%s: could not add %s: %v", l.name, strconv.Quote(p), err))
				continue
			}
			ok++
			lines = append(lines, fmt.Sprintf("%s: added %s", l.name, strconv.Quote(p)))
		}
	}
	r := reply{noteType: noteType(ok, n), note: strings.Join(lines, "\n")}
	if n == 0 {
		r.noteType, r.note = "info", "No changes."
	}
	if allow, deny, err := h.ops.Lists(ctx); err == nil {
		r.form = form.New(form.Result, form.Title("Allow and deny lists"),
			textMulti("allow", "Allow list", allow),
			textMulti("deny", "Deny list", deny),
		)
	}
	return r
}
