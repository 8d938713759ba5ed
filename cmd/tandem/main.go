// Command tandem keeps directory trees identical on two or more servers,
// in both directions, in near real time, without losing or resurrecting
// files when a server goes down and comes back.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"tandem/internal/config"
	"tandem/internal/daemon"
	"tandem/internal/identity"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tandem:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "tandem",
		Short:         "Two-way, real-time directory sync for servers that never loses or resurrects a file",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(initCmd(), idCmd(), runCmd(), statusCmd(), conflictsCmd(), trashCmd(), demoCmd())
	return root
}

func homeFlag(c *cobra.Command, home *string) {
	c.Flags().StringVar(home, "home", "", "tandem's home directory (identity, tandem.toml, index)")
	_ = c.MarkFlagRequired("home")
}

func initCmd() *cobra.Command {
	var home string
	c := &cobra.Command{
		Use:   "init --home DIR",
		Short: "Create a home directory with a new identity and a commented tandem.toml; print the node ID",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := os.MkdirAll(home, 0o700); err != nil {
				return err
			}
			cfgPath := filepath.Join(home, daemon.ConfigFile)
			if _, err := os.Stat(cfgPath); err == nil {
				return fmt.Errorf("%s already exists; refusing to overwrite", cfgPath)
			}
			id, err := identity.Generate(home)
			if err != nil {
				return err
			}
			if err := os.WriteFile(cfgPath, []byte(config.Template()), 0o600); err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), id.ID.String())
			return nil
		},
	}
	homeFlag(c, &home)
	return c
}

func idCmd() *cobra.Command {
	var home string
	c := &cobra.Command{
		Use:   "id --home DIR",
		Short: "Print this node's ID",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			id, err := identity.Load(home)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), id.ID.String())
			return nil
		},
	}
	homeFlag(c, &home)
	return c
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func runCmd() *cobra.Command {
	var home, level string
	c := &cobra.Command{
		Use:   "run --home DIR",
		Short: "Run the daemon in the foreground, logging to stderr (SIGINT/SIGTERM stop it cleanly)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log, err := newLogger(level)
			if err != nil {
				return err
			}
			d, err := daemon.Load(home, log)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			setGC()
			if p := os.Getenv("TANDEM_CPUPROFILE"); p != "" {
				end, err := startCPUProfile(p)
				if err != nil {
					return err
				}
				defer end()
			}
			return d.Run(ctx)
		},
	}
	homeFlag(c, &home)
	c.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return c
}

func statusCmd() *cobra.Command {
	var home string
	var asJSON bool
	c := &cobra.Command{
		Use:   "status --home DIR",
		Short: "Show each folder and peer: connected, in sync or pending items, last error",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var st daemon.Status
			if err := daemon.QueryStatus(c.Context(), home, &st); err != nil {
				if asJSON {
					b, _ := json.Marshal(map[string]any{"running": false, "error": err.Error()})
					fmt.Fprintln(c.OutOrStdout(), string(b))
				}
				return err
			}
			if asJSON {
				b, err := json.MarshalIndent(st, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(c.OutOrStdout(), string(b))
				return nil
			}
			daemon.PrintStatus(c.OutOrStdout(), &st)
			if st.HasError() {
				return errors.New("a folder or peer reports an error (see above)")
			}
			return nil
		},
	}
	homeFlag(c, &home)
	c.Flags().BoolVar(&asJSON, "json", false, "print machine-readable JSON")
	return c
}
