package main

import (
	"context"
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
	return fs.String("key-dir", dir, "directory of the development signing key (hexride dev creates it)")
}

// tokenCmd mints a development token from the local dev key.
func tokenCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", "", "rider, driver, dispatcher or service")
	sub := fs.String("sub", "", "subject: the rider, driver, dispatcher or service id")
	ttl := fs.Duration("ttl", 12*time.Hour, "lifetime")
	dir := devKeyFlag(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return err
	}
	p, err := auth.ParsePrincipal(*role + ":" + *sub)
	if err != nil {
		return fmt.Errorf("token: --role and --sub: %w", err)
	}
	key, err := auth.LoadOrCreateDevKey(*dir)
	if err != nil {
		return err
	}
	tok, err := auth.Mint(key.Private, key.Kid, auth.DevIssuer, auth.DevAudience, p.Role, p.Subject, *ttl, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
