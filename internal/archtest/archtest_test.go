package archtest

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "rostergate"

// allowed lists, for each package of ours, the packages of ours it may
// import directly (docs/architecture.md, "Who may import whom"). cmd/...
// may import anything; a package missing here fails the test, so a new
// package has to take its place in the graph.
var allowed = map[string][]string{
	"roster":       {},
	"subscription": {},
	"policy":       {},
	"limits":       {},
	"xmpp/stanza":  {},
	"webhook":      {},
	"directory":    {},

	"store":           {"roster"},
	"store/sqlite":    {"roster", "store"},
	"store/postgres":  {"roster", "store"},
	"store/storetest": {"roster", "store"},

	"engine":            {"roster", "store", "subscription", "policy", "limits", "xmpp/stanza", "directory"},
	"engine/enginetest": {},
	"gate":              {"engine", "roster", "store", "subscription", "policy"},
	"config":            {"engine", "policy", "limits", "webhook", "directory"},
	"httpapi":           {"engine", "gate", "limits", "roster", "store", "webhook"},
	"webui":             {"gate", "limits", "roster", "store"},
	"export":            {"roster", "store"},
	"placement":         {"engine", "roster", "store"},

	"xmpp/adminui":   {"roster", "store", "xmpp/stanza"},
	"xmpp/component": {"engine", "gate", "placement", "roster", "xmpp/stanza", "xmpp/adminui"},

	"metrics":           {"engine", "httpapi", "xmpp/component"},
	"internal/instance": {"engine", "gate", "httpapi", "metrics", "store", "webui", "xmpp/component", "directory"},
	"internal/xmpptest": {},
	"internal/pgtest":   {},
	"internal/ldaptest": {},
	"examples/echo-bot": {"webhook"},
	"internal/bench":    {"engine", "httpapi", "internal/instance", "internal/pgtest", "internal/xmpptest", "policy", "roster", "store", "store/postgres", "store/sqlite", "webhook", "xmpp/component"},
}

// driverFree are the packages that must not link a store driver, even
// through another package: the domain, the contract, the pure cores, the
// engine, the service and every interface.
var driverFree = []string{
	"roster", "store", "subscription", "policy", "limits", "xmpp/stanza",
	"engine", "gate", "config", "xmpp/adminui", "xmpp/component", "internal/instance", "httpapi", "webhook", "metrics",
}

// drivers are the packages only a concrete store (and cmd, tests) may link.
var drivers = []string{"github.com/mattn/go-sqlite3", module + "/store/sqlite", "github.com/jackc/pgx/v5"}

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "-deps=false", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("go list: %v\n%s", err, ee.Stderr)
	}
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	d := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := d.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; the module is larger than that", len(pkgs))
	}
	return pkgs
}

func ours(path string) (string, bool) {
	return strings.CutPrefix(path, module+"/")
}

// TestImports: each package imports only what docs/architecture.md allows.
func TestImports(t *testing.T) {
	for _, p := range listPackages(t) {
		name, _ := ours(p.ImportPath)
		if strings.HasPrefix(name, "cmd/") || name == "internal/archtest" {
			continue
		}
		ok, known := allowed[name]
		if !known {
			t.Errorf("%s is not in the package graph: add it to docs/architecture.md and to allowed here", name)
			continue
		}
		for _, imp := range p.Imports {
			dep, isOurs := ours(imp)
			if isOurs && !slices.Contains(ok, dep) {
				t.Errorf("%s imports %s, which docs/architecture.md does not allow (allowed: %v)", name, dep, ok)
			}
		}
	}
}

// TestNoDriver: only the concrete stores, cmd and tests link a store driver.
func TestNoDriver(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{join .Deps \" \"}}", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, ds, _ := strings.Cut(line, "\t")
		name, _ := ours(path)
		deps[name] = strings.Fields(ds)
	}
	for _, name := range driverFree {
		ds, found := deps[name]
		if !found {
			t.Errorf("%s: no such package", name)
			continue
		}
		for _, drv := range drivers {
			if slices.Contains(ds, drv) {
				t.Errorf("%s links %s: only a concrete store, cmd and tests may", name, drv)
			}
		}
	}
}

// TestPackageDocs: every package has a package comment that starts with
// "Package <name>" (or "Command <name>" for a main package).
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		want := "Package " + p.Name
		if p.Name == "main" {
			want = "Command "
		}
		if !strings.HasPrefix(p.Doc, want) {
			t.Errorf("%s: package comment %q does not start with %q", p.ImportPath, p.Doc, want)
		}
	}
}
