package index

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"testing"

	"tandem/internal/record"
	"tandem/internal/version"
)

// BenchmarkCommitSmallFiles stores 20 000 one-block records in
// transactions of batch records, as a scan or a receiver does.
func BenchmarkCommitSmallFiles(b *testing.B) {
	for _, batch := range []int{100, 500} {
		b.Run(fmt.Sprint(batch), func(b *testing.B) {
			for range b.N {
				db, err := Open(filepath.Join(b.TempDir(), "i.db"))
				if err != nil {
					b.Fatal(err)
				}
				f, err := db.Folder("f")
				if err != nil {
					b.Fatal(err)
				}
				var v version.Vector
				v = v.Update(1, 0)
				const n = 20000
				for i := 0; i < n; i += batch {
					err := f.Update(func(tx *Tx) error {
						for k := i; k < i+batch; k++ {
							h := sha256.Sum256([]byte(fmt.Sprint(k)))
							r := record.Record{Path: fmt.Sprintf("dir%03d/file%05d.dat", k%200, k), Type: record.File, Size: 8000, Mode: 0o644, MTime: 1e18,
								Blocks: []record.Block{{Hash: h, Size: 8000}}, Version: v, ModifiedBy: 1, Dot: 1}
							if _, err := tx.Put(r); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				db.Close()
			}
		})
	}
}
