package main

import (
	"encoding/json"
	"fmt"
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
			out := c.OutOrStdout()
			if asJSON {
				if rows == nil {
					rows = []row{}
				}
				b, _ := json.MarshalIndent(rows, "", "  ")
				fmt.Fprintln(out, string(b))
				return nil
			}
			if len(rows) == 0 {
				fmt.Fprintln(out, "no conflict copies")
				return nil
			}
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "FOLDER\tCONFLICT COPY\tOF\tFROM NODE\tVERSION TIME (UTC)")
			for _, r := range rows {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Folder, r.Path, r.Original, r.Node, r.Time.Format(time.DateTime))
			}
			w.Flush()
			fmt.Fprintln(out, "\nEach copy is an ordinary file on every node. Keep the version you want at the original name and delete the copy.")
			return nil
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
			out := c.OutOrStdout()
			if asJSON {
				if rows == nil {
					rows = []row{}
				}
				b, _ := json.MarshalIndent(rows, "", "  ")
				fmt.Fprintln(out, string(b))
				return nil
			}
			if len(rows) == 0 {
				fmt.Fprintln(out, "the trash is empty")
				return nil
			}
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "FOLDER\tREMOVED (UTC)\tSIZE\tPATH\tKEPT AS")
			for _, r := range rows {
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", r.Folder, r.Time.Format(time.DateTime), r.Size, r.Path, r.File)
			}
			w.Flush()
			fmt.Fprintln(out, "\nTo restore, copy a file back: cp -a '<KEPT AS>' '<folder>/<PATH>' (it then syncs as a new change).")
			return nil
		},
	}
	homeFlag(c, &home)
	c.Flags().BoolVar(&asJSON, "json", false, "print machine-readable JSON")
	return c
}
