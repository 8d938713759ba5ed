package record

import (
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"pgregory.net/rapid"

	"tandem/internal/version"
)

func TestValidName(t *testing.T) {
	good := []string{"a", "a/b", "a b/c.d", ".hidden", "x/.tandem", "..a", "a..", "日本"}
	bad := []string{"", ".", "..", "../a", "a/..", "a/../b", "/a", "a/", "a//b", "./a", "a/./b", ".tandem", ".tandem/x", "a\\b", "a\x00b", "\xff"}
	for _, n := range good {
		if err := ValidName(n); err != nil {
			t.Errorf("ValidName(%q) = %v, want ok", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidName(n); err == nil {
			t.Errorf("ValidName(%q) accepted", n)
		}
	}
}

func TestValidate(t *testing.T) {
	v := version.Vector{}.Update(1, 1)
	ok := Record{Path: "f", Type: File, Size: 3, Mode: 0o644, Version: v, ModifiedBy: 1, Dot: v.Get(1), Blocks: []Block{{Size: 3}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(r *Record){
		"size mismatch": func(r *Record) { r.Size = 4 },
		"no version":    func(r *Record) { r.Version = nil },
		"bad vector":    func(r *Record) { r.Version = version.Vector{{ID: 2, Value: 1}, {ID: 1, Value: 1}} },
		"bad type":      func(r *Record) { r.Type = 9 },
		"bad mode":      func(r *Record) { r.Mode = 0o100644 },
		"empty block":   func(r *Record) { r.Blocks = []Block{{Size: 0}, {Size: 3}} },
		"bad symlink":   func(r *Record) { r.Type, r.Blocks, r.Size, r.Target = Symlink, nil, 0, "" },
		"escaping name": func(r *Record) { r.Path = "../x" },
		"no dot":        func(r *Record) { r.Dot = 0 },
		"dot outside":   func(r *Record) { r.Dot = v.Get(1) + 1 },
	} {
		r := ok
		mut(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSameContentAndMeta(t *testing.T) {
	a := Record{Type: File, Size: 3, Mode: 0o644, MTime: 1, Blocks: []Block{{Hash: [32]byte{1}, Size: 3}}}
	b := a
	b.MTime = 2
	if !SameContent(&a, &b) || SameMeta(&a, &b, false) {
		t.Fatal("mtime is metadata, not content")
	}
	b = a
	b.Blocks = []Block{{Hash: [32]byte{2}, Size: 3}}
	if SameContent(&a, &b) {
		t.Fatal("different blocks reported as same content")
	}
	d1, d2 := Record{Type: Dir, Mode: 0o755, MTime: 1}, Record{Type: Dir, Mode: 0o755, MTime: 9}
	if !SameMeta(&d1, &d2, false) {
		t.Fatal("directory mtimes are not synced")
	}
	x, y := Record{Deleted: true, Type: File}, Record{Deleted: true, Type: Dir}
	if !SameContent(&x, &y) {
		t.Fatal("two deletions are the same content")
	}
}

// A conflict copy counts as replaced by an event that replaced its version
// with other content, not by one that kept the bytes (a chmod, a touch):
// the copy may be where that event's own version is kept, merged with
// another node's copy of it under the same name.
func TestCopyReplacedOnlyByOtherContent(t *testing.T) {
	bytesOf := func(b byte) []Block { return []Block{{Hash: [32]byte{b}, Size: 5}} }
	v1 := Record{Path: "f", Type: File, Size: 5, Blocks: bytesOf(1), ModifiedBy: 2, Dot: 141}
	cp := Record{Path: "f.conflict-x", Type: File, Size: 5, Blocks: bytesOf(1), CopyOf: "f", CopyBy: 2, CopyDot: 141}
	chmod := Record{Path: "f", Type: File, Size: 5, Blocks: bytesOf(1), Mode: 0o640}.Replacing(&v1)
	if cp.CopyReplacedBy(&chmod) {
		t.Error("a copy counts as replaced by a chmod of its version")
	}
	edit := Record{Path: "f", Type: File, Size: 5, Blocks: bytesOf(2)}.Replacing(&v1)
	if !cp.CopyReplacedBy(&edit) {
		t.Error("a copy does not count as replaced by an edit of its version")
	}
	del := Record{Path: "f", Type: File, Deleted: true}.Replacing(&v1)
	if !cp.CopyReplacedBy(&del) {
		t.Error("a copy does not count as replaced by a delete of its version")
	}
	// An edit after the chmod still replaces the version before it.
	chmod.ModifiedBy, chmod.Dot = 2, 161
	later := Record{Path: "f", Type: File, Size: 5, Blocks: bytesOf(3)}.Replacing(&chmod)
	if !cp.CopyReplacedBy(&later) {
		t.Error("a copy does not count as replaced by an edit after a chmod of its version")
	}
}

func TestReplacingCarriesABoundedHistory(t *testing.T) {
	cur := Record{Path: "f", Type: File, ModifiedBy: 1, Dot: 1}
	for i := uint64(2); i < 10; i++ {
		next := Record{Path: "f", Type: File, Size: int64(i)}.Replacing(&cur) // new content each time
		next.ModifiedBy, next.Dot = 1+i%2, i
		if next.PrevBy != cur.ModifiedBy || next.PrevDot != cur.Dot {
			t.Fatalf("event %d: prev %d/%d, want %d/%d", i, next.PrevBy, next.PrevDot, cur.ModifiedBy, cur.Dot)
		}
		if len(next.Earlier) > MaxEarlier {
			t.Fatalf("event %d: %d earlier dots", i, len(next.Earlier))
		}
		// Every one of the last MaxEarlier+1 versions counts as replaced.
		for back := uint64(1); back <= MaxEarlier+1 && back < i; back++ {
			cp := Record{Path: "f.conflict-x", CopyOf: "f", CopyBy: 1 + (i-back)%2, CopyDot: i - back}
			if i-back == 1 {
				cp.CopyBy = 1
			}
			if !cp.CopyReplacedBy(&next) {
				t.Fatalf("event %d does not replace version %d", i, i-back)
			}
		}
		if i > MaxEarlier+2 {
			old := Record{Path: "f.conflict-x", CopyOf: "f", CopyBy: 1 + (i-MaxEarlier-2)%2, CopyDot: i - MaxEarlier - 2}
			if old.CopyReplacedBy(&next) {
				t.Fatalf("event %d still lists version %d", i, i-MaxEarlier-2)
			}
		}
		cur = next
	}
	bad := Record{Path: "f", Type: File, Version: version.Vector{}.Update(1, 1), ModifiedBy: 1, Dot: 1, Earlier: make([]Dot, MaxEarlier+1)}
	if err := bad.Validate(); err == nil {
		t.Fatal("a record with too long a history was accepted")
	}
	bad.Earlier, bad.Merged = nil, make([]Dot, MaxEarlier+1)
	if err := bad.Validate(); err == nil {
		t.Fatal("a record listing too many versions of its content was accepted")
	}
}

// TestReplacingRestatesSameBytes: a change that keeps the bytes (a chmod)
// lists the version it replaced, and what that one listed, in Merged; a
// change of content or a delete lists nothing. Earlier holds no dot twice.
func TestReplacingRestatesSameBytes(t *testing.T) {
	bytesOf := func(b byte) []Block { return []Block{{Hash: [32]byte{b}, Size: 5}} }
	v1 := Record{Path: "f", Type: File, Size: 5, Blocks: bytesOf(1), Mode: 0o644, ModifiedBy: 1, Dot: 1,
		Merged: []Dot{{By: 3, Dot: 1}}, PrevBy: 2, PrevDot: 4, Earlier: []Dot{{By: 2, Dot: 4}, {By: 2, Dot: 3}}}
	chmod := Record{Path: "f", Type: File, Size: 5, Blocks: bytesOf(1), Mode: 0o600}.Replacing(&v1)
	if want := []Dot{{By: 1, Dot: 1}, {By: 3, Dot: 1}}; !SameDots(chmod.Merged, want) {
		t.Errorf("chmod lists %v, want %v", chmod.Merged, want)
	}
	if want := []Dot{{By: 2, Dot: 4}, {By: 2, Dot: 3}}; !slices.Equal(chmod.Earlier, want) {
		t.Errorf("earlier %v, want %v (the Prev once)", chmod.Earlier, want)
	}
	edit := Record{Path: "f", Type: File, Size: 5, Blocks: bytesOf(2)}.Replacing(&v1)
	del := Record{Path: "f", Type: File, Deleted: true}.Replacing(&v1)
	if edit.Merged != nil || del.Merged != nil {
		t.Errorf("an edit lists %v, a delete %v; want nothing", edit.Merged, del.Merged)
	}
}

// MergeEarlier depends only on the set of dots it is given, stays within
// MaxEarlier and keeps the newest: nodes merging the same lists agree.
func TestMergeEarlierIsASetFunction(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		gen := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) Dot {
			return Dot{By: rapid.Uint64Range(1, 3).Draw(t, "by"), Dot: rapid.Uint64Range(1, 9).Draw(t, "dot")}
		}), 0, 6)
		a, b := gen.Draw(t, "a"), gen.Draw(t, "b")
		ab, ba := MergeEarlier(a, b), MergeEarlier(b, a)
		if !slices.Equal(ab, ba) {
			t.Fatalf("order matters: %v vs %v", ab, ba)
		}
		if len(ab) > MaxEarlier {
			t.Fatalf("%d dots", len(ab))
		}
		if !slices.Equal(MergeEarlier(ab, nil), ab) || !slices.Equal(MergeEarlier(ab, a), ab) {
			t.Fatalf("merging again changes %v", ab)
		}
		all := append(append([]Dot{}, a...), b...)
		for _, d := range all {
			if !slices.ContainsFunc(ab, func(e Dot) bool { return e.By == d.By && e.Dot == d.Dot }) && len(ab) < MaxEarlier {
				t.Fatalf("%v lost from %v", d, ab)
			}
		}
		for _, d := range ab {
			if !slices.ContainsFunc(all, func(e Dot) bool { return e.By == d.By && e.Dot == d.Dot }) {
				t.Fatalf("%v appeared", d)
			}
		}
	})
}

// A block reads back from CBOR with its check, and a block written before
// blocks had one (hash and size only) reads with check 0; anything else
// is an error, not a block.
func TestBlockCBOR(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var b Block
		copy(b.Hash[:], rapid.SliceOfN(rapid.Byte(), 32, 32).Draw(t, "hash"))
		b.Size = rapid.Uint32().Draw(t, "size")
		b.Check = rapid.Uint64().Draw(t, "check")
		data, err := cbor.Marshal([]Block{b})
		if err != nil {
			t.Fatal(err)
		}
		var got []Block
		if err := cbor.Unmarshal(data, &got); err != nil || len(got) != 1 || got[0] != b {
			t.Fatalf("read back %+v, %v; want %+v", got, err, b)
		}
		old, err := cbor.Marshal([]any{[]any{b.Hash, b.Size}})
		if err != nil {
			t.Fatal(err)
		}
		got = nil
		if err := cbor.Unmarshal(old, &got); err != nil || len(got) != 1 || got[0] != (Block{Hash: b.Hash, Size: b.Size}) {
			t.Fatalf("earlier form read as %+v, %v; want hash and size, no check", got, err)
		}
	})
	for _, bad := range []any{[]any{}, []any{[32]byte{}}, []any{"x", 1}, []any{[32]byte{}, 1, 2, 3}, 7} {
		data, _ := cbor.Marshal([]any{bad})
		var got []Block
		if err := cbor.Unmarshal(data, &got); err == nil {
			t.Errorf("%v read as %+v, want an error", bad, got)
		}
	}
}
