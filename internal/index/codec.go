package index

import (
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"tandem/internal/record"
	"tandem/internal/version"
)

// Records are stored in the protocol buffers wire format, written and read
// field by field with protowire (no generated code, no reflection): every
// transaction that stores or reads a record encodes or decodes it, and the
// reflection-driven CBOR that the index used first was a tenth of a
// sending node's CPU during a transfer of many small files.
//
// A stored value starts with formatProto; anything else is a record in
// the earlier CBOR form (a CBOR map starts with a byte of 0xa0-0xbf), which
// is still read, so an index written by an earlier version needs no
// migration: each record moves to the new form the next time it is
// stored. Field numbers are the CBOR keys of record.Record. Zero values
// are left out; unknown fields are skipped, so a later version may add
// fields that this one ignores.
const formatProto = 0x01

// Field numbers (the CBOR keys of record.Record).
const (
	fPath        = 1
	fType        = 2
	fDeleted     = 3
	fSize        = 4
	fMode        = 5
	fMTime       = 6
	fUID         = 7
	fGID         = 8
	fTarget      = 9
	fBlocks      = 10 // repeated: hash (32 bytes), the size as a varint, then the check (8 bytes, little-endian) if known
	fVersion     = 11 // packed varints: node ID, counter, node ID, counter...
	fModifiedBy  = 12
	fSeq         = 13
	fDot         = 14
	fCopyOf      = 15
	fCopyBy      = 16
	fCopyDot     = 17
	fPrevBy      = 18
	fPrevDot     = 19
	fInode       = 20
	fCTime       = 21
	fCopyPrevBy  = 22
	fCopyPrevDot = 23
	fEarlier     = 24 // packed varints: by, dot, by, dot...
	fCopyEarlier = 25 // likewise
	fMerged      = 26 // likewise
)

func encode(r *record.Record) ([]byte, error) {
	n := 64 + len(r.Path) + len(r.Target) + len(r.CopyOf) + 48*len(r.Blocks) + 20*len(r.Version)
	b := make([]byte, 1, n)
	b[0] = formatProto
	b = appendString(b, fPath, r.Path)
	b = appendUint(b, fType, uint64(r.Type))
	if r.Deleted {
		b = appendUint(b, fDeleted, 1)
	}
	b = appendInt(b, fSize, r.Size)
	b = appendUint(b, fMode, uint64(r.Mode))
	b = appendInt(b, fMTime, r.MTime)
	b = appendUint(b, fUID, uint64(r.UID))
	b = appendUint(b, fGID, uint64(r.GID))
	b = appendString(b, fTarget, r.Target)
	for _, bl := range r.Blocks {
		n := len(bl.Hash) + protowire.SizeVarint(uint64(bl.Size))
		if bl.Check != 0 {
			n += 8
		}
		b = protowire.AppendTag(b, fBlocks, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		b = append(b, bl.Hash[:]...)
		b = protowire.AppendVarint(b, uint64(bl.Size))
		if bl.Check != 0 {
			b = binary.LittleEndian.AppendUint64(b, bl.Check)
		}
	}
	if len(r.Version) > 0 {
		size := 0
		for _, c := range r.Version {
			size += protowire.SizeVarint(c.ID) + protowire.SizeVarint(c.Value)
		}
		b = protowire.AppendTag(b, fVersion, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		for _, c := range r.Version {
			b = protowire.AppendVarint(b, c.ID)
			b = protowire.AppendVarint(b, c.Value)
		}
	}
	b = appendUint(b, fModifiedBy, r.ModifiedBy)
	b = appendUint(b, fSeq, r.Seq)
	b = appendUint(b, fDot, r.Dot)
	b = appendString(b, fCopyOf, r.CopyOf)
	b = appendUint(b, fCopyBy, r.CopyBy)
	b = appendUint(b, fCopyDot, r.CopyDot)
	b = appendUint(b, fPrevBy, r.PrevBy)
	b = appendUint(b, fPrevDot, r.PrevDot)
	b = appendUint(b, fInode, r.Inode)
	b = appendInt(b, fCTime, r.CTime)
	b = appendUint(b, fCopyPrevBy, r.CopyPrevBy)
	b = appendUint(b, fCopyPrevDot, r.CopyPrevDot)
	b = appendDots(b, fEarlier, r.Earlier)
	b = appendDots(b, fCopyEarlier, r.CopyEarlier)
	b = appendDots(b, fMerged, r.Merged)
	return b, nil
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendInt writes a signed value zigzag-encoded (sint64): times before
// 1970 stay short.
func appendInt(b []byte, num protowire.Number, v int64) []byte {
	return appendUint(b, num, protowire.EncodeZigZag(v))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendDots(b []byte, num protowire.Number, ds []record.Dot) []byte {
	if len(ds) == 0 {
		return b
	}
	size := 0
	for _, d := range ds {
		size += protowire.SizeVarint(d.By) + protowire.SizeVarint(d.Dot)
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	for _, d := range ds {
		b = protowire.AppendVarint(b, d.By)
		b = protowire.AppendVarint(b, d.Dot)
	}
	return b
}

func decode(b []byte) (record.Record, error) {
	if len(b) > 0 && b[0] == formatProto {
		return decodeProto(b[1:], false)
	}
	var r record.Record
	err := decMode.Unmarshal(b, &r)
	return r, err
}

// decodeStat decodes only what a scan compares with the disk (see
// statFields): path, type, deleted, size, mode, mtime, owner and the stat
// cache.
func decodeStat(b []byte) (record.Record, error) {
	if len(b) > 0 && b[0] == formatProto {
		return decodeProto(b[1:], true)
	}
	var s statFields
	if err := decMode.Unmarshal(b, &s); err != nil {
		return record.Record{}, err
	}
	return record.Record{Path: s.Path, Type: s.Type, Deleted: s.Deleted, Size: s.Size, Mode: s.Mode, MTime: s.MTime,
		UID: s.UID, GID: s.GID, Inode: s.Inode, CTime: s.CTime}, nil
}

var errMalformed = errors.New("malformed record")

// decodeProto reads a record in the protowire form. With statOnly, the
// fields a scan does not compare (blocks, versions, target, copy data)
// are skipped without being decoded.
func decodeProto(b []byte, statOnly bool) (record.Record, error) {
	var r record.Record
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return r, fmt.Errorf("%w: %v", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return r, fmt.Errorf("%w: field %d: %v", errMalformed, num, protowire.ParseError(n))
			}
			b = b[n:]
			if statOnly && !statField(num) {
				continue
			}
			if err := setVarint(&r, num, v); err != nil {
				return r, err
			}
			continue
		}
		if typ != protowire.BytesType || statOnly && num != fPath {
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return r, fmt.Errorf("%w: field %d: %v", errMalformed, num, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return r, fmt.Errorf("%w: field %d: %v", errMalformed, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := setBytes(&r, num, v); err != nil {
			return r, err
		}
	}
	return r, nil
}

// statField reports whether field num is one that decodeStat returns.
func statField(num protowire.Number) bool {
	switch num {
	case fPath, fType, fDeleted, fSize, fMode, fMTime, fUID, fGID, fInode, fCTime:
		return true
	}
	return false
}

func setVarint(r *record.Record, num protowire.Number, v uint64) error {
	switch num {
	case fType:
		if v > 0xff {
			return fmt.Errorf("%w: type %d", errMalformed, v)
		}
		r.Type = record.Type(v)
	case fDeleted:
		r.Deleted = v != 0
	case fSize:
		r.Size = protowire.DecodeZigZag(v)
	case fMode:
		r.Mode = uint32(v)
	case fMTime:
		r.MTime = protowire.DecodeZigZag(v)
	case fUID:
		r.UID = uint32(v)
	case fGID:
		r.GID = uint32(v)
	case fModifiedBy:
		r.ModifiedBy = v
	case fSeq:
		r.Seq = v
	case fDot:
		r.Dot = v
	case fCopyBy:
		r.CopyBy = v
	case fCopyDot:
		r.CopyDot = v
	case fPrevBy:
		r.PrevBy = v
	case fPrevDot:
		r.PrevDot = v
	case fInode:
		r.Inode = v
	case fCTime:
		r.CTime = protowire.DecodeZigZag(v)
	case fCopyPrevBy:
		r.CopyPrevBy = v
	case fCopyPrevDot:
		r.CopyPrevDot = v
	}
	return nil
}

func setBytes(r *record.Record, num protowire.Number, v []byte) error {
	switch num {
	case fPath:
		r.Path = string(v)
	case fTarget:
		r.Target = string(v)
	case fCopyOf:
		r.CopyOf = string(v)
	case fBlocks:
		var bl record.Block
		if len(v) < len(bl.Hash) {
			return fmt.Errorf("%w: block of %d bytes", errMalformed, len(v))
		}
		copy(bl.Hash[:], v)
		size, n := protowire.ConsumeVarint(v[len(bl.Hash):])
		if n < 0 || size > 1<<32-1 {
			return fmt.Errorf("%w: block size", errMalformed)
		}
		bl.Size = uint32(size)
		// No check: written before blocks had one. Bytes after it: a
		// later release's, skipped like unknown fields.
		switch rest := v[len(bl.Hash)+n:]; {
		case len(rest) >= 8:
			bl.Check = binary.LittleEndian.Uint64(rest)
		case len(rest) > 0:
			return fmt.Errorf("%w: block check of %d bytes", errMalformed, len(rest))
		}
		r.Blocks = append(r.Blocks, bl)
	case fVersion:
		var vec version.Vector
		if err := consumePairs(v, func(id, value uint64) { vec = append(vec, version.Counter{ID: id, Value: value}) }); err != nil {
			return fmt.Errorf("version: %w", err)
		}
		r.Version = vec
	case fEarlier, fCopyEarlier, fMerged:
		var ds []record.Dot
		if err := consumePairs(v, func(by, dot uint64) { ds = append(ds, record.Dot{By: by, Dot: dot}) }); err != nil {
			return fmt.Errorf("dots: %w", err)
		}
		switch num {
		case fEarlier:
			r.Earlier = ds
		case fCopyEarlier:
			r.CopyEarlier = ds
		default:
			r.Merged = ds
		}
	}
	return nil
}

// consumePairs reads packed varints two at a time, calling add with each
// pair; an odd number of them is malformed.
func consumePairs(b []byte, add func(x, y uint64)) error {
	for len(b) > 0 {
		x, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		y, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return fmt.Errorf("%w: odd number of values or %v", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		add(x, y)
	}
	return nil
}
