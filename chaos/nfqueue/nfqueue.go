// Package nfqueue holds packets that an iptables NFQUEUE rule hands to
// user space and lets each go after a delay: network delay, and with
// jitter reordering, on kernels without sch_netem. It speaks the
// kernel's nfnetlink_queue protocol itself (netlink, NETLINK_NETFILTER),
// asks only for packet IDs (no payload is copied), and sets the queue to
// fail open: a packet the queue has no room for passes at once.
package nfqueue

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Protocol constants (linux/netfilter/nfnetlink_queue.h).
const (
	subsysQueue    = 3
	msgPacket      = 0
	msgVerdict     = 1
	msgConfig      = 2
	cfgCmd         = 1
	cfgParams      = 2
	cfgQueueMaxLen = 3
	cfgMask        = 4
	cfgFlags       = 5
	cmdBind        = 1
	copyMeta       = 1
	flagFailOpen   = 1
	attrPacketHdr  = 1
	attrVerdictHdr = 2
	nfAccept       = 1
	maxQueued      = 1 << 16
)

// Delayer holds the packets of one queue: each is let go Delay after it
// arrived, give or take up to Jitter (uniform), so with jitter later
// packets can pass earlier ones.
type Delayer struct {
	fd      int
	queue   uint16
	delay   time.Duration
	jitter  time.Duration
	closing atomic.Bool
	done    chan struct{} // the reader has stopped
	sent    chan struct{} // the releaser has let every held packet go
	err     error
	seq     uint32
	mu      sync.Mutex // serialises writes to fd

	heldMu sync.Mutex
	held   heldHeap      // packets not yet let go, soonest first
	wake   chan struct{} // a packet due sooner than the releaser waits for
}

// heldPacket is one queued packet and when it is due to go.
type heldPacket struct {
	due time.Time
	id  uint32
}

// heldHeap is a min-heap of held packets by due time.
type heldHeap []heldPacket

func (h heldHeap) Len() int           { return len(h) }
func (h heldHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h heldHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *heldHeap) Push(x any)        { *h = append(*h, x.(heldPacket)) }
func (h *heldHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Start binds queue in the network namespace netns (a path such as
// /proc/PID/ns/net; "" for this process's own) and delays its packets
// until Close. It needs CAP_NET_ADMIN there, and CAP_SYS_ADMIN to enter
// another namespace.
func Start(netns string, queue uint16, delay, jitter time.Duration) (*Delayer, error) {
	fd, err := socketIn(netns)
	if err != nil {
		return nil, err
	}
	d := &Delayer{fd: fd, queue: queue, delay: delay, jitter: min(jitter, delay),
		done: make(chan struct{}), sent: make(chan struct{}), wake: make(chan struct{}, 1)}
	cmd := []byte{cmdBind, 0, 0, 0} // command, pad, pf (unused since 3.8)
	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params, 0) // copy range: nothing
	params[4] = copyMeta
	maxLen := binary.BigEndian.AppendUint32(nil, maxQueued)
	flags := binary.BigEndian.AppendUint32(nil, flagFailOpen)
	for _, attrs := range [][]attr{
		{{cfgCmd, cmd}},
		{{cfgParams, params}, {cfgQueueMaxLen, maxLen}, {cfgMask, flags}, {cfgFlags, flags}},
	} {
		if err := d.request(msgConfig, attrs, true); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("binding NFQUEUE %d: %w", queue, err)
		}
	}
	go d.loop()
	go d.release()
	return d, nil
}

// socketIn opens a netfilter netlink socket in netns: the socket stays
// in the namespace it was made in, whichever thread uses it after.
func socketIn(netns string) (int, error) {
	if netns == "" {
		return bind()
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// This thread enters netns and is never used again: the runtime
		// ends it when the goroutine returns still locked.
		runtime.LockOSThread()
		f, err := os.Open(netns)
		if err != nil {
			ch <- result{-1, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{-1, fmt.Errorf("entering network namespace %s: %w", netns, err)}
			return
		}
		fd, err := bind()
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

func bind() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return -1, fmt.Errorf("netfilter netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("binding netlink socket: %w", err)
	}
	// Room for bursts: a full receive buffer loses packet notices (they
	// then wait in the queue until it is closed).
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	// A read wakes up now and then to see whether the queue is closing.
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlink socket timeout: %w", err)
	}
	return fd, nil
}

type attr struct {
	typ  uint16
	data []byte
}

// message encodes one nfnetlink message to queue.
func message(typ uint16, flags uint16, seq uint32, queue uint16, attrs []attr) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN, 64)
	b = append(b, unix.AF_UNSPEC, 0 /* NFNETLINK_V0 */, byte(queue>>8), byte(queue))
	for _, a := range attrs {
		n := 4 + len(a.data)
		b = binary.NativeEndian.AppendUint16(b, uint16(n))
		b = binary.NativeEndian.AppendUint16(b, a.typ)
		b = append(b, a.data...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], subsysQueue<<8|typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	return b
}

// request sends a message; with ack it waits for the kernel's answer
// (Start only, before the loop reads the socket).
func (d *Delayer) request(typ uint16, attrs []attr, ack bool) error {
	flags := uint16(unix.NLM_F_REQUEST)
	if ack {
		flags |= unix.NLM_F_ACK
	}
	d.mu.Lock()
	d.seq++
	msg := message(typ, flags, d.seq, d.queue, attrs)
	err := unix.Sendto(d.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	d.mu.Unlock()
	if err != nil || !ack {
		return err
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(d.fd, buf, 0)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
			if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
				return unix.Errno(-errno)
			}
		}
	}
	return nil
}

// PacketID is the ID in a packet notice's attributes, if it has one.
func PacketID(data []byte) (uint32, bool) {
	if len(data) < 4 {
		return 0, false
	}
	for b := data[4:]; len(b) >= 4; {
		n := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if n < 4 || n > len(b) {
			return 0, false
		}
		if typ == attrPacketHdr && n >= 8 {
			return binary.BigEndian.Uint32(b[4:]), true
		}
		b = b[min(len(b), (n+3)&^3):]
	}
	return 0, false
}

// loop reads packet notices and schedules each one's verdict.
func (d *Delayer) loop() {
	defer close(d.done)
	buf := make([]byte, 1<<16)
	for {
		if d.closing.Load() {
			return
		}
		n, _, err := unix.Recvfrom(d.fd, buf, 0)
		if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue // ENOBUFS: notices lost, their packets pass when the queue closes
		}
		if err != nil {
			d.err = err
			return
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if m.Header.Type != subsysQueue<<8|msgPacket {
				continue
			}
			id, ok := PacketID(m.Data)
			if !ok {
				continue
			}
			wait := d.delay
			if d.jitter > 0 {
				wait += time.Duration(rand.Int64N(int64(2*d.jitter))) - d.jitter
			}
			d.heldMu.Lock()
			heap.Push(&d.held, heldPacket{due: time.Now().Add(wait), id: id})
			soonest := d.held[0].id == id
			d.heldMu.Unlock()
			if soonest {
				select {
				case d.wake <- struct{}{}:
				default:
				}
			}
		}
	}
}

// release lets held packets go when they are due: one timer and one
// write per batch of due packets (a verdict message each), not a timer
// per packet. It ends once the reader has stopped and nothing is held.
func (d *Delayer) release() {
	defer close(d.sent)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var due []uint32
	var batch []byte
	for {
		d.heldMu.Lock()
		now := time.Now()
		due = due[:0]
		for len(d.held) > 0 && !d.held[0].due.After(now) {
			due = append(due, heap.Pop(&d.held).(heldPacket).id)
		}
		wait := time.Hour
		if len(d.held) > 0 {
			wait = d.held[0].due.Sub(now)
		}
		empty := len(d.held) == 0
		d.heldMu.Unlock()
		d.mu.Lock()
		for len(due) > 0 {
			// At most 2,048 verdicts (64 KiB) a write.
			n := min(len(due), 2048)
			batch = batch[:0]
			for _, id := range due[:n] {
				v := binary.BigEndian.AppendUint32(nil, nfAccept)
				v = binary.BigEndian.AppendUint32(v, id)
				d.seq++
				batch = append(batch, message(msgVerdict, unix.NLM_F_REQUEST, d.seq, d.queue, []attr{{attrVerdictHdr, v}})...)
			}
			_ = unix.Sendto(d.fd, batch, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
			due = due[n:]
		}
		d.mu.Unlock()
		if empty {
			select {
			case <-d.done:
				// The reader has stopped; check once more for what it
				// queued last.
				d.heldMu.Lock()
				n := len(d.held)
				d.heldMu.Unlock()
				if n == 0 {
					return
				}
				continue
			default:
			}
		}
		t.Reset(min(wait, 50*time.Millisecond))
		select {
		case <-t.C:
		case <-d.wake:
			// Reset above discards a value the timer may have left (Go
			// 1.23 timers): draining t.C after Stop could block for good.
		}
	}
}

// Close lets every held packet go when its time comes, then closes the
// queue (the kernel lets through what is still in it). Remove the NFQUEUE
// rule first, so nothing new arrives.
func (d *Delayer) Close() error {
	time.Sleep(50 * time.Millisecond) // notices still on their way
	d.closing.Store(true)
	<-d.done
	<-d.sent
	d.mu.Lock()
	err := unix.Close(d.fd)
	d.mu.Unlock()
	return errors.Join(err, d.err)
}
