package postgres

import (
	"context"
	"testing"

	"rostergate/internal/pgtest"
	"rostergate/store"
	"rostergate/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestContract runs the behaviour suite every store backend passes, each
// open on a fresh database.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		dsn := pgtest.Start(t).NewDatabase(t)
		db, err := Open(context.Background(), dsn)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return db
	})
}
