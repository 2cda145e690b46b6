package xmpptest

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// OpenfireHomeEnv names the environment variable that points at an
// Openfire installation (a release tarball unpacked, or a build's
// distribution directory): it holds lib/startup.jar.
const OpenfireHomeEnv = "OPENFIRE_HOME"

// ErrNoOpenfire is returned (wrapped) by StartOpenfire when $OPENFIRE_HOME
// is not set. Openfire is the one server no package registry ships, so the
// testing wrappers skip on it even when CI is "true".
var ErrNoOpenfire = errors.New("xmpptest: $" + OpenfireHomeEnv + " is not set: Openfire is in no package registry; point it at an Openfire installation (a release, or a build's distribution directory) to test on Openfire")

// openfireJVMFlags make the JVM start fast and bind IPv4 sockets, which
// the readiness check can see in /proc/net/tcp. Each server gets a small
// heap: tests run several at once.
var openfireJVMFlags = []string{
	"-Djava.net.preferIPv4Stack=true",
	"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx384m", "-Xshare:auto",
	"-Dlog4j2.formatMsgNoLookups=true",
	"-Djdk.tls.ephemeralDHKeySize=matched",
}

// StartOpenfire starts a throwaway Openfire from the installation in
// $OPENFIRE_HOME, which it never writes to: the server's home is cfg.Dir,
// with its own configuration, embedded database (HSQLDB) and logs. The
// first start runs Openfire's autosetup: the domain, no admin console, a
// plain client port with PLAIN allowed and in-band registration, and the
// external component cfg.ComponentDomain with its own secret, the only one
// allowed to connect (xmpp.component.permission = whitelist). Everything
// listens on 127.0.0.1; server to server, BOSH, the file-transfer proxy and
// direct-TLS ports are off. ComponentDomain must be a subdomain of Domain,
// as Openfire's components are.
//
// It waits (bounded by ctx and StartTimeout) until Openfire listens on both
// ports and answers; a port taken by another process makes it start again
// on fresh ports, a bounded number of times. It returns an error wrapping
// ErrNoOpenfire when $OPENFIRE_HOME is not set, and one wrapping
// ErrNotInstalled when java is missing.
func StartOpenfire(ctx context.Context, cfg Config) (*Server, error) {
	for name := range cfg.OpenfireProperties {
		if !propertyName.MatchString(name) {
			return nil, fmt.Errorf("xmpptest: Openfire property %q: want dotted names of letters, digits, '-' and '_'", name)
		}
	}
	home := os.Getenv(OpenfireHomeEnv)
	if home == "" {
		return nil, ErrNoOpenfire
	}
	home, err := filepath.Abs(home)
	if err != nil {
		return nil, fmt.Errorf("xmpptest: $%s: %w", OpenfireHomeEnv, err)
	}
	for _, f := range []string{"lib/startup.jar", "resources/database/openfire_hsqldb.sql", "conf/security.xml", "resources/security"} {
		if _, err := os.Stat(filepath.Join(home, f)); err != nil {
			return nil, fmt.Errorf("xmpptest: $%s=%s is not an Openfire installation: %w", OpenfireHomeEnv, home, err)
		}
	}
	java, err := lookPath("java")
	if err != nil {
		return nil, err
	}
	s, err := newServer(KindOpenfire, cfg)
	if err != nil {
		return nil, err
	}
	sub, ok := strings.CutSuffix(s.ComponentDomain, "."+s.Domain)
	if !ok || sub == "" || strings.Contains(sub, ".") {
		return nil, fmt.Errorf("xmpptest: Openfire serves components at subdomains of its domain: %q is not one of %q", s.ComponentDomain, s.Domain)
	}
	o := &openfire{s: s, home: home, java: java, subdomain: sub, adminPassword: openfireAdminPassword,
		plugins: cfg.OpenfirePlugins, props: cfg.OpenfireProperties}
	s.impl = o
	s.ConfigPath = filepath.Join(s.Dir, "conf", "openfire.xml")
	s.LogPath = filepath.Join(s.Dir, "logs", "openfire.log")
	s.OutPath = filepath.Join(s.Dir, "openfire.out")
	if err := s.startNew(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// openfire is the Openfire backend of a Server.
type openfire struct {
	s         *Server
	home      string // $OPENFIRE_HOME, read only
	java      string
	subdomain string // the component's subdomain, e.g. "bots"

	mu            sync.Mutex // serialises password changes
	adminPassword string     // of the account "admin", as last set

	plugins []string          // plugin jars to load
	props   map[string]string // system properties for the first start
}

// propertyName is what an Openfire system property set through
// openfire.xml may be called: each part becomes an element.
var propertyName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$`)

func (*openfire) numPorts() int { return 2 }

// configure makes a fresh home for the server in Dir: Openfire copies its
// settings into its database on the first start, so a new configuration
// (new ports) needs a new database too.
func (o *openfire) configure() error {
	s := o.s
	for _, d := range []string{"embedded-db", "conf", "resources", "plugins", "logs"} {
		if err := os.RemoveAll(filepath.Join(s.Dir, d)); err != nil {
			return fmt.Errorf("xmpptest: openfire: clear %s: %w", d, err)
		}
	}
	for _, d := range []string{"conf", "resources/database", "plugins", "logs"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o750); err != nil {
			return fmt.Errorf("xmpptest: openfire: create %s: %w", d, err)
		}
	}
	if err := copyFile(filepath.Join(o.home, "conf", "security.xml"), filepath.Join(s.Dir, "conf", "security.xml")); err != nil {
		return err
	}
	// Openfire's plugin monitor wants its admin plugin; the console itself
	// stays off (no port).
	if err := os.Symlink(filepath.Join(o.home, "plugins", "admin"), filepath.Join(s.Dir, "plugins", "admin")); err != nil {
		return fmt.Errorf("xmpptest: openfire: link the admin plugin: %w", err)
	}
	if err := os.CopyFS(filepath.Join(s.Dir, "resources", "security"), os.DirFS(filepath.Join(o.home, "resources", "security"))); err != nil {
		return fmt.Errorf("xmpptest: openfire: copy resources/security: %w", err)
	}
	// The schema Openfire creates its embedded database from, with the
	// component added as an admin adds it in the console (Server → Server
	// Settings → External Components: subdomain and shared secret).
	schema, err := os.ReadFile(filepath.Join(o.home, "resources", "database", "openfire_hsqldb.sql"))
	if err != nil {
		return fmt.Errorf("xmpptest: openfire: read schema: %w", err)
	}
	schema = fmt.Appendf(schema, "\nINSERT INTO ofExtComponentConf (subdomain, wildcard, secret, permission) VALUES (%s, 0, %s, 'allowed');\n",
		sqlQuote(o.subdomain), sqlQuote(s.ComponentSecret))
	if err := os.WriteFile(filepath.Join(s.Dir, "resources", "database", "openfire_hsqldb.sql"), schema, 0o640); err != nil {
		return fmt.Errorf("xmpptest: openfire: write schema: %w", err)
	}
	for _, jar := range o.plugins {
		if err := copyFile(jar, filepath.Join(s.Dir, "plugins", filepath.Base(jar))); err != nil {
			return err
		}
	}
	if err := os.WriteFile(s.ConfigPath, []byte(o.config()), 0o640); err != nil {
		return fmt.Errorf("xmpptest: openfire: write config: %w", err)
	}
	return nil
}

// config is conf/openfire.xml. Outside <autosetup>, Openfire reads
// adminConsole, network and connectionProvider from the file at every
// start; every other element is a system property (its dotted path) that
// the first start copies into the database.
func (o *openfire) config() string {
	s := o.s
	return `<?xml version="1.0" encoding="UTF-8"?>
<jive>
  <adminConsole><port>-1</port><securePort>-1</securePort><interface>127.0.0.1</interface></adminConsole>
  <network><interface>127.0.0.1</interface></network>
  <connectionProvider><className>org.jivesoftware.database.EmbeddedConnectionProvider</className></connectionProvider>
  <autosetup>
    <run>true</run>
    <locale>en</locale>
    <xmpp>
      <domain>` + xmlEscape(s.Domain) + `</domain>
      <fqdn>` + xmlEscape(s.Domain) + `</fqdn>
      <auth><anonymous>false</anonymous></auth>
      <socket><ssl><active>false</active></ssl></socket>
    </xmpp>
    <database><mode>embedded</mode></database>
    <admin><email>admin@` + xmlEscape(s.Domain) + `</email><password>` + openfireAdminPassword + `</password></admin>
  </autosetup>
  <xmpp>
    <socket><plain><active>true</active><port>` + strconv.Itoa(s.ports[0]) + `</port></plain></socket>
    <client><tls><policy>disabled</policy></tls></client>
    <component>
      <socket><active>true</active><port>` + strconv.Itoa(s.ports[1]) + `</port></socket>
      <ssl><active>false</active></ssl>
      <permission>whitelist</permission>
    </component>
    <server><socket><active>false</active><ssl><active>false</active></ssl></socket></server>
    <proxy><enabled>false</enabled></proxy>
  </xmpp>
  <httpbind><enabled>false</enabled></httpbind>
  <update><service-enabled>false</service-enabled></update>
  <register><inband>true</inband></register>
` + propertiesXML(o.props) + `</jive>
`
}

// propertiesXML writes system properties as openfire.xml has them: each
// dotted name a path of nested elements, names that share a prefix in one
// tree.
func propertiesXML(props map[string]string) string {
	type node struct {
		value    string
		children map[string]*node
	}
	root := &node{children: map[string]*node{}}
	for name, v := range props {
		n := root
		for part := range strings.SplitSeq(name, ".") {
			c, ok := n.children[part]
			if !ok {
				c = &node{children: map[string]*node{}}
				n.children[part] = c
			}
			n = c
		}
		n.value = v
	}
	var b strings.Builder
	var write func(n *node, indent string)
	write = func(n *node, indent string) {
		for _, name := range slices.Sorted(maps.Keys(n.children)) {
			c := n.children[name]
			b.WriteString(indent + "<" + name + ">" + xmlEscape(c.value))
			if len(c.children) > 0 {
				b.WriteString("\n")
				write(c, indent+"  ")
				b.WriteString(indent)
			}
			b.WriteString("</" + name + ">\n")
		}
	}
	write(root, "  ")
	return b.String()
}

func (o *openfire) command() *exec.Cmd {
	args := append([]string{"-server"}, openfireJVMFlags...)
	args = append(args,
		"-DopenfireHome="+o.s.Dir,
		"-Dopenfire.lib.dir="+filepath.Join(o.home, "lib"),
		"-Dlog4j.configurationFile="+filepath.Join(o.home, "lib", "log4j2.xml"),
		"-Djava.security.properties="+filepath.Join(o.home, "resources", "security", "java.security"),
		"-jar", filepath.Join(o.home, "lib", "startup.jar"))
	cmd := exec.Command(o.java, args...)
	// Openfire reads commands from stdin; none come.
	cmd.Stdin = nil
	return cmd
}

// portInUse matches the JVM's bind failure, as Openfire logs it.
func (*openfire) portInUse(line string) bool {
	return strings.Contains(line, "Address already in use")
}

// shutDown: Openfire exits by itself once its shutdown is done.
func (*openfire) shutDown(int) bool { return false }

// register creates the account by in-band registration (XEP-0077) on the
// client port. An account that exists already gets the password from the
// server's admin, by the XEP-0133 command "Change User Password"; Openfire's
// own "admin" account (every Openfire has one) by an in-band password change
// (XEP-0077 §3.3).
func (o *openfire) register(ctx context.Context, user, password string) error {
	s := o.s
	err := inBandRegister(ctx, s.C2SAddr, s.Domain, user, password)
	if !errors.Is(err, errConflict) {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	admin, err := Dial(ctx, s.C2SAddr, s.JID(openfireAdmin), o.adminPassword)
	if err != nil {
		return fmt.Errorf("xmpptest: openfire: log in as %s to set the password of %s: %w", s.JID(openfireAdmin), s.JID(user), err)
	}
	defer admin.Close()
	if user == openfireAdmin {
		if _, err := admin.IQ(ctx, "<iq type='set'><query xmlns='jabber:iq:register'><username>"+xmlEscape(user)+
			"</username><password>"+xmlEscape(password)+"</password></query></iq>"); err != nil {
			return fmt.Errorf("xmpptest: openfire: set the password of %s: %w", s.JID(user), err)
		}
		o.adminPassword = password
		return nil
	}
	const node = "http://jabber.org/protocol/admin#change-user-password"
	reply, err := admin.IQ(ctx, "<iq type='set' to='"+xmlEscape(s.Domain)+"'><command xmlns='http://jabber.org/protocol/commands' node='"+node+"' action='execute'/></iq>")
	if err != nil {
		return fmt.Errorf("xmpptest: openfire: change the password of %s: %w", s.JID(user), err)
	}
	m := sessionIDAttr.FindStringSubmatch(reply)
	if m == nil {
		return fmt.Errorf("xmpptest: openfire: change the password of %s: no session in %s", s.JID(user), reply)
	}
	reply, err = admin.IQ(ctx, "<iq type='set' to='"+xmlEscape(s.Domain)+"'><command xmlns='http://jabber.org/protocol/commands' node='"+node+"' sessionid='"+xmlEscape(m[1])+"'>"+
		"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/admin</value></field>"+
		"<field var='accountjid'><value>"+xmlEscape(s.JID(user))+"</value></field><field var='password'><value>"+xmlEscape(password)+"</value></field></x></command></iq>")
	if err != nil {
		return fmt.Errorf("xmpptest: openfire: change the password of %s: %w", s.JID(user), err)
	}
	if !completedAttr.MatchString(reply) || strings.Contains(reply, "type='error'") || strings.Contains(reply, `type="error"`) {
		return fmt.Errorf("xmpptest: openfire: change the password of %s: %s", s.JID(user), reply)
	}
	return nil
}

var (
	sessionIDAttr = regexp.MustCompile(`sessionid=['"]([^'"]+)['"]`)
	completedAttr = regexp.MustCompile(`status=['"]completed['"]`)
)

// Openfire always has an account "admin"; autosetup sets its first
// password.
const (
	openfireAdmin         = "admin"
	openfireAdminPassword = "autosetup-admin"
)

var errConflict = errors.New("xmpptest: the account exists")

// inBandRegister registers user with password on the client port at addr.
func inBandRegister(ctx context.Context, addr, domain, user, password string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("xmpptest: register %s: %w", user, err)
	}
	defer c.Close()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(testTimeout)
	}
	_ = c.SetDeadline(dl)
	if _, err := fmt.Fprintf(c, "<?xml version='1.0'?><stream:stream to='%s' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"+
		"<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>%s</username><password>%s</password></query></iq>",
		xmlEscape(domain), xmlEscape(user), xmlEscape(password)); err != nil {
		return fmt.Errorf("xmpptest: register %s: %w", user, err)
	}
	dec := xml.NewDecoder(io.LimitReader(c, 1<<20))
	for {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("xmpptest: register %s: no answer: %w", user, err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "iq" {
			if ok && se.Name.Local != "stream" {
				if err := dec.Skip(); err != nil {
					return fmt.Errorf("xmpptest: register %s: %w", user, err)
				}
			}
			continue
		}
		var iq struct {
			ID    string `xml:"id,attr"`
			Type  string `xml:"type,attr"`
			Error struct {
				Inner []byte `xml:",innerxml"`
			} `xml:"error"`
		}
		if err := dec.DecodeElement(&iq, &se); err != nil {
			return fmt.Errorf("xmpptest: register %s: %w", user, err)
		}
		if iq.ID != "reg1" {
			continue
		}
		_, _ = c.Write([]byte("</stream:stream>"))
		switch {
		case iq.Type == "result":
			return nil
		case strings.Contains(string(iq.Error.Inner), "<conflict"):
			return fmt.Errorf("%w: %s", errConflict, user)
		default:
			return fmt.Errorf("xmpptest: register %s: refused: %s", user, iq.Error.Inner)
		}
	}
}

func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("xmpptest: copy %s: %w", from, err)
	}
	if err := os.WriteFile(to, data, 0o640); err != nil {
		return fmt.Errorf("xmpptest: copy %s: %w", from, err)
	}
	return nil
}
