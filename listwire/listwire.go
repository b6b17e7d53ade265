// Package listwire keeps the protobuf encoding of an object's list entry
// (a ListContainers or ListPodSandbox item) with the object, so that a list
// RPC, which kubelet makes every second for every object of the node, sends
// bytes it already has instead of building and encoding every entry again.
// An entry is valid for the key it was made for (the parts of the item that
// can change: state, image names); any other key makes a new one.
package listwire

import (
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Memo holds one encoded entry and its key. The zero value is empty and
// ready; it is safe for concurrent use.
type Memo[K comparable] struct {
	p atomic.Pointer[entry[K]]
}

type entry[K comparable] struct {
	key  K
	wire []byte
}

// Get returns the entry made for key, if it is the one held.
func (m *Memo[K]) Get(key K) ([]byte, bool) {
	e := m.p.Load()
	if e == nil || e.key != key {
		return nil, false
	}
	return e.wire, true
}

// Set holds wire as the entry of key. The caller must not modify wire after.
func (m *Memo[K]) Set(key K, wire []byte) {
	m.p.Store(&entry[K]{key: key, wire: wire})
}

// Entry returns the entry of key: the one held, or else build's message
// encoded as an element of the repeated field num, then held.
func (m *Memo[K]) Entry(key K, num protowire.Number, build func() proto.Message) ([]byte, error) {
	if b, ok := m.Get(key); ok {
		return b, nil
	}
	b, err := Field(num, build())
	if err != nil {
		return nil, err
	}
	m.Set(key, b)
	return b, nil
}

// Field encodes msg as one element of the repeated message field num: the
// bytes a list response carries for it.
func Field(num protowire.Number, msg proto.Message) ([]byte, error) {
	body, err := proto.Marshal(msg)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, protowire.SizeTag(num)+protowire.SizeBytes(len(body)))
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, body), nil
}

// Response sets the entries, concatenated, as resp's unknown fields: once
// encoded (gRPC's codec), resp is the response that holds the entries'
// messages, which a client decodes as such. In the process, resp's list
// field stays empty; Decode makes the ordinary message back.
func Response(resp proto.Message, entries [][]byte) {
	n := 0
	for _, e := range entries {
		n += len(e)
	}
	wire := make([]byte, 0, n)
	for _, e := range entries {
		wire = append(wire, e...)
	}
	resp.ProtoReflect().SetUnknown(wire)
}

// Decode returns a copy of resp with its entries decoded, for in-process
// readers of a Response (logs, tests); resp without entries is returned as is.
func Decode[M proto.Message](resp M) M {
	if len(resp.ProtoReflect().GetUnknown()) == 0 {
		return resp
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		return resp
	}
	out := resp.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(b, out); err != nil {
		return resp
	}
	return out
}
