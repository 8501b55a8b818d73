package roads

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
)

// File format, version 1. Everything little-endian.
//
//	header, 64 bytes:
//	  0  magic "HXROADS\n"
//	  8  version      uint32 (1)
//	 12  header size  uint32 (64)
//	 16  nodes        uint32 (n)
//	 20  segments     uint32 (m)
//	 24  up arcs      uint32
//	 28  down arcs    uint32
//	 32  metadata len uint32 (JSON: source, bbox, speeds)
//	 36  reserved     (zero) up to 56
//	 56  body length  uint32
//	 60  CRC-32C of bytes 0..59 and of the body
//	body:
//	  metadata JSON
//	  lat [n]int32, lng [n]int32                    (1e-7 degrees)
//	  segU [m]uint32, segV [m]uint32, segFwd [m]uint64, segBwd [m]uint64
//	  upFirst [n+1]uint32, upHead [up]uint32, upW [up]uint64
//	  dnFirst [n+1]uint32, dnHead [down]uint32, dnW [down]uint64
//
// Weights are (milliseconds << 32 | centimetres); 2^64-1 marks a closed
// direction of a segment. Nodes are numbered by contraction rank, so every
// up/down arc points to a higher node id; Read checks that, so a file that
// passes the checksum but was written wrong cannot make a query loop.
const (
	fileMagic   = "HXROADS\n"
	fileVersion = 1
	headerSize  = 64
)

// ErrBadFile is returned (wrapped, with detail) for a file that is not a
// road graph this build can read: wrong magic, unsupported version,
// truncated, checksum mismatch or inconsistent contents.
var ErrBadFile = errors.New("roads: bad road graph file")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WriteTo writes the graph in the file format above.
func (g *Graph) WriteTo(w io.Writer) (int64, error) {
	meta, err := json.Marshal(g.meta)
	if err != nil {
		return 0, err
	}
	n, m := len(g.lat), len(g.segs)
	bodyLen := len(meta) + 8*n + 24*m + 2*4*(n+1) + 12*len(g.upHead) + 12*len(g.dnHead)
	if bodyLen > math.MaxUint32 {
		return 0, fmt.Errorf("roads: graph too large for file format version %d (%d bytes)", fileVersion, bodyLen)
	}
	body := make([]byte, 0, bodyLen)
	body = append(body, meta...)
	body = appendInt32s(body, g.lat)
	body = appendInt32s(body, g.lng)
	for _, s := range g.segs {
		body = binary.LittleEndian.AppendUint32(body, s.u)
	}
	for _, s := range g.segs {
		body = binary.LittleEndian.AppendUint32(body, s.v)
	}
	for _, s := range g.segs {
		body = binary.LittleEndian.AppendUint64(body, s.fwd)
	}
	for _, s := range g.segs {
		body = binary.LittleEndian.AppendUint64(body, s.bwd)
	}
	for _, a := range [][]uint32{g.upFirst, g.upHead} {
		body = appendUint32s(body, a)
	}
	body = appendUint64s(body, g.upW)
	for _, a := range [][]uint32{g.dnFirst, g.dnHead} {
		body = appendUint32s(body, a)
	}
	body = appendUint64s(body, g.dnW)

	hdr := make([]byte, headerSize)
	copy(hdr, fileMagic)
	le := binary.LittleEndian
	le.PutUint32(hdr[8:], fileVersion)
	le.PutUint32(hdr[12:], headerSize)
	le.PutUint32(hdr[16:], uint32(n))
	le.PutUint32(hdr[20:], uint32(m))
	le.PutUint32(hdr[24:], uint32(len(g.upHead)))
	le.PutUint32(hdr[28:], uint32(len(g.dnHead)))
	le.PutUint32(hdr[32:], uint32(len(meta)))
	le.PutUint32(hdr[56:], uint32(len(body)))
	crc := crc32.Update(crc32.Checksum(hdr[:60], castagnoli), castagnoli, body)
	le.PutUint32(hdr[60:], crc)
	k, err := w.Write(hdr)
	total := int64(k)
	if err != nil {
		return total, err
	}
	k, err = w.Write(body)
	return total + int64(k), err
}

// WriteFile writes the graph to path (via a temporary file and a rename,
// so a reader never sees half a file).
func (g *Graph) WriteFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".roads-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	if _, err := g.WriteTo(bw); err != nil {
		tmp.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; a graph is not secret.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Load reads a graph file.
func Load(path string, opts ...Option) (*Graph, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	g, err := Read(data, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// Read decodes a graph from the bytes of a file (which it does not retain).
func Read(data []byte, opts ...Option) (*Graph, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadFile, fmt.Sprintf(format, args...))
	}
	if len(data) < headerSize || string(data[:8]) != fileMagic {
		return nil, bad("not a hexride road graph (no %q header)", fileMagic[:7])
	}
	le := binary.LittleEndian
	if v := le.Uint32(data[8:]); v != fileVersion {
		return nil, bad("format version %d, this build reads version %d: rebuild the file", v, fileVersion)
	}
	if hs := le.Uint32(data[12:]); hs != headerSize {
		return nil, bad("header size %d", hs)
	}
	n, m := int(le.Uint32(data[16:])), int(le.Uint32(data[20:]))
	nUp, nDn := int(le.Uint32(data[24:])), int(le.Uint32(data[28:]))
	metaLen, bodyLen := int(le.Uint32(data[32:])), int(le.Uint32(data[56:]))
	if got := len(data) - headerSize; got != bodyLen {
		return nil, bad("body is %d bytes, header says %d (truncated or padded)", got, bodyLen)
	}
	body := data[headerSize:]
	crc := crc32.Update(crc32.Checksum(data[:60], castagnoli), castagnoli, body)
	if want := le.Uint32(data[60:]); crc != want {
		return nil, bad("checksum mismatch (file corrupt)")
	}
	if want := metaLen + 8*n + 24*m + 8*(n+1) + 12*nUp + 12*nDn; want != bodyLen || n == 0 || m == 0 {
		return nil, bad("counts (%d nodes, %d segments, %d+%d arcs) do not match the body length", n, m, nUp, nDn)
	}
	g := &Graph{}
	if err := json.Unmarshal(body[:metaLen], &g.meta); err != nil {
		return nil, bad("metadata: %v", err)
	}
	r := body[metaLen:]
	g.lat, r = int32s(r, n), r[4*n:]
	g.lng, r = int32s(r, n), r[4*n:]
	us, r := uint32s(r, m), r[4*m:]
	vs, r := uint32s(r, m), r[4*m:]
	fw, r := uint64s(r, m), r[8*m:]
	bw, r := uint64s(r, m), r[8*m:]
	g.segs = make([]segment, m)
	for i := range g.segs {
		g.segs[i] = segment{us[i], vs[i], fw[i], bw[i]}
		if us[i] >= uint32(n) || vs[i] >= uint32(n) || (fw[i] == noArc && bw[i] == noArc) {
			return nil, bad("segment %d is invalid", i)
		}
	}
	g.upFirst, r = uint32s(r, n+1), r[4*(n+1):]
	g.upHead, r = uint32s(r, nUp), r[4*nUp:]
	g.upW, r = uint64s(r, nUp), r[8*nUp:]
	g.dnFirst, r = uint32s(r, n+1), r[4*(n+1):]
	g.dnHead, r = uint32s(r, nDn), r[4*nDn:]
	g.dnW = uint64s(r, nDn)
	if err := checkUpward(g.upFirst, g.upHead); err != nil {
		return nil, bad("up arcs: %v", err)
	}
	if err := checkUpward(g.dnFirst, g.dnHead); err != nil {
		return nil, bad("down arcs: %v", err)
	}
	g.init(defaultMaxSnap)
	for _, o := range opts {
		o(g)
	}
	if !(g.maxSnap > 0 && g.maxSnap <= 50_000) {
		return nil, fmt.Errorf("roads: max snap distance %v m: want (0, 50000]", g.maxSnap)
	}
	return g, nil
}

// checkUpward verifies a CSR adjacency whose arcs all point to higher ids.
func checkUpward(first, head []uint32) error {
	if first[0] != 0 || int(first[len(first)-1]) != len(head) {
		return errors.New("offsets do not span the arcs")
	}
	for v := 0; v+1 < len(first); v++ {
		if first[v] > first[v+1] {
			return fmt.Errorf("offsets decrease at node %d", v)
		}
		for _, h := range head[first[v]:first[v+1]] {
			if int(h) <= v || int(h) >= len(first)-1 {
				return fmt.Errorf("arc %d→%d does not point upward", v, h)
			}
		}
	}
	return nil
}

func appendInt32s(b []byte, a []int32) []byte {
	for _, x := range a {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	return b
}

func appendUint32s(b []byte, a []uint32) []byte {
	for _, x := range a {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return b
}

func appendUint64s(b []byte, a []uint64) []byte {
	for _, x := range a {
		b = binary.LittleEndian.AppendUint64(b, x)
	}
	return b
}

func int32s(b []byte, n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func uint32s(b []byte, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return out
}

func uint64s(b []byte, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return out
}
