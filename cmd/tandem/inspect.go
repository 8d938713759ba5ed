package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/config"
	"tandem/internal/daemon"
	"tandem/internal/folder"
	"tandem/internal/record"
)

func loadConfig(home string) (*config.Config, error) {
	return config.Load(filepath.Join(home, daemon.ConfigFile))
}

// printRows prints rows as a JSON array (never null) or, for people, as a
// table under header (one line per row from line, tab-separated) followed
// by hint; empty is printed instead when there are no rows.
func printRows[T any](out io.Writer, asJSON bool, rows []T, empty, header string, line func(T) string, hint string) error {
	if asJSON {
		if rows == nil {
			rows = []T{}
		}
		b, err := json.MarshalIndent(rows, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, string(b))
		return err
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(out, empty)
		return err
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, line(r))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(out, "\n"+hint)
	return err
}

func conflictsCmd() *cobra.Command {
	var home string
	var asJSON bool
	c := &cobra.Command{
		Use:   "conflicts --home DIR",
		Short: "List conflict copies in every folder, with the node and time each came from",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadConfig(home)
			if err != nil {
				return err
			}
			type row struct {
				Folder string `json:"folder"`
				folder.Conflict
			}
			var rows []row
			for _, fc := range cfg.Folders {
				err := filepath.WalkDir(fc.Path, func(p string, d fs.DirEntry, err error) error {
					if err != nil {
						return nil // unreadable parts are skipped; status reports them
					}
					rel, _ := filepath.Rel(fc.Path, p)
					rel = filepath.ToSlash(rel)
					if rel == record.MarkerDir && d.IsDir() {
						return filepath.SkipDir
					}
					if cf, ok := folder.ParseConflict(rel); ok && rel != "." {
						rows = append(rows, row{Folder: fc.ID, Conflict: cf})
					}
					return nil
				})
				if err != nil {
					return fmt.Errorf("folder %q: %w", fc.ID, err)
				}
			}
			return printRows(c.OutOrStdout(), asJSON, rows, "no conflict copies",
				"FOLDER\tCONFLICT COPY\tOF\tFROM NODE\tVERSION TIME (UTC)",
				func(r row) string {
					return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", r.Folder, r.Path, r.Original, r.Node, r.Time.Format(time.DateTime))
				},
				"Each copy is an ordinary file on every node. Keep the version you want at the original name and delete the copy.")
		},
	}
	homeFlag(c, &home)
	c.Flags().BoolVar(&asJSON, "json", false, "print machine-readable JSON")
	return c
}

func trashCmd() *cobra.Command {
	var home string
	var asJSON bool
	c := &cobra.Command{
		Use:   "trash --home DIR",
		Short: "List files tandem deleted or overwrote because of remote changes (kept trash_days days)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadConfig(home)
			if err != nil {
				return err
			}
			type row struct {
				Folder string `json:"folder"`
				folder.TrashEntry
			}
			var rows []row
			for _, fc := range cfg.Folders {
				es, err := folder.ListTrash(fc.Path)
				if err != nil {
					return fmt.Errorf("folder %q: %w", fc.ID, err)
				}
				for _, e := range es {
					rows = append(rows, row{Folder: fc.ID, TrashEntry: e})
				}
			}
			return printRows(c.OutOrStdout(), asJSON, rows, "the trash is empty",
				"FOLDER\tREMOVED (UTC)\tSIZE\tPATH\tKEPT AS",
				func(r row) string {
					return fmt.Sprintf("%s\t%s\t%d\t%s\t%s", r.Folder, r.Time.Format(time.DateTime), r.Size, r.Path, r.File)
				},
				"To restore, copy a file back: cp -a '<KEPT AS>' '<folder>/<PATH>' (it then syncs as a new change).")
		},
	}
	homeFlag(c, &home)
	c.Flags().BoolVar(&asJSON, "json", false, "print machine-readable JSON")
	return c
}
