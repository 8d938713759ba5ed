package index

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"

	"tandem/internal/record"
	"tandem/internal/version"
)

// encodeCBOR writes a record in the form the index used before codec.go.
func encodeCBOR(t interface{ Fatal(...any) }, r *record.Record) []byte {
	em, err := cbor.CanonicalEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := em.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func genDots(t *rapid.T, label string) []record.Dot {
	n := rapid.IntRange(0, record.MaxEarlier).Draw(t, label+" len")
	var out []record.Dot
	for range n {
		out = append(out, record.Dot{By: rapid.Uint64().Draw(t, label+" by"), Dot: rapid.Uint64().Draw(t, label+" dot")})
	}
	return out
}

// genRecord draws a record with every field, values over their whole range.
func genRecord(t *rapid.T) record.Record {
	r := record.Record{
		Path:        rapid.String().Draw(t, "path"),
		Type:        record.Type(rapid.Uint8().Draw(t, "type")),
		Deleted:     rapid.Bool().Draw(t, "deleted"),
		Size:        rapid.Int64().Draw(t, "size"),
		Mode:        rapid.Uint32().Draw(t, "mode"),
		MTime:       rapid.Int64().Draw(t, "mtime"),
		UID:         rapid.Uint32().Draw(t, "uid"),
		GID:         rapid.Uint32().Draw(t, "gid"),
		Target:      rapid.String().Draw(t, "target"),
		ModifiedBy:  rapid.Uint64().Draw(t, "modified by"),
		Dot:         rapid.Uint64().Draw(t, "dot"),
		Seq:         rapid.Uint64().Draw(t, "seq"),
		PrevBy:      rapid.Uint64().Draw(t, "prev by"),
		PrevDot:     rapid.Uint64().Draw(t, "prev dot"),
		Earlier:     genDots(t, "earlier"),
		CopyOf:      rapid.String().Draw(t, "copy of"),
		CopyBy:      rapid.Uint64().Draw(t, "copy by"),
		CopyDot:     rapid.Uint64().Draw(t, "copy dot"),
		CopyPrevBy:  rapid.Uint64().Draw(t, "copy prev by"),
		CopyPrevDot: rapid.Uint64().Draw(t, "copy prev dot"),
		CopyEarlier: genDots(t, "copy earlier"),
		Merged:      genDots(t, "merged"),
		Inode:       rapid.Uint64().Draw(t, "inode"),
		CTime:       rapid.Int64().Draw(t, "ctime"),
	}
	for range rapid.IntRange(0, 5).Draw(t, "blocks") {
		var b record.Block
		copy(b.Hash[:], rapid.SliceOfN(rapid.Byte(), 32, 32).Draw(t, "hash"))
		b.Size = rapid.Uint32().Draw(t, "block size")
		if rapid.Bool().Draw(t, "block has a check") { // records of earlier releases have none
			b.Check = rapid.Uint64Min(1).Draw(t, "block check")
		}
		r.Blocks = append(r.Blocks, b)
	}
	for range rapid.IntRange(0, 4).Draw(t, "counters") {
		r.Version = append(r.Version, version.Counter{ID: rapid.Uint64().Draw(t, "id"), Value: rapid.Uint64().Draw(t, "value")})
	}
	return r
}

// statOf is the part of r that decodeStat returns.
func statOf(r record.Record) record.Record {
	return record.Record{Path: r.Path, Type: r.Type, Deleted: r.Deleted, Size: r.Size, Mode: r.Mode, MTime: r.MTime,
		UID: r.UID, GID: r.GID, Inode: r.Inode, CTime: r.CTime}
}

var equateEmpty = cmpopts.EquateEmpty()

func TestCodecRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := genRecord(t)
		b, err := encode(&r)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != formatProto {
			t.Fatalf("first byte %#x", b[0])
		}
		checkDecodes(t, "round trip", b, r)
	})
}

// checkDecodes checks that b decodes to r, and to r's stat fields with
// decodeStat.
func checkDecodes(t *rapid.T, what string, b []byte, r record.Record) {
	got, err := decode(b)
	if err != nil {
		t.Fatalf("%s: decode: %v", what, err)
	}
	if d := cmp.Diff(r, got, equateEmpty); d != "" {
		t.Fatalf("%s (-want +got):\n%s", what, d)
	}
	st, err := decodeStat(b)
	if err != nil {
		t.Fatalf("%s: decodeStat: %v", what, err)
	}
	if d := cmp.Diff(statOf(r), st, equateEmpty); d != "" {
		t.Fatalf("%s: decodeStat (-want +got):\n%s", what, d)
	}
}

// Records stored in the CBOR form by an earlier version read the same.
func TestCodecReadsCBOR(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := genRecord(t)
		r.Path = rapid.StringMatching(`[a-z/]{1,20}`).Draw(t, "valid path") // CBOR strings must be valid UTF-8
		r.Target = ""
		r.CopyOf = ""
		checkDecodes(t, "CBOR record", encodeCBOR(t, &r), r)
	})
}

// Every field of record.Record survives on its own: a field added to the
// record but not to the codec fails here.
func TestCodecCoversEveryField(t *testing.T) {
	typ := reflect.TypeFor[record.Record]()
	for i := range typ.NumField() {
		sf := typ.Field(i)
		if !sf.IsExported() {
			continue
		}
		var r record.Record
		fv := reflect.ValueOf(&r).Elem().Field(i)
		switch fv.Kind() {
		case reflect.String:
			fv.SetString("x/y")
		case reflect.Bool:
			fv.SetBool(true)
		case reflect.Int64:
			fv.SetInt(-7)
		case reflect.Uint8, reflect.Uint32, reflect.Uint64:
			fv.SetUint(200)
		case reflect.Slice:
			el := reflect.New(fv.Type().Elem()).Elem()
			for j := range el.NumField() {
				f := el.Field(j)
				switch {
				case !el.Type().Field(j).IsExported():
				case f.Kind() == reflect.Uint64 || f.Kind() == reflect.Uint32:
					f.SetUint(uint64(j + 3))
				case f.Kind() == reflect.Array:
					f.Index(0).SetUint(9)
				default:
					t.Fatalf("field %s: element field of kind %s not covered by this test", sf.Name, f.Kind())
				}
			}
			fv.Set(reflect.Append(fv, el))
		default:
			t.Fatalf("field %s of kind %s not covered by this test", sf.Name, fv.Kind())
		}
		b, err := encode(&r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decode(b)
		if err != nil {
			t.Fatalf("field %s: %v", sf.Name, err)
		}
		if d := cmp.Diff(r, got); d != "" {
			t.Errorf("field %s lost (-want +got):\n%s", sf.Name, d)
		}
	}
}

// Damaged values give an error or some record, never a panic.
func TestCodecDamagedInput(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := genRecord(t)
		b, _ := encode(&r)
		switch rapid.IntRange(0, 2).Draw(t, "damage") {
		case 0:
			b = b[:rapid.IntRange(1, len(b)).Draw(t, "cut")]
		case 1:
			if len(b) < 2 {
				b = append(b, 0x80) // a tag whose varint never ends
				break
			}
			i := rapid.IntRange(1, len(b)-1).Draw(t, "at")
			b[i] = rapid.Byte().Draw(t, "byte")
		case 2:
			b = append([]byte{formatProto}, rapid.SliceOf(rapid.Byte()).Draw(t, "garbage")...)
		}
		_, _ = decode(b)
		_, _ = decodeStat(b)
	})
}

// An index whose records are in the CBOR form is read, and a record that
// is stored again is written in the new form.
func TestIndexWithCBORRecords(t *testing.T) {
	db, f := openFolder(t, filepath.Join(t.TempDir(), "index.db"))
	defer db.Close()
	old := record.Record{Path: "a/b", Type: record.File, Size: 5, Mode: 0o644, MTime: 3e18, Seq: 1,
		Blocks: []record.Block{{Hash: [32]byte{7}, Size: 5}}, Version: version.Vector{{ID: 4, Value: 1}}, ModifiedBy: 4, Dot: 1, Inode: 11, CTime: 12}
	if err := f.Update(func(tx *Tx) error {
		return tx.b.Bucket(bFiles).Put([]byte(old.Path), encodeCBOR(t, &old))
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.Update(func(tx *Tx) error {
		got, ok, err := tx.Get(old.Path)
		if err != nil || !ok {
			t.Fatalf("get: %v %v", ok, err)
		}
		if d := cmp.Diff(old, got, equateEmpty); d != "" {
			t.Errorf("CBOR record read (-want +got):\n%s", d)
		}
		st, _, err := tx.GetStat(old.Path)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(statOf(old), st, equateEmpty); d != "" {
			t.Errorf("CBOR record's stat (-want +got):\n%s", d)
		}
		return tx.SetStat(old.Path, 21, 22)
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.View(func(tx *Tx) error {
		if v := tx.b.Bucket(bFiles).Get([]byte(old.Path)); len(v) == 0 || v[0] != formatProto {
			t.Errorf("record stored again is not in the new form: % x", v)
		}
		got, _, err := tx.Get(old.Path)
		want := old
		want.Inode, want.CTime = 21, 22
		if d := cmp.Diff(want, got, equateEmpty); err != nil || d != "" {
			t.Errorf("after SetStat (-want +got):\n%s %v", d, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func benchRecord() record.Record {
	return record.Record{Path: "dir001/file01234.dat", Type: record.File, Size: 8000, Mode: 0o644, MTime: 1764760000123456789,
		Blocks:  []record.Block{{Hash: [32]byte{1, 2, 3}, Size: 8000}},
		Version: version.Vector{{ID: 0x1234567890abcdef, Value: 5}, {ID: 0x7234567890abcdef, Value: 2}}, ModifiedBy: 0x1234567890abcdef,
		Dot: 5, Seq: 12345, Inode: 1234567, CTime: 1764760000123456789}
}

// BenchmarkCodec compares the record codec with the CBOR form it replaced,
// for a small file's record.
func BenchmarkCodec(b *testing.B) {
	r := benchRecord()
	cb := encodeCBOR(b, &r)
	pb, _ := encode(&r)
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			_, _ = encode(&r)
		}
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			_, _ = decode(pb)
		}
	})
	b.Run("decode-stat", func(b *testing.B) {
		for b.Loop() {
			_, _ = decodeStat(pb)
		}
	})
	em, _ := cbor.CanonicalEncOptions().EncMode()
	b.Run("cbor-encode", func(b *testing.B) {
		for b.Loop() {
			_, _ = em.Marshal(&r)
		}
	})
	b.Run("cbor-decode", func(b *testing.B) {
		for b.Loop() {
			_, _ = decode(cb)
		}
	})
	b.Logf("%d bytes, %d in CBOR", len(pb), len(cb))
}
