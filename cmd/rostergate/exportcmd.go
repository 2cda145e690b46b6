package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"rostergate/config"
	"rostergate/export"
	"rostergate/store"
)

// cmdExport writes what the store holds to a file (docs/export.md).
func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("export", "-config FILE -out FILE", stderr)
	path := configFlag(fs)
	out := fs.String("out", "", "the `file` to write (must not exist); - for the standard output")
	live := fs.Bool("live", false, "export while rostergate runs (a batch committed meanwhile may show in part)")
	if help, err := parse(fs, args, stdout); help || err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stderr, "rostergate export: -out is required")
		fs.Usage()
		return errUsage
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		return err
	}
	db, err := openStore(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer db.Close()
	if !*live {
		release, err := db.Hold(ctx)
		if errors.Is(err, store.ErrHeld) {
			return errors.New("rostergate is running: stop it for an exact copy, or export with -live")
		}
		if err != nil {
			return err
		}
		defer release()
	}
	w, info := stdout, stderr
	var f *os.File
	if *out != "-" {
		if f, err = os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			return err
		}
		w, info = f, stdout
	}
	start := time.Now()
	c, err := export.Write(ctx, db, cfg.Component.Domain, w)
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(*out)
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(info, "exported %s, in %s\n", c, time.Since(start).Round(time.Millisecond))
	return nil
}

// cmdImport loads an export into the config's store, which must be empty.
func cmdImport(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("import", "-config FILE -in FILE", stderr)
	path := configFlag(fs)
	in := fs.String("in", "", "the export `file` to load (rostergate export)")
	if help, err := parse(fs, args, stdout); help || err != nil {
		return err
	}
	if *in == "" {
		fmt.Fprintln(stderr, "rostergate import: -in is required")
		fs.Usage()
		return errUsage
	}
	if _, err := os.Stat(*in); err != nil {
		return err
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		return err
	}
	db, err := openStore(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer db.Close()
	release, err := db.Hold(ctx)
	if errors.Is(err, store.ErrHeld) {
		return errors.New("rostergate is running on this store: stop it, and import into an empty store")
	}
	if err != nil {
		return err
	}
	defer release()
	start := time.Now()
	c, err := export.Read(ctx, func() (io.ReadCloser, error) { return os.Open(*in) }, db, cfg.Component.Domain)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %s into %s, in %s\n", c, storeName(cfg), time.Since(start).Round(time.Millisecond))
	return nil
}
