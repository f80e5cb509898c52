// Package pressure reads the kernel's CPU pressure stall information
// (/proc/pressure/cpu, "some"): how long, since boot, at least one task of
// the machine waited for a CPU. Two readings apart give the share of that
// span in which the machine had more to run than CPUs to run it on.
package pressure

import (
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// File is where the kernel says it.
const File = "/proc/pressure/cpu"

// Reader reads the CPU pressure again and again through one open file.
type Reader struct {
	f   *os.File
	buf []byte
}

// Open opens the pressure file; nil (every Read false) where the kernel
// does not say.
func Open() *Reader {
	f, err := os.Open(File)
	if err != nil {
		return nil
	}
	return &Reader{f: f, buf: make([]byte, 256)}
}

// Read is the total so far, false where it cannot be read.
func (r *Reader) Read() (time.Duration, bool) {
	if r == nil {
		return 0, false
	}
	n, err := r.f.ReadAt(r.buf, 0)
	if n == 0 || err != nil && err != io.EOF {
		return 0, false
	}
	return Parse(r.buf[:n])
}

// Close closes the file.
func (r *Reader) Close() error {
	if r == nil {
		return nil
	}
	return r.f.Close()
}

// CPU is one reading of the total (Open, Read, Close).
func CPU() (time.Duration, bool) {
	r := Open()
	defer r.Close()
	return r.Read()
}

// Parse reads the total of the "some" line of a pressure file.
func Parse(b []byte) (time.Duration, bool) {
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "some ")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(rest) {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				us, err := strconv.ParseInt(v, 10, 64)
				return time.Duration(us) * time.Microsecond, err == nil
			}
		}
	}
	return 0, false
}
