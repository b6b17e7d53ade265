package main

import (
	"math"
	"math/rand"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// gen fills protobuf messages with random values through protoreflect, so
// that every field of every CRI request is reached without per-type code.
// Values are biased towards the edges validation has to handle: empty,
// negative, zero, boundary and huge numbers, paths with "..", NUL bytes,
// very long strings, undefined enum values.
type gen struct {
	r *rand.Rand
}

const maxDepth = 7

var interestingStrings = []string{
	"", "a", ".", "..", "../..", "/", "/tmp", "/etc/passwd", "a/b", "x\x00y", "\n", " ", "a b", "a;b=c",
	"ALL", "CAP_SYS_ADMIN", "NET_RAW", "chown", "CAP_MAKE_COFFEE",
	"net.ipv4.ip_forward", "kernel.shm_rmid_forced", "fs.mqueue.msg_max", "kernel.core_pattern", "net..x", "net/ipv4/conf/eth0.1/forwarding",
	"0-1", "0", "3-1", "all", "2MB", "1GB", "../2MB", "memory.max", "memory.oom.group", "cgroup.procs", "cpu.weight",
	"runtime/default", "docker/default", "unconfined", "localhost/x.json", "localhost//p.json",
	"busybox", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	"10.0.0.1", "::1", "127.0.0.1", "0.0.0.0", "fe80::1%eth0", "ndots:5", "cluster.local",
	"/kubepods/burstable/pod1", "kubepods.slice", "/../..", "sh", "/bin/sh", "true", "ls", "-c",
	"é☃", "\u202e", "%s%n", "${HOME}", "*", "?", "kubernetes.io/ingress-bandwidth", "10M", "lots",
	"tcp", "udp", "sctp", "TCP", "rwm", "rwx", "ro", "noexec", "ro,exec",
}

var interestingInts = []int64{
	0, 1, -1, 2, -2, 5, -5, 80, 999, 1000, 1001, 1024, 65535, 65536, 70000, 100000, 1000000, 1000001,
	262144, 262145, -1000, -1001, 1000, 1001, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64,
	1 << 20, 1 << 30, 1 << 40, math.MaxUint32,
}

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

// fill sets a random subset of m's fields to random values.
func (g *gen) fill(m protoreflect.Message, depth int) {
	if depth > maxDepth {
		return
	}
	fields := m.Descriptor().Fields()
	p := 0.5
	if depth > 2 {
		p = 0.3
	}
	for i := 0; i < fields.Len(); i++ {
		if g.chance(p) {
			g.setField(m, fields.Get(i), depth)
		}
	}
}

// mutate changes one field somewhere in m: it walks down random message
// fields (creating them) and sets a random value at some level.
func (g *gen) mutate(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	if fields.Len() == 0 {
		return
	}
	fd := fields.Get(g.r.Intn(fields.Len()))
	if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() && depth < maxDepth && g.chance(0.7) {
		g.mutate(m.Mutable(fd).Message(), depth+1)
		return
	}
	if fd.IsList() && m.Has(fd) && g.chance(0.5) {
		// Change one element instead of the whole list.
		l := m.Mutable(fd).List()
		i := g.r.Intn(l.Len())
		if fd.Kind() == protoreflect.MessageKind {
			g.mutate(l.Get(i).Message(), depth+1)
		} else {
			l.Set(i, g.scalar(fd))
		}
		return
	}
	m.Clear(fd)
	g.setField(m, fd, depth)
}

func (g *gen) setField(m protoreflect.Message, fd protoreflect.FieldDescriptor, depth int) {
	switch {
	case fd.IsList():
		l := m.Mutable(fd).List()
		n := g.r.Intn(4)
		if g.chance(0.02) {
			n = 50 + g.r.Intn(200)
		}
		for i := 0; i < n; i++ {
			if fd.Kind() == protoreflect.MessageKind {
				e := l.NewElement()
				g.fill(e.Message(), depth+1)
				l.Append(e)
			} else {
				l.Append(g.scalar(fd))
			}
		}
	case fd.IsMap():
		mp := m.Mutable(fd).Map()
		n := g.r.Intn(4)
		for i := 0; i < n; i++ {
			k := g.scalar(fd.MapKey()).MapKey()
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v := mp.NewValue()
				g.fill(v.Message(), depth+1)
				mp.Set(k, v)
			} else {
				mp.Set(k, g.scalar(fd.MapValue()))
			}
		}
	case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
		g.fill(m.Mutable(fd).Message(), depth+1)
	default:
		m.Set(fd, g.scalar(fd))
	}
}

// scalar is a random value of a non-message field kind.
func (g *gen) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(g.chance(0.5))
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if g.chance(0.9) && vals.Len() > 0 {
			return protoreflect.ValueOfEnum(vals.Get(g.r.Intn(vals.Len())).Number())
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(int32(g.int())))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(g.int()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(g.int())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(g.int()))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(g.int()))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(g.int()) * g.r.Float32())
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(g.int()) * g.r.Float64())
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(g.str())
	case protoreflect.BytesKind:
		b := make([]byte, g.r.Intn(40))
		g.r.Read(b)
		if g.chance(0.5) {
			b = []byte(g.str())
		}
		return protoreflect.ValueOfBytes(b)
	}
	return protoreflect.Value{}
}

func (g *gen) int() int64 {
	switch g.r.Intn(4) {
	case 0, 1:
		return interestingInts[g.r.Intn(len(interestingInts))]
	case 2:
		return int64(g.r.Intn(2000)) - 1000
	}
	return g.r.Int63() - g.r.Int63()
}

const nameChars = "abcdefghijklmnopqrstuvwxyz0123456789-"

// str is a random valid UTF-8 string (proto3 strings must be).
func (g *gen) str() string {
	switch g.r.Intn(12) {
	case 0:
		return ""
	case 1, 2, 3:
		return interestingStrings[g.r.Intn(len(interestingStrings))]
	case 4:
		b := make([]byte, g.r.Intn(24))
		for i := range b {
			b[i] = byte(g.r.Intn(128))
		}
		return string(b)
	case 5:
		var sb strings.Builder
		for n := g.r.Intn(12); n > 0; n-- {
			r := rune(g.r.Intn(0x2FFFF))
			if utf8.ValidRune(r) {
				sb.WriteRune(r)
			}
		}
		return sb.String()
	case 6:
		n := 100 + g.r.Intn(5000)
		if g.chance(0.05) {
			n = 70 << 10
		}
		return strings.Repeat(string(nameChars[g.r.Intn(len(nameChars))]), n)
	case 7, 8:
		var parts []string
		for n := 1 + g.r.Intn(4); n > 0; n-- {
			switch g.r.Intn(6) {
			case 0:
				parts = append(parts, "..")
			case 1:
				parts = append(parts, ".")
			default:
				parts = append(parts, g.name())
			}
		}
		p := strings.Join(parts, "/")
		if g.chance(0.6) {
			p = "/" + p
		}
		return p
	}
	return g.name()
}

func (g *gen) name() string {
	b := make([]byte, 1+g.r.Intn(15))
	for i := range b {
		b[i] = nameChars[g.r.Intn(len(nameChars))]
	}
	return string(b)
}
