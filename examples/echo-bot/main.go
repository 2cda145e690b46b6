// Command echo-bot is a complete rostergate bot: it receives the webhooks
// rostergate sends for one entity, checks their signatures, and answers every
// message with "echo: " and its text through rostergate's HTTP API.
// See README.md for how to run it.
package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/webhook"
)

// event is what this bot reads of a webhook. Other types of event
// ("presence", "subscription", "request") have other keys; it ignores them.
type event struct {
	ID      int64  `json:"id"`
	Type    string `json:"type"`
	Message struct {
		From string `json:"from"` // a full JID: the answer goes back to that resource
		Type string `json:"type"` // "chat" or "normal"
		Body string `json:"body"`
	} `json:"message"`
}

func main() {
	listen := flag.String("listen", env("ECHO_LISTEN", "127.0.0.1:5381"), "address to receive webhooks on")
	api := flag.String("api", env("ECHO_API", "http://127.0.0.1:5380"), "rostergate's HTTP API")
	tokenFile := flag.String("token-file", env("ECHO_TOKEN_FILE", "echo.token"), "file holding the entity's API token")
	secretFile := flag.String("secret-file", env("ECHO_SECRET_FILE", "echo.whsec"), "file holding the webhook secret, whsec_...")
	entity := flag.String("entity", env("ECHO_ENTITY", "echo"), "the entity's localpart")
	flag.Parse()
	log := hclog.New(&hclog.LoggerOptions{Name: "echo-bot", Output: os.Stderr, TimeFormat: "2006-01-02T15:04:05.000Z07:00"})
	token := mustRead(log, *tokenFile)
	secret, err := webhook.ParseSecret(mustRead(log, *secretFile))
	if err != nil {
		fail(log, *secretFile, err)
	}
	send := strings.TrimSuffix(*api, "/") + "/api/v1/entities/" + url.PathEscape(*entity) + "/messages"
	client := &http.Client{Timeout: 10 * time.Second}

	http.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body unreadable or over 1 MiB", http.StatusRequestEntityTooLarge)
			return
		}
		// Check the body exactly as received, before decoding it.
		if err := secret.Verify(r.Header, body, time.Now(), 0); err != nil {
			log.Warn("webhook refused", "err", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var ev event
		if err := json.Unmarshal(body, &ev); err != nil {
			log.Warn("unreadable event, ignored", "err", err)
		}
		m := ev.Message
		// Answer chat and normal ("") messages with a text; never errors (no loops).
		if ev.Type != "message" || m.Body == "" || (m.Type != "chat" && m.Type != "normal" && m.Type != "") {
			w.WriteHeader(http.StatusNoContent) // 2xx all the same, or rostergate retries
			return
		}
		reply, _ := json.Marshal(map[string]string{"to": m.From, "body": "echo: " + m.Body, "type": cmp.Or(m.Type, "normal")})
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, send, bytes.NewReader(reply))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err == nil {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode/100 == 4 { // refused (say, not a subscriber): trying again would not help
				log.Warn("answer refused", "event", ev.ID, "to", m.From, "status", resp.Status, "why", string(bytes.TrimSpace(msg)))
				w.WriteHeader(http.StatusNoContent)
				return
			}
			if resp.StatusCode/100 != 2 {
				err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
			}
		}
		if err != nil { // 502: rostergate sends the event again later
			log.Error("answer failed", "event", ev.ID, "to", m.From, "err", err)
			http.Error(w, "rostergate API call failed", http.StatusBadGateway)
			return
		}
		log.Info("echoed", "event", ev.ID, "to", m.From)
		w.WriteHeader(http.StatusNoContent)
	})
	log.Info("echo-bot listening", "addr", *listen, "entity", *entity, "api", *api)
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	fail(log, *listen, srv.ListenAndServe())
}

// env returns the environment variable name, or def if it is unset or empty.
func env(name, def string) string { return cmp.Or(os.Getenv(name), def) }

func mustRead(log hclog.Logger, file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		fail(log, file, err)
	}
	return string(bytes.TrimSpace(b))
}

func fail(log hclog.Logger, what string, err error) { log.Error(what, "err", err); os.Exit(1) }
