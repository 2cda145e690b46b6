// Package webhook signs and verifies rostergate's webhooks the Standard
// Webhooks 1.0 way (https://www.standardwebhooks.com), so that a bot can check
// that a POST really comes from rostergate, unchanged and recent.
//
// Every entity with a webhook has its own secret, written whsec_ followed by
// 24 to 64 random bytes in standard base64; rostergate and the bot both hold
// it. Each webhook POST carries three headers:
//
//	webhook-id:        the event's id, the same on every retry
//	webhook-timestamp: when this attempt was sent, in Unix seconds
//	webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">
//
// The signature header may hold several space-separated signatures (for
// instance while a secret is being replaced); one matching v1 signature is
// enough, and other versions are ignored. A bot verifies the body exactly as
// received, before decoding it: re-encoded JSON would not match.
//
// rostergate signs with [Secret.Header]; a bot checks with [Secret.Verify]:
//
//	secret, err := webhook.ParseSecret(s) // s from the bot's secret file
//	...
//	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
//	...
//	if err := secret.Verify(r.Header, body, time.Now(), 0); err != nil {
//		http.Error(w, "bad signature", http.StatusUnauthorized)
//		return
//	}
//
// Any other Standard Webhooks library verifies these webhooks too.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of a signed webhook.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// The errors of [Secret.Verify], always wrapped with the details: test for
// them with errors.Is.
var (
	ErrMissingHeader = errors.New("webhook: missing header")
	ErrTimestamp     = errors.New("webhook: bad timestamp")
	ErrSignature     = errors.New("webhook: bad signature")
)

// DefaultTolerance is how far a webhook's timestamp may be from now when
// [Secret.Verify] is given a tolerance of 0.
const DefaultTolerance = 5 * time.Minute

const (
	prefix = "whsec_"
	minKey = 24 // bytes: Standard Webhooks asks for 192 to 512 bits
	maxKey = 64
	newKey = 32 // bytes in a NewSecret
)

// Secret is the key shared by rostergate and one entity's webhook receiver.
// Get one from [ParseSecret]. The zero Secret verifies nothing.
//
// Printing a Secret with the fmt package shows no part of the key.
type Secret struct {
	key []byte
}

// ParseSecret parses a secret written whsec_ followed by its key in standard
// base64 (with padding), as [NewSecret] makes it. The bare base64, without the
// prefix, is accepted too. The key must be 24 to 64 bytes long. Surrounding
// spaces are not removed: trim what is read from a file first.
func ParseSecret(s string) (Secret, error) {
	b64 := strings.TrimPrefix(s, prefix)
	if b64 == "" {
		return Secret{}, errors.New("webhook: empty secret")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		// err names the offset only, never the secret's text.
		return Secret{}, fmt.Errorf("webhook: secret is not %s followed by standard base64: %v", prefix, err)
	}
	switch {
	case len(key) < minKey:
		return Secret{}, fmt.Errorf("webhook: secret key is %d bytes, shorter than %d", len(key), minKey)
	case len(key) > maxKey:
		return Secret{}, fmt.Errorf("webhook: secret key is %d bytes, longer than %d", len(key), maxKey)
	}
	return Secret{key: key}, nil
}

// NewSecret returns a new secret of 32 random bytes, written whsec_ and
// standard base64.
func NewSecret() (string, error) {
	key := make([]byte, newKey)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("webhook: new secret: %w", err)
	}
	return prefix + base64.StdEncoding.EncodeToString(key), nil
}

// String hides the key, so a Secret that ends up in a log reveals nothing.
func (Secret) String() string { return "webhook.Secret(redacted)" }

// GoString hides the key from %#v as well.
func (s Secret) GoString() string { return s.String() }

// Sign returns the signature of a webhook with id msgID sent at ts (counted in
// whole seconds) with the given body, as the webhook-signature header holds
// it: "v1," and the standard base64 HMAC-SHA256 of "msgID.unixseconds.body".
func (s Secret) Sign(msgID string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(s.mac(msgID, strconv.FormatInt(ts.Unix(), 10), body))
}

func (s Secret) mac(msgID, unix string, body []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(msgID))
	m.Write([]byte{'.'})
	m.Write([]byte(unix))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Header returns the three headers of a webhook with id msgID sent at ts with
// the given body: [HeaderID], [HeaderTimestamp] and [HeaderSignature].
func (s Secret) Header(msgID string, ts time.Time, body []byte) http.Header {
	h := make(http.Header, 3)
	h.Set(HeaderID, msgID)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, s.Sign(msgID, ts, body))
	return h
}

// Verify checks a webhook received with headers h and the given body, as
// read from the request (not decoded). It returns nil if the three headers
// are there, the timestamp is at most tolerance before or after now, and one
// of the v1 signatures in the signature header is the body's; signatures of
// other versions are ignored. A tolerance of 0 or less means
// [DefaultTolerance].
//
// The error wraps [ErrMissingHeader], [ErrTimestamp] or [ErrSignature], in
// the order they are checked, with what was wrong.
func (s Secret) Verify(h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, unix, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	var missing []string
	for _, f := range [...]struct{ name, value string }{{HeaderID, id}, {HeaderTimestamp, unix}, {HeaderSignature, sigs}} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w %s", ErrMissingHeader, strings.Join(missing, ", "))
	}

	// Only the canonical decimal form, so that the signed text is the header's.
	sec, err := strconv.ParseInt(unix, 10, 64)
	if err != nil || strconv.FormatInt(sec, 10) != unix {
		return fmt.Errorf("%w: %s is not a Unix time in seconds", ErrTimestamp, HeaderTimestamp)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	switch age := now.Sub(time.Unix(sec, 0)); {
	case age > tolerance:
		return fmt.Errorf("%w: sent %v ago, more than the tolerance of %v", ErrTimestamp, age, tolerance)
	case age < -tolerance:
		return fmt.Errorf("%w: sent %v in the future, more than the tolerance of %v", ErrTimestamp, -age, tolerance)
	}

	if len(s.key) == 0 {
		return fmt.Errorf("%w: no secret to check it with", ErrSignature)
	}
	want := []byte(base64.StdEncoding.EncodeToString(s.mac(id, unix, body)))
	v1 := 0
	for _, sig := range strings.Fields(sigs) {
		version, value, _ := strings.Cut(sig, ",")
		if version != "v1" {
			continue
		}
		v1++
		if hmac.Equal([]byte(value), want) {
			return nil
		}
	}
	switch v1 {
	case 0:
		return fmt.Errorf("%w: no v1 signature in %s", ErrSignature, HeaderSignature)
	case 1:
		return fmt.Errorf("%w: the v1 signature does not match", ErrSignature)
	}
	return fmt.Errorf("%w: none of the %d v1 signatures matches", ErrSignature, v1)
}

// Equal reports whether s and o hold the same key.
func (s Secret) Equal(o Secret) bool { return hmac.Equal(s.key, o.key) }
