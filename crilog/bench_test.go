package crilog

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cri-containerd/cri-containerd/crilog/crilogtest"
)

// chunkSize is the size of the reads of container output in the writers.
const chunkSize = 32 << 10

// benchInput returns at least size bytes of lines of lineLen bytes (newline
// included).
func benchInput(lineLen, size int) []byte {
	line := strings.Repeat("x", lineLen-1) + "\n"
	n := max(1, size/lineLen)
	return bytes.Repeat([]byte(line), n)
}

func benchmarkLogger(b *testing.B, lineLen, maxLine int, file bool) {
	var sink io.Writer = io.Discard
	if file {
		lf, err := OpenLogFile(filepath.Join(b.TempDir(), "bench.log"))
		if err != nil {
			b.Fatal(err)
		}
		defer lf.Close()
		sink = lf
	}
	l := NewCRILogger(sink, Stdout, maxLine)
	// 256 KiB per op, written in 32 KiB pieces like the FIFO reads, so
	// lines are cut at arbitrary places.
	data := benchInput(lineLen, 256<<10)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for p := data; len(p) > 0; {
			n := min(len(p), chunkSize)
			if _, err := l.Write(p[:n]); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
	}
}

// BenchmarkCRILogger measures formatting throughput (bytes of container
// output per second) into io.Discard and into a real log file.
func BenchmarkCRILogger(b *testing.B) {
	for _, bc := range []struct {
		name    string
		lineLen int
		maxLine int
	}{
		{"short-80B", 80, 16 << 10},
		{"long-64KiB-split-16KiB", 64 << 10, 16 << 10},
		{"long-64KiB-unlimited", 64 << 10, -1},
	} {
		b.Run(bc.name+"/discard", func(b *testing.B) { benchmarkLogger(b, bc.lineLen, bc.maxLine, false) })
		b.Run(bc.name+"/file", func(b *testing.B) { benchmarkLogger(b, bc.lineLen, bc.maxLine, true) })
	}
}

// BenchmarkBroadcast measures the fan-out cost per 32 KiB chunk with four
// attached clients that keep up.
func BenchmarkBroadcast(b *testing.B) {
	br := NewFanout(64 << 20)
	for i := 0; i < 4; i++ {
		br.Subscribe(crilogtest.NopWriteCloser{Writer: io.Discard})
	}
	data := benchInput(80, chunkSize)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		br.Publish(data)
	}
	br.Close()
}
