# rostergate — see README.md. `make demo` shows it working, `make test` runs every test.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
PKGS        := ./...

.PHONY: all build test unit lint deps demo bench clean

all: build

build:
	$(GO) build -o rostergate ./cmd/rostergate
	$(GO) build -o echo-bot ./examples/echo-bot

# Debian packages the integration tests and the demo need: Prosody and
# ejabberd (the tests run on both; prosody-modules brings mod_privilege, for
# placing entities in users' rosters, XEP-0356), Chromium (the web page's test drives it
# headless), PostgreSQL (internal/pgtest runs servers of its own from its
# binaries for the PostgreSQL store's tests), and OpenLDAP's slapd with
# ldap-utils (internal/ldaptest runs a slapd of its own for the directory's
# tests; ldapsearch is handy when one fails). Runs apt-get (one update) only
# when something is missing, and keeps apt from starting the system-wide services
# with a policy-rc.d that exits 101 for the duration of the install (one that
# was already there is put back afterwards).
deps:
	@missing=""; \
	command -v prosody >/dev/null 2>&1 || missing="$$missing prosody lua-unbound"; \
	[ -e /usr/lib/prosody/modules/mod_privilege/mod_privilege.lua ] || missing="$$missing prosody-modules"; \
	command -v ejabberdctl >/dev/null 2>&1 || [ -x /usr/sbin/ejabberdctl ] || missing="$$missing ejabberd"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -x /usr/sbin/slapd ] || missing="$$missing slapd"; \
	command -v ldapsearch >/dev/null 2>&1 || missing="$$missing ldap-utils"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (Debian packages)"; \
		rc=/usr/sbin/policy-rc.d; saved=""; \
		if [ -e $$rc ]; then saved=$$rc.rostergate-saved; mv $$rc $$saved || exit 1; fi; \
		printf '#!/bin/sh\nexit 101\n' > $$rc && chmod +x $$rc && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		status=$$?; rm -f $$rc; [ -z "$$saved" ] || mv $$saved $$rc; exit $$status; \
	fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

# The whole suite: lint, then every test with the race detector, including the
# integration tests against a real Prosody on loopback (CI=true makes a missing
# Prosody a failure instead of a skip).
test: deps lint
	$(GO) test -race -count=1 -timeout 60m $(PKGS)

# Only the fast tests (no real server).
unit:
	$(GO) test -short -count=1 $(PKGS)

# A throwaway Prosody on loopback, rostergate with the example policy, a demo
# user who adds helpdesk: prints the flows and the final rosters.
# DEMO_SERVER=ejabberd, or DEMO_SERVER=openfire with $OPENFIRE_HOME set, runs
# it on the other servers.
DEMO_SERVER ?= prosody
demo: deps build
	$(GO) run ./cmd/rostergate-demo -rostergate ./rostergate -echo-bot ./echo-bot -server $(DEMO_SERVER)

# Every benchmark (docs/benchmarks.md): prints the table and the targets, and
# writes the figures to rostergate-bench.json. Sizes are flags: BENCHFLAGS.
bench: deps build
	$(GO) run ./cmd/rostergate-bench -rostergate ./rostergate $(BENCHFLAGS)

clean:
	rm -f rostergate rostergate-bench.json
