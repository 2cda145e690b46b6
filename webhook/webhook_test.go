package webhook_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"rostergate/webhook"
)

// The test vector of the Standard Webhooks reference libraries
// (standard-webhooks/standard-webhooks, libraries/go/webhook_test.go,
// TestWebhookSign; the same values are in the other languages' tests).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorUnix      = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustParse(t *testing.T, s string) webhook.Secret {
	t.Helper()
	secret, err := webhook.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// secretOf returns a secret written whsec_ with a key of n bytes.
func secretOf(n int) string {
	return "whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", n)))
}

func TestVector(t *testing.T) {
	ts := time.Unix(vectorUnix, 0)
	for _, s := range []string{vectorSecret, strings.TrimPrefix(vectorSecret, "whsec_")} {
		secret := mustParse(t, s)
		if got := secret.Sign(vectorID, ts, []byte(vectorBody)); got != vectorSignature {
			t.Errorf("%s: Sign = %s, want %s", s, got, vectorSignature)
		}
		// Sign counts whole seconds.
		if got := secret.Sign(vectorID, ts.Add(999*time.Millisecond), []byte(vectorBody)); got != vectorSignature {
			t.Errorf("%s: Sign 999ms later = %s, want %s", s, got, vectorSignature)
		}
		h := http.Header{}
		h.Set("webhook-id", vectorID)
		h.Set("webhook-timestamp", "1614265330")
		h.Set("webhook-signature", vectorSignature)
		if err := secret.Verify(h, []byte(vectorBody), ts.Add(time.Minute), 0); err != nil {
			t.Errorf("%s: Verify: %v", s, err)
		}
	}
}

func TestHeader(t *testing.T) {
	secret := mustParse(t, vectorSecret)
	h := secret.Header(vectorID, time.Unix(vectorUnix, 0), []byte(vectorBody))
	want := map[string]string{
		webhook.HeaderID:        vectorID,
		webhook.HeaderTimestamp: "1614265330",
		webhook.HeaderSignature: vectorSignature,
	}
	for name, value := range want {
		if got := h.Values(name); len(got) != 1 || got[0] != value {
			t.Errorf("header %s = %q, want [%q]", name, got, value)
		}
	}
	if len(h) != len(want) {
		t.Errorf("%d headers, want %d: %v", len(h), len(want), h)
	}
}

func TestParseSecret(t *testing.T) {
	tests := []struct {
		name, secret string
		wantErr      string // "" for no error
	}{
		{"prefixed", vectorSecret, ""},
		{"bare base64", strings.TrimPrefix(vectorSecret, "whsec_"), ""},
		{"24 bytes", secretOf(24), ""},
		{"64 bytes", secretOf(64), ""},
		{"empty", "", "empty secret"},
		{"prefix only", "whsec_", "empty secret"},
		{"not base64", "whsec_not base64!", "not whsec_ followed by standard base64"},
		{"url-safe base64", "whsec_" + strings.Repeat("-_", 16), "not whsec_ followed by standard base64"},
		{"unpadded", strings.TrimRight(secretOf(25), "="), "not whsec_ followed by standard base64"},
		{"spaces around", " " + vectorSecret + " ", "not whsec_ followed by standard base64"},
		{"other prefix", "whsk_" + strings.TrimPrefix(vectorSecret, "whsec_"), "not whsec_ followed by standard base64"},
		{"23 bytes", secretOf(23), "23 bytes, shorter than 24"},
		{"65 bytes", secretOf(65), "65 bytes, longer than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.ParseSecret(tt.secret)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ParseSecret(%q): %v", tt.secret, err)
			case tt.wantErr == "":
				return
			case err == nil:
				t.Fatalf("ParseSecret(%q) = nil error, want one with %q", tt.secret, tt.wantErr)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "webhook: ") || !strings.Contains(msg, tt.wantErr) {
				t.Errorf("ParseSecret(%q) error %q, want it to start webhook: and contain %q", tt.secret, msg, tt.wantErr)
			}
			if len(tt.secret) > 8 && strings.Contains(err.Error(), tt.secret[8:]) {
				t.Errorf("error %q repeats the secret", err)
			}
		})
	}
}

func TestNewSecret(t *testing.T) {
	a, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("two NewSecrets are both %s", a)
	}
	for _, s := range []string{a, b} {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if !strings.HasPrefix(s, "whsec_") || err != nil || len(key) != 32 {
			t.Errorf("NewSecret = %q, want whsec_ and 32 bytes in base64", s)
		}
		mustParse(t, s)
	}
}

func TestVerify(t *testing.T) {
	secret := mustParse(t, vectorSecret)
	other, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	wrong := mustParse(t, other)
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	body := []byte(`{"id":17,"type":"message","entity":"echo@bots.localhost"}`)
	const id = "17"
	tests := []struct {
		name      string
		receiver  *webhook.Secret // the receiver's secret if not the sender's
		sentAt    time.Duration   // when it was signed, from now
		tolerance time.Duration
		edit      func(h http.Header, body []byte) []byte // changes the webhook as received
		want      error
	}{
		{name: "as signed"},
		{name: "just in the past", sentAt: -2 * time.Minute},
		{name: "just in the future", sentAt: 2 * time.Minute},
		{name: "at the tolerance, past", sentAt: -5 * time.Minute},
		{name: "at the tolerance, future", sentAt: 5 * time.Minute},
		{name: "expired", sentAt: -5*time.Minute - time.Second, want: webhook.ErrTimestamp},
		{name: "from the future", sentAt: 5*time.Minute + time.Second, want: webhook.ErrTimestamp},
		{name: "expired, tolerance 1m", sentAt: -61 * time.Second, tolerance: time.Minute, want: webhook.ErrTimestamp},
		{name: "within tolerance 10m", sentAt: -9 * time.Minute, tolerance: 10 * time.Minute},
		{name: "negative tolerance is the default", sentAt: -4 * time.Minute, tolerance: -time.Second},
		{name: "a day old", sentAt: -24 * time.Hour, want: webhook.ErrTimestamp},
		{
			name: "tampered body", want: webhook.ErrSignature,
			edit: func(h http.Header, body []byte) []byte { return append(body[:len(body):len(body)], ' ') },
		},
		{
			name: "empty body", want: webhook.ErrSignature,
			edit: func(h http.Header, body []byte) []byte { return nil },
		},
		{
			name: "other id", want: webhook.ErrSignature,
			edit: func(h http.Header, body []byte) []byte { h.Set("webhook-id", "18"); return body },
		},
		{
			name: "other timestamp", want: webhook.ErrSignature,
			edit: func(h http.Header, body []byte) []byte {
				h.Set("webhook-timestamp", fmt.Sprint(now.Unix()-1))
				return body
			},
		},
		{
			name: "timestamp with a plus", want: webhook.ErrTimestamp,
			edit: func(h http.Header, body []byte) []byte {
				h.Set("webhook-timestamp", "+"+h.Get("webhook-timestamp"))
				return body
			},
		},
		{
			name: "timestamp in milliseconds", want: webhook.ErrTimestamp,
			edit: func(h http.Header, body []byte) []byte {
				h.Set("webhook-timestamp", fmt.Sprint(now.UnixMilli()))
				return body
			},
		},
		{
			name: "timestamp not a number", want: webhook.ErrTimestamp,
			edit: func(h http.Header, body []byte) []byte { h.Set("webhook-timestamp", "yesterday"); return body },
		},
		{name: "wrong secret", receiver: &wrong, want: webhook.ErrSignature},
		{name: "zero secret", receiver: &webhook.Secret{}, want: webhook.ErrSignature},
		{
			name: "missing id", want: webhook.ErrMissingHeader,
			edit: func(h http.Header, body []byte) []byte { h.Del("webhook-id"); return body },
		},
		{
			name: "missing timestamp", want: webhook.ErrMissingHeader,
			edit: func(h http.Header, body []byte) []byte { h.Del("webhook-timestamp"); return body },
		},
		{
			name: "missing signature", want: webhook.ErrMissingHeader,
			edit: func(h http.Header, body []byte) []byte { h.Del("webhook-signature"); return body },
		},
		{
			name: "empty signature", want: webhook.ErrMissingHeader,
			edit: func(h http.Header, body []byte) []byte { h.Set("webhook-signature", ""); return body },
		},
		{
			name: "no headers", want: webhook.ErrMissingHeader,
			edit: func(h http.Header, body []byte) []byte { clear(h); return body },
		},
		{
			name: "several signatures, one good",
			edit: func(h http.Header, body []byte) []byte {
				good := h.Get("webhook-signature")
				h.Set("webhook-signature", strings.Join([]string{
					"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
					"v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
					"v2", "", good, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
				}, " "))
				return body
			},
		},
		{
			name: "several signatures, none good", want: webhook.ErrSignature,
			edit: func(h http.Header, body []byte) []byte {
				h.Set("webhook-signature", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1,AAAA")
				return body
			},
		},
		{
			name: "the right value under another version", want: webhook.ErrSignature,
			edit: func(h http.Header, body []byte) []byte {
				_, value, _ := strings.Cut(h.Get("webhook-signature"), ",")
				h.Set("webhook-signature", "v2,"+value+" v1a,"+value+" V1,"+value)
				return body
			},
		},
		{
			name: "signature without its version", want: webhook.ErrSignature,
			edit: func(h http.Header, body []byte) []byte {
				_, value, _ := strings.Cut(h.Get("webhook-signature"), ",")
				h.Set("webhook-signature", value)
				return body
			},
		},
		{
			name: "truncated signature", want: webhook.ErrSignature,
			edit: func(h http.Header, body []byte) []byte {
				sig := h.Get("webhook-signature")
				h.Set("webhook-signature", sig[:len(sig)-2])
				return body
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := secret.Header(id, now.Add(tt.sentAt), body)
			got := body
			if tt.edit != nil {
				got = tt.edit(h, got)
			}
			receiver := secret
			if tt.receiver != nil {
				receiver = *tt.receiver
			}
			err := receiver.Verify(h, got, now, tt.tolerance)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("Verify: %v", err)
			case tt.want == nil:
				return
			case !errors.Is(err, tt.want):
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if msg := err.Error(); msg == tt.want.Error() || !strings.HasPrefix(msg, "webhook: ") {
				t.Errorf("error %q: want %q with details", msg, tt.want)
			}
			for _, e := range []error{webhook.ErrMissingHeader, webhook.ErrTimestamp, webhook.ErrSignature} {
				if e != tt.want && errors.Is(err, e) {
					t.Errorf("error %q is also %q", err, e)
				}
			}
		})
	}
}

func TestSecretHidden(t *testing.T) {
	secret := mustParse(t, vectorSecret)
	key := strings.TrimPrefix(vectorSecret, "whsec_")
	raw, _ := base64.StdEncoding.DecodeString(key)
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		out := fmt.Sprintf(format, secret)
		if strings.Contains(out, key) || strings.Contains(out, fmt.Sprint(raw)) || strings.Contains(out, fmt.Sprintf("%x", raw)) {
			t.Errorf("Sprintf(%q) = %s shows the key", format, out)
		}
	}
}

// A bot's webhook handler, in short.
func ExampleSecret_Verify() {
	secret, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	received := time.Unix(1614265330, 0).Add(3 * time.Second)

	fmt.Println(secret.Verify(h, []byte(`{"test": 2432232314}`), received, 0))
	fmt.Println(secret.Verify(h, []byte(`{"test": 2432232315}`), received, 0))
	fmt.Println(secret.Verify(h, []byte(`{"test": 2432232314}`), received.Add(time.Hour), 0))
	// Output:
	// <nil>
	// webhook: bad signature: the v1 signature does not match
	// webhook: bad timestamp: sent 1h0m3s ago, more than the tolerance of 5m0s
}
