package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hexride/hexride/infra/auth"
)

// devKeyFlag binds --key-dir, the development signing key's directory.
func devKeyFlag(fs *flag.FlagSet) *string {
	dir, err := auth.DefaultDevKeyDir()
	if err != nil {
		dir = ""
	}
	return fs.String("key-dir", dir, "directory of the development signing key (hexride dev creates it on its first start)")
}

// tokenCmd mints a development token from the local dev key.
func tokenCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", summary("token"), stderr)
	role := fs.String("role", "", "rider, driver, dispatcher or service")
	sub := fs.String("sub", "", "subject: the rider, driver, dispatcher or service id")
	ttl := fs.Duration("ttl", 12*time.Hour, "lifetime")
	dir := devKeyFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return err
	}
	p, err := auth.ParsePrincipal(*role + ":" + *sub)
	if err != nil {
		return fmt.Errorf("token: --role and --sub: %w", err)
	}
	// Only hexride dev creates the key: a token signed by a key nothing
	// verifies would be refused by every service.
	key, err := auth.LoadDevKey(*dir)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("token: no development signing key in %s (hexride dev creates it on its first start; or pass --key-dir with the directory hexride dev uses): %w", *dir, err)
	}
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	tok, err := auth.Mint(key.Private, key.Kid, auth.DevIssuer, auth.DevAudience, p.Role, p.Subject, *ttl, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
