package pressure

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	in := "some avg10=92.46 avg60=97.31 avg300=76.81 total=449297459\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
	if d, ok := Parse([]byte(in)); !ok || d != 449297459*time.Microsecond {
		t.Errorf("Parse = %s %v", d, ok)
	}
	if _, ok := Parse([]byte("nonsense")); ok {
		t.Error("Parse(nonsense) ok")
	}
}

// Where the kernel says it, two readings a moment apart never go back.
func TestReadsGrow(t *testing.T) {
	r := Open()
	if r == nil {
		t.Skip("this kernel has no " + File)
	}
	defer r.Close()
	a, ok1 := r.Read()
	time.Sleep(20 * time.Millisecond)
	b, ok2 := r.Read()
	if !ok1 || !ok2 || b < a {
		t.Errorf("readings %s (%v) then %s (%v)", a, ok1, b, ok2)
	}
}
