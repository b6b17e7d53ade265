package crilog

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/cri-containerd/cri-containerd/crilog/crilogtest"
)

var testTime = time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC)

func TestCRILoggerFormat(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    int
		writes []string
		want   []string // "stream tag content"
	}{
		{name: "nothing", max: 16, writes: nil, want: []string{}},
		{name: "empty write", max: 16, writes: []string{""}, want: []string{}},
		{name: "one line", max: 16, writes: []string{"hello world\n"}, want: []string{"stdout F hello world"}},
		{name: "two lines one write", max: 16, writes: []string{"a\nb\n"}, want: []string{"stdout F a", "stdout F b"}},
		{name: "empty line", max: 16, writes: []string{"\n\n"}, want: []string{"stdout F ", "stdout F "}},
		{name: "crlf", max: 16, writes: []string{"abc\r\n"}, want: []string{"stdout F abc"}},
		{name: "lone cr kept", max: 16, writes: []string{"a\rb\n"}, want: []string{"stdout F a\rb"}},
		{name: "spaces kept", max: 16, writes: []string{"  x  y \n"}, want: []string{"stdout F   x  y "}},
		{name: "line over writes", max: 16, writes: []string{"ab", "cd", "ef\n"}, want: []string{"stdout F abcdef"}},
		{name: "partial at EOF", max: 16, writes: []string{"abc"}, want: []string{"stdout P abc"}},
		{name: "line then partial at EOF", max: 16, writes: []string{"x\nabc"}, want: []string{"stdout F x", "stdout P abc"}},
		{name: "exactly max", max: 4, writes: []string{"abcd\n"}, want: []string{"stdout F abcd"}},
		{name: "max plus one", max: 4, writes: []string{"abcde\n"}, want: []string{"stdout P abcd", "stdout F e"}},
		{name: "twice max", max: 4, writes: []string{"abcdefgh\n"}, want: []string{"stdout P abcd", "stdout F efgh"}},
		{name: "long split", max: 4, writes: []string{"abcdefghij\n"}, want: []string{"stdout P abcd", "stdout P efgh", "stdout F ij"}},
		{name: "long split over writes", max: 4, writes: []string{"ab", "cdef", "g", "hij\n"}, want: []string{"stdout P abcd", "stdout P efgh", "stdout F ij"}},
		{name: "long without newline at EOF", max: 4, writes: []string{"abcdefghij"}, want: []string{"stdout P abcd", "stdout P efgh", "stdout P ij"}},
		{name: "long crlf", max: 4, writes: []string{"abcdefg\r\n"}, want: []string{"stdout P abcd", "stdout F efg"}},
		{name: "cr at the cut then newline", max: 4, writes: []string{"abcd", "\r", "\n"}, want: []string{"stdout F abcd"}},
		{name: "cr at the cut then more", max: 4, writes: []string{"abcd", "\r", "e\n"}, want: []string{"stdout P abcd", "stdout F \re"}},
		{name: "cr at the cut at EOF", max: 2, writes: []string{"ab\r"}, want: []string{"stdout P ab", "stdout P \r"}},
		{name: "max 1", max: 1, writes: []string{"abc\n"}, want: []string{"stdout P a", "stdout P b", "stdout F c"}},
		{name: "unlimited negative", max: -1, writes: []string{strings.Repeat("x", 100000) + "\n"}, want: []string{"stdout F " + strings.Repeat("x", 100000)}},
		{name: "unlimited zero", max: 0, writes: []string{strings.Repeat("y", 5000), strings.Repeat("y", 5000) + "\n"}, want: []string{"stdout F " + strings.Repeat("y", 10000)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := NewCRILogger(&buf, Stdout, tc.max, WithClock(testingclock.NewFakePassiveClock(testTime).Now))
			for _, w := range tc.writes {
				n, err := l.Write([]byte(w))
				if err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			recs := crilogtest.Parse(t, buf.String())
			got := crilogtest.Strings(recs)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("records:\n got %q\nwant %q", got, tc.want)
			}
			for _, r := range recs {
				if !r.TS.Equal(testTime) {
					t.Errorf("timestamp %v, want %v", r.TS, testTime)
				}
			}
		})
	}
}

func TestCRILoggerExactBytes(t *testing.T) {
	var buf bytes.Buffer
	clk := testingclock.NewFakePassiveClock(testTime)
	l := NewCRILogger(&buf, Stderr, 3, WithClock(clk.Now))
	_, _ = l.Write([]byte("hello\n"))
	clk.SetTime(testTime.Add(time.Second))
	_, _ = l.Write([]byte("\nend"))
	_ = l.Close()
	want := "2024-01-02T03:04:05.123456789Z stderr P hel\n" +
		"2024-01-02T03:04:05.123456789Z stderr F lo\n" +
		"2024-01-02T03:04:06.123456789Z stderr F \n" +
		"2024-01-02T03:04:06.123456789Z stderr P end\n"
	if buf.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

// TestCRILoggerChunking checks that the records do not depend on how the
// output is cut into writes.
func TestCRILoggerChunking(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	alphabet := []byte("ab\r\n\n xyz")
	for iter := 0; iter < 200; iter++ {
		data := make([]byte, rnd.Intn(300))
		for i := range data {
			data[i] = alphabet[rnd.Intn(len(alphabet))]
		}
		max := rnd.Intn(12) - 1
		render := func(chunks [][]byte) string {
			var buf bytes.Buffer
			l := NewCRILogger(&buf, Stdout, max, WithClock(testingclock.NewFakePassiveClock(testTime).Now))
			for _, c := range chunks {
				_, _ = l.Write(c)
			}
			_ = l.Close()
			return buf.String()
		}
		whole := render([][]byte{data})
		var chunks [][]byte
		for rest := data; len(rest) > 0; {
			n := 1 + rnd.Intn(len(rest))
			if rnd.Intn(3) == 0 {
				n = 1
			}
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		if got := render(chunks); got != whole {
			t.Fatalf("max %d data %q: chunked output\n%q\ndiffers from\n%q", max, data, got, whole)
		}
		// Content is preserved: reassembled lines equal the input lines.
		recs := crilogtest.Parse(t, whole)
		for _, r := range recs {
			if max > 0 && len(r.Content) > max {
				t.Fatalf("record longer than %d: %q", max, r.Content)
			}
		}
		wantLines := strings.Split(string(data), "\n")
		if wantLines[len(wantLines)-1] == "" {
			wantLines = wantLines[:len(wantLines)-1]
		}
		for i, l := range wantLines {
			wantLines[i] = strings.TrimSuffix(l, "\r")
			if i == len(wantLines)-1 && !strings.HasSuffix(string(data), "\n") {
				wantLines[i] = l // no newline: CR kept
			}
		}
		got := crilogtest.Reassemble(recs)["stdout"]
		if strings.Join(got, "\n") != strings.Join(wantLines, "\n") || len(got) != len(wantLines) {
			t.Fatalf("max %d data %q: reassembled %q, want %q", max, data, got, wantLines)
		}
	}
}

type failingWriter struct{ calls int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.calls++
	return 0, errors.New("disk full")
}

func TestCRILoggerSinkErrorKeepsDraining(t *testing.T) {
	fw := &failingWriter{}
	l := NewCRILogger(fw, Stdout, 8)
	for i := 0; i < 10; i++ {
		n, err := l.Write([]byte("line\n"))
		if err != nil || n != 5 {
			t.Fatalf("Write = %d, %v; want 5, nil", n, err)
		}
	}
	if fw.calls != 10 {
		t.Fatalf("sink called %d times, want 10", fw.calls)
	}
	_ = l.Close()
	if _, err := l.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestCRILoggerInterleaving writes stdout and stderr concurrently into one
// LogFile, in random chunks: every record must be intact and each stream
// must reassemble to exactly what was written.
func TestCRILoggerInterleaving(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	lf, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const lines = 2000
	want := map[string][]string{}
	var wg sync.WaitGroup
	for si, stream := range []Stream{Stdout, Stderr} {
		var data bytes.Buffer
		for i := 0; i < lines; i++ {
			l := fmt.Sprintf("%s line %d %s", stream, i, strings.Repeat("z", i%97))
			want[string(stream)] = append(want[string(stream)], l)
			data.WriteString(l + "\n")
		}
		wg.Go(func() {
			rnd := rand.New(rand.NewSource(int64(si)))
			l := NewCRILogger(lf, stream, 50)
			b := data.Bytes()
			for len(b) > 0 {
				n := min(1+rnd.Intn(200), len(b))
				_, _ = l.Write(b[:n])
				b = b[n:]
			}
			_ = l.Close()
		})
	}
	wg.Wait()
	if err := lf.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs := crilogtest.Parse(t, string(out))
	got := crilogtest.Reassemble(recs)
	for _, s := range []string{"stdout", "stderr"} {
		if len(got[s]) != lines {
			t.Fatalf("%s: %d lines, want %d", s, len(got[s]), lines)
		}
		for i := range got[s] {
			if got[s][i] != want[s][i] {
				t.Fatalf("%s line %d = %q, want %q", s, i, got[s][i], want[s][i])
			}
		}
	}
}

func TestCRILoggerErrorHandler(t *testing.T) {
	fw := &failingWriter{}
	var got []string
	l := NewCRILogger(fw, Stderr, 0, WithErrorHandler(func(s Stream, err error) { got = append(got, string(s)+": "+err.Error()) }))
	_, _ = l.Write([]byte("a\nb\nc"))
	_ = l.Close()
	want := []string{"stderr: disk full", "stderr: disk full", "stderr: disk full"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("handler calls %q, want %q", got, want)
	}
}
