package roads

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file is a minimal reader of the OpenStreetMap PBF format
// (https://wiki.openstreetmap.org/wiki/PBF_Format): just nodes and ways,
// zlib or raw blobs. It exists so that roads stays pure Go: the osmpbf
// package of github.com/paulmach/osm switches to a cgo zlib
// (github.com/datadog/czlib) whenever cgo is enabled, which it is in this
// repository because of H3. The tests check this reader against osmpbf.

// ErrBadPBF is returned (wrapped, with detail) for input that is not a
// well-formed OSM PBF file.
var ErrBadPBF = errors.New("roads: malformed OSM PBF")

// Limits from the format's specification.
const (
	maxBlobHeader = 64 << 10
	maxBlobSize   = 32 << 20
)

// pbfHandler receives what the reader decodes. Tags are passed as parallel
// key/value slices valid only during the call.
type pbfHandler struct {
	node func(id int64, latE7, lngE7 int32)
	way  func(id int64, keys, vals []string, refs []int64)
}

// pbfReader decodes a PBF stream block by block.
type pbfReader struct {
	r      io.Reader
	h      pbfHandler
	offset int64
	buf    []byte
	raw    bytes.Buffer
	// per-block scratch
	strs []string
	keys []string
	vals []string
	refs []int64
}

func readPBF(r io.Reader, h pbfHandler) error {
	p := &pbfReader{r: r, h: h}
	sawHeader := false
	for {
		var lenBuf [4]byte
		if _, err := io.ReadFull(p.r, lenBuf[:]); err != nil {
			if err == io.EOF {
				if !sawHeader {
					return fmt.Errorf("%w: empty input", ErrBadPBF)
				}
				return nil
			}
			return p.errf("reading blob header length: %v", err)
		}
		n := binary.BigEndian.Uint32(lenBuf[:])
		if n == 0 || n > maxBlobHeader {
			return p.errf("blob header length %d (not a PBF file?)", n)
		}
		hdr, err := p.read(int(n))
		if err != nil {
			return err
		}
		typ, size, err := parseBlobHeader(hdr)
		if err != nil {
			return p.errf("blob header: %v", err)
		}
		if size <= 0 || size > maxBlobSize {
			return p.errf("blob size %d", size)
		}
		blob, err := p.read(int(size))
		if err != nil {
			return err
		}
		data, err := p.inflate(blob)
		if err != nil {
			return p.errf("blob: %v", err)
		}
		switch typ {
		case "OSMHeader":
			if err := checkHeaderBlock(data); err != nil {
				return p.errf("header block: %v", err)
			}
			sawHeader = true
		case "OSMData":
			if !sawHeader {
				return p.errf("data block before the OSMHeader block")
			}
			if err := p.primitiveBlock(data); err != nil {
				return p.errf("data block: %v", err)
			}
		default:
			// Unknown blob types are skipped, as the specification asks.
		}
		p.offset += 4 + int64(n) + int64(size)
	}
}

func (p *pbfReader) errf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrBadPBF, p.offset, fmt.Sprintf(format, args...))
}

func (p *pbfReader) read(n int) ([]byte, error) {
	if cap(p.buf) < n {
		p.buf = make([]byte, n)
	}
	b := p.buf[:n]
	if _, err := io.ReadFull(p.r, b); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, p.errf("truncated file")
		}
		return nil, p.errf("%v", err)
	}
	return b, nil
}

func parseBlobHeader(b []byte) (typ string, size int64, err error) {
	err = eachField(b, func(num protowire.Number, wt protowire.Type, v uint64, bs []byte) error {
		switch {
		case num == 1 && wt == protowire.BytesType:
			typ = string(bs)
		case num == 3 && wt == protowire.VarintType:
			size = int64(v)
		}
		return nil
	})
	if err == nil && typ == "" {
		err = errors.New("no type")
	}
	return typ, size, err
}

// inflate returns the uncompressed contents of a Blob message.
func (p *pbfReader) inflate(blob []byte) ([]byte, error) {
	var raw, zdata []byte
	rawSize := -1
	var other protowire.Number
	err := eachField(blob, func(num protowire.Number, wt protowire.Type, v uint64, bs []byte) error {
		switch num {
		case 1:
			raw = bs
		case 2:
			rawSize = int(v)
		case 3:
			zdata = bs
		default:
			other = num
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case raw != nil:
		return raw, nil
	case zdata == nil && other != 0:
		return nil, fmt.Errorf("unsupported compression (Blob field %d); only zlib and raw are supported", other)
	case zdata == nil:
		return nil, errors.New("empty blob")
	case rawSize < 0 || rawSize > maxBlobSize:
		return nil, fmt.Errorf("raw size %d", rawSize)
	}
	zr, err := zlib.NewReader(bytes.NewReader(zdata))
	if err != nil {
		return nil, err
	}
	p.raw.Reset()
	p.raw.Grow(rawSize)
	if _, err := io.Copy(&p.raw, io.LimitReader(zr, int64(rawSize)+1)); err != nil {
		return nil, err
	}
	if p.raw.Len() != rawSize {
		return nil, fmt.Errorf("inflated %d bytes, header says %d", p.raw.Len(), rawSize)
	}
	return p.raw.Bytes(), nil
}

// checkHeaderBlock refuses files that need features this reader lacks.
func checkHeaderBlock(b []byte) error {
	return eachField(b, func(num protowire.Number, wt protowire.Type, _ uint64, bs []byte) error {
		if num != 4 || wt != protowire.BytesType {
			return nil
		}
		switch f := string(bs); f {
		case "OsmSchema-V0.6", "DenseNodes":
		default:
			return fmt.Errorf("required feature %q is not supported", f)
		}
		return nil
	})
}

func (p *pbfReader) primitiveBlock(b []byte) error {
	var groups [][]byte
	gran, latOff, lngOff := int64(100), int64(0), int64(0)
	p.strs = p.strs[:0]
	err := eachField(b, func(num protowire.Number, wt protowire.Type, v uint64, bs []byte) error {
		switch num {
		case 1:
			return eachField(bs, func(num protowire.Number, wt protowire.Type, _ uint64, s []byte) error {
				if num == 1 && wt == protowire.BytesType {
					p.strs = append(p.strs, string(s))
				}
				return nil
			})
		case 2:
			groups = append(groups, bs)
		case 17:
			gran = int64(int32(v))
		case 19:
			latOff = int64(v)
		case 20:
			lngOff = int64(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if gran <= 0 {
		return fmt.Errorf("granularity %d", gran)
	}
	coord := func(offset, v int64) int32 { return int32((offset + gran*v) / 100) } // nanodegrees → 1e-7 degrees
	for _, g := range groups {
		err := eachField(g, func(num protowire.Number, wt protowire.Type, _ uint64, bs []byte) error {
			switch num {
			case 1:
				return p.node(bs, coord, latOff, lngOff)
			case 2:
				return p.denseNodes(bs, coord, latOff, lngOff)
			case 3:
				return p.way(bs)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *pbfReader) node(b []byte, coord func(int64, int64) int32, latOff, lngOff int64) error {
	var id, lat, lng int64
	err := eachField(b, func(num protowire.Number, wt protowire.Type, v uint64, _ []byte) error {
		switch num {
		case 1:
			id = protowire.DecodeZigZag(v)
		case 8:
			lat = protowire.DecodeZigZag(v)
		case 9:
			lng = protowire.DecodeZigZag(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if p.h.node != nil {
		p.h.node(id, coord(latOff, lat), coord(lngOff, lng))
	}
	return nil
}

func (p *pbfReader) denseNodes(b []byte, coord func(int64, int64) int32, latOff, lngOff int64) error {
	var ids, lats, lngs []byte
	err := eachField(b, func(num protowire.Number, wt protowire.Type, _ uint64, bs []byte) error {
		if wt != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			ids = bs
		case 8:
			lats = bs
		case 9:
			lngs = bs
		}
		return nil
	})
	if err != nil {
		return err
	}
	var id, lat, lng int64
	for len(ids) > 0 {
		di, n1 := protowire.ConsumeVarint(ids)
		dl, n2 := protowire.ConsumeVarint(lats)
		dg, n3 := protowire.ConsumeVarint(lngs)
		if n1 < 0 || n2 < 0 || n3 < 0 {
			return errors.New("dense nodes: id, lat and lon lists differ in length or are corrupt")
		}
		ids, lats, lngs = ids[n1:], lats[n2:], lngs[n3:]
		id += protowire.DecodeZigZag(di)
		lat += protowire.DecodeZigZag(dl)
		lng += protowire.DecodeZigZag(dg)
		if p.h.node != nil {
			p.h.node(id, coord(latOff, lat), coord(lngOff, lng))
		}
	}
	if len(lats) > 0 || len(lngs) > 0 {
		return errors.New("dense nodes: id, lat and lon lists differ in length")
	}
	return nil
}

func (p *pbfReader) way(b []byte) error {
	var id int64
	var keys, vals []uint32
	p.refs = p.refs[:0]
	var ref int64
	err := eachField(b, func(num protowire.Number, wt protowire.Type, v uint64, bs []byte) error {
		switch num {
		case 1:
			id = int64(v)
		case 2, 3:
			var dst *[]uint32
			if num == 2 {
				dst = &keys
			} else {
				dst = &vals
			}
			return eachVarint(wt, v, bs, func(x uint64) { *dst = append(*dst, uint32(x)) })
		case 8:
			return eachVarint(wt, v, bs, func(x uint64) {
				ref += protowire.DecodeZigZag(x)
				p.refs = append(p.refs, ref)
			})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(keys) != len(vals) {
		return fmt.Errorf("way %d: %d keys, %d values", id, len(keys), len(vals))
	}
	p.keys, p.vals = p.keys[:0], p.vals[:0]
	for i := range keys {
		if int(keys[i]) >= len(p.strs) || int(vals[i]) >= len(p.strs) {
			return fmt.Errorf("way %d: string index out of range", id)
		}
		p.keys = append(p.keys, p.strs[keys[i]])
		p.vals = append(p.vals, p.strs[vals[i]])
	}
	if p.h.way != nil {
		p.h.way(id, p.keys, p.vals, p.refs)
	}
	return nil
}

// eachField calls f for every field of a protobuf message. v holds varint
// and fixed values; bs holds length-delimited contents (a view into b).
func eachField(b []byte, f func(num protowire.Number, wt protowire.Type, v uint64, bs []byte) error) error {
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v uint64
		var bs []byte
		switch wt {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b)
			v = uint64(x)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			bs, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, wt, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, wt, v, bs); err != nil {
			return err
		}
	}
	return nil
}

// eachVarint walks a repeated varint field, packed or not.
func eachVarint(wt protowire.Type, v uint64, bs []byte, f func(uint64)) error {
	if wt == protowire.VarintType {
		f(v)
		return nil
	}
	if wt != protowire.BytesType {
		return fmt.Errorf("unexpected wire type %d", wt)
	}
	for len(bs) > 0 {
		x, n := protowire.ConsumeVarint(bs)
		if n < 0 {
			return protowire.ParseError(n)
		}
		bs = bs[n:]
		f(x)
	}
	return nil
}
