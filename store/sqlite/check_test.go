package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rostergate/roster"
	"rostergate/store"
)

// TestCheckReportsDamage damages a closed database behind SQLite's back,
// in a way integrity_check or foreign_key_check finds, and requires Check
// to name the damage. (storetest checks that Check passes a sound store.)
func TestCheckReportsDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string) (want []string)
	}{
		{"request without its roster item", orphanRequest},
		{"index entry overwritten", overwriteIndexEntry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "roster.db")
			db, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			var batch []store.Change
			for i := range 40 {
				contact := fmt.Sprintf("c%02d@example.org", i)
				batch = append(batch, store.Change{
					Item:  roster.Item{Entity: "alice", Contact: contact, Sub: roster.SubNone, PendingIn: true},
					Queue: &roster.Request{Rule: "rule 1"},
					Audit: &roster.Event{At: t0.Add(time.Duration(i) * time.Second), Entity: "alice", Contact: contact, Kind: "subscribe", Action: "review"},
				})
			}
			if err := db.Apply(ctx, batch); err != nil {
				t.Fatal(err)
			}
			if err := db.Check(ctx); err != nil {
				t.Fatalf("before the damage: %v", err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			want := tc.damage(t, path)

			db, err = Open(ctx, path)
			if err != nil {
				t.Fatalf("Open after the damage: %v", err)
			}
			defer db.Close()
			err = db.Check(ctx)
			if err == nil {
				t.Fatal("Check found nothing wrong with a damaged database")
			}
			t.Logf("Check: %v", err)
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check = %q, want it to name %q", err, w)
				}
			}
		})
	}
}

// rawOpen opens the database file with foreign keys off and one
// connection, as a careless tool would.
func rawOpen(t *testing.T, path string) *sql.DB {
	t.Helper()
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path)}
	raw, err := sql.Open("sqlite3", u.String()+"?"+url.Values{"mode": {"rw"}, "_foreign_keys": {"0"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	var fk int
	if err := raw.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 0 {
		raw.Close()
		t.Fatalf("raw connection: foreign_keys = %d, %v; want 0", fk, err)
	}
	return raw
}

// orphanRequest adds a held request whose roster item does not exist.
func orphanRequest(t *testing.T, path string) []string {
	raw := rawOpen(t, path)
	defer raw.Close()
	res, err := raw.Exec(`INSERT INTO requests (entity, contact, rule, subscribe_back, created) VALUES ('ghost', 'nobody@example.org', '', 0, 0)`)
	if err != nil {
		t.Fatal(err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		t.Fatal(err)
	}
	return []string{"sqlite: foreign key check: ", fmt.Sprintf("requests row %d has no roster", id)}
}

// overwriteIndexEntry changes the key of the first entry of the audit_at
// index in the file itself: the index no longer matches its table.
func overwriteIndexEntry(t *testing.T, path string) []string {
	raw := rawOpen(t, path)
	var root, pageSize int64
	err := raw.QueryRow(`SELECT rootpage FROM sqlite_schema WHERE type = 'index' AND name = 'audit_at'`).Scan(&root)
	if err == nil {
		err = raw.QueryRow(`PRAGMA page_size`).Scan(&pageSize)
	}
	if cerr := raw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	// With every connection closed, the WAL was checkpointed into the file
	// and removed: the file alone holds the pages.
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		t.Fatalf("%s-wal holds %d bytes after every connection closed", path, fi.Size())
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	}()
	page := make([]byte, pageSize)
	off := (root - 1) * pageSize
	if _, err := f.ReadAt(page, off); err != nil {
		t.Fatal(err)
	}
	// A b-tree leaf index page: type 0x0a, cell count at 3, cell pointers
	// from 8. A cell is the payload size (varint) and the record: its
	// header size (varint), the serial types, then the values, the indexed
	// column (at) first.
	if page[0] != 0x0a || binary.BigEndian.Uint16(page[3:]) == 0 {
		t.Fatalf("page %d of audit_at is of type %#x with %d cells, want a leaf index page with cells", root, page[0], binary.BigEndian.Uint16(page[3:]))
	}
	cell := int(binary.BigEndian.Uint16(page[8:]))
	_, n := sqliteVarint(page[cell:])
	record := cell + n
	hdrSize, _ := sqliteVarint(page[record:])
	value := record + int(hdrSize)
	if value >= len(page) {
		t.Fatalf("cell at %d: record header of %d bytes runs off the page", cell, hdrSize)
	}
	page[value] ^= 0x40 // the most significant byte of at
	if _, err := f.WriteAt(page, off); err != nil {
		t.Fatal(err)
	}
	return []string{"sqlite: integrity check: ", "audit_at"}
}

// sqliteVarint decodes one of SQLite's big-endian varints and returns it
// with its length.
func sqliteVarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < 9 && i < len(b); i++ {
		if i == 8 {
			return v<<8 | uint64(b[i]), 9
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return v, len(b)
}
