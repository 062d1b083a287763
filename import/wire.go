package onnximport

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/onnx"
)

// The field numbers of onnx.proto that splitRaw walks.
const (
	modelGraph       = 7 // ModelProto.graph
	graphInitializer = 5 // GraphProto.initializer
	tensorRawData    = 9 // TensorProto.raw_data
)

// minShared is the smallest raw_data that decodeShared leaves in the
// caller's buffer instead of copying.
const minShared = 4096

// decodeShared decodes a model whose initializers' raw_data (those of
// minShared bytes or more) stay slices of buf: the protobuf decoder copies
// every bytes field, which for a model of weights doubles its memory. The
// result equals proto.Unmarshal's (a model whose layout splitRaw does not
// expect is decoded by proto.Unmarshal). buf must not change while the
// model is in use.
func decodeShared(buf []byte) (*onnx.ModelProto, error) {
	rest, raws, ok := splitRaw(buf)
	if !ok {
		return unmarshal(buf)
	}
	m, err := unmarshal(rest)
	if err != nil {
		return nil, err
	}
	inits := m.GetGraph().GetInitializer()
	for _, r := range raws {
		if r.index >= len(inits) {
			return unmarshal(buf) // cannot happen: splitRaw counted them
		}
		inits[r.index].RawData = r.data
	}
	return m, nil
}

func unmarshal(b []byte) (*onnx.ModelProto, error) {
	var m onnx.ModelProto
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// rawPart is the raw_data of the index-th initializer, a slice of the
// buffer splitRaw was given.
type rawPart struct {
	index int
	data  []byte
}

// splitRaw returns the model encoded in buf without the large raw_data of
// its graph's initializers, and those raw_data as slices of buf. ok is false
// when buf is not laid out as one graph whose initializers each hold at most
// one raw_data field (other encodings are valid protobuf, merged by the
// decoder: proto.Unmarshal decodes them) or does not parse.
func splitRaw(buf []byte) (rest []byte, raws []rawPart, ok bool) {
	graphs := 0
	rest = make([]byte, 0, 1<<16)
	ok = eachField(buf, func(num protowire.Number, typ protowire.Type, field []byte, n int) bool {
		if num != modelGraph || typ != protowire.BytesType {
			rest = append(rest, field...)
			return true
		}
		if graphs++; graphs > 1 {
			return false
		}
		g, _ := protowire.ConsumeBytes(field[n:])
		sg, parts, ok := splitGraph(g)
		if !ok {
			return false
		}
		raws = parts
		rest = protowire.AppendTag(rest, modelGraph, protowire.BytesType)
		rest = protowire.AppendBytes(rest, sg)
		return true
	})
	if !ok {
		return nil, nil, false
	}
	return rest, raws, true
}

// splitGraph is splitRaw for the fields of a GraphProto.
func splitGraph(g []byte) (rest []byte, raws []rawPart, ok bool) {
	index := 0
	ok = eachField(g, func(num protowire.Number, typ protowire.Type, field []byte, n int) bool {
		if num != graphInitializer || typ != protowire.BytesType {
			rest = append(rest, field...)
			return true
		}
		t, _ := protowire.ConsumeBytes(field[n:])
		st, raw, ok := splitTensor(t)
		if !ok {
			return false
		}
		if raw == nil {
			rest = append(rest, field...)
		} else {
			raws = append(raws, rawPart{index: index, data: raw})
			rest = protowire.AppendTag(rest, graphInitializer, protowire.BytesType)
			rest = protowire.AppendBytes(rest, st)
		}
		index++
		return true
	})
	if !ok {
		return nil, nil, false
	}
	return rest, raws, true
}

// splitTensor returns a TensorProto's fields without its raw_data and the
// raw_data, when it has one of minShared bytes or more; raw is nil
// otherwise.
func splitTensor(t []byte) (rest, raw []byte, ok bool) {
	at, count, off := -1, 0, 0
	ok = eachField(t, func(num protowire.Number, typ protowire.Type, field []byte, n int) bool {
		if num == tensorRawData {
			if typ != protowire.BytesType {
				return false
			}
			count++
			at = off
			raw, _ = protowire.ConsumeBytes(field[n:])
			rest = t[off+len(field):] // the fields after it
		}
		off += len(field)
		return true
	})
	if !ok {
		return nil, nil, false
	}
	if count != 1 || len(raw) < minShared {
		return nil, nil, count <= 1
	}
	return append(t[:at:at], rest...), raw, true
}

// eachField calls fn with every field of the encoded message b in order:
// its number, wire type, whole encoding and the length of its tag; false
// when b does not parse or fn returns false.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, field []byte, tagLen int) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return false
		}
		if !fn(num, typ, b[:n+m], n) {
			return false
		}
		b = b[n+m:]
	}
	return true
}
