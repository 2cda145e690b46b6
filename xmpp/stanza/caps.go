package stanza

import (
	"crypto/sha1" // #nosec G505 -- XEP-0115 and XEP-0153 name SHA-1
	"encoding/base64"
	"slices"
	"strings"
)

// Namespaces of an entity's face: its vCard (XEP-0054), the avatar hash in
// its presence (XEP-0153), its capabilities (XEP-0115) and the nickname in
// its subscription requests (XEP-0172).
const (
	NSVCard       = "vcard-temp"
	NSVCardUpdate = "vcard-temp:x:update"
	NSCaps        = "http://jabber.org/protocol/caps"
	NSNick        = "http://jabber.org/protocol/nick"
	// CapsNode names rostergate in its capabilities.
	CapsNode = "rostergate"
)

// EntityFeatures are the features every entity answers (XEP-0030), sorted:
// what its disco#info lists and its capabilities hash covers.
func EntityFeatures() []string {
	f := []string{NSCaps, NSDiscoInfo, NSDiscoItems, NSVersion, NSPing, NSVCard}
	slices.Sort(f)
	return f
}

// CapsVer is the XEP-0115 verification string of a disco#info with one
// identity (category, type, no language, name) and features (§5.1):
// base64 of the SHA-1 of "category/type//name<" and each feature
// followed by "<", the features in sorted order.
func CapsVer(category, typ, name string, features []string) string {
	var s strings.Builder
	s.WriteString(category + "/" + typ + "//" + name + "<")
	f := slices.Clone(features)
	slices.Sort(f)
	for _, x := range f {
		s.WriteString(x + "<")
	}
	sum := sha1.Sum([]byte(s.String())) // #nosec G401 -- the XEP's hash
	return base64.StdEncoding.EncodeToString(sum[:])
}
