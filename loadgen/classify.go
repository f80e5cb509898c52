package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
)

// Class is why a request was lost. The zero value, OK, means it was not.
type Class string

// The loss classes. Every lost request lands in exactly one.
const (
	OK        Class = ""
	HTTP5xx   Class = "http_5xx"
	HTTPOther Class = "http_other"
	Refused   Class = "refused"
	Reset     Class = "reset"
	EOF       Class = "eof"
	Timeout   Class = "timeout"
	Other     Class = "other"
)

// LossClasses lists every loss class in report order.
var LossClasses = []Class{HTTP5xx, HTTPOther, Refused, Reset, EOF, Timeout, Other}

// Classify decides the class of one request from its transport error and,
// when a response arrived, its status code. It is the only place nodrop
// turns errors into classes.
//
// A status outside 200–399 is a loss: 5xx as http_5xx, anything else
// (404 from a wrong backend, 429, …) as http_other.
func Classify(err error, status int) Class {
	if err == nil {
		switch {
		case status >= 500:
			return HTTP5xx
		case status >= 200 && status < 400:
			return OK
		default:
			return HTTPOther
		}
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		// EPIPE: we wrote to a socket the peer had already reset.
		return Reset
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return EOF
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT), isNetTimeout(err):
		return Timeout
	}
	return classifyMessage(err.Error())
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// classifyMessage is the documented fallback for errors that reach nodrop
// only as text: net/http flattens a few conditions into unexported
// sentinel errors without a wrapped cause (for example "server closed
// idle connection", which is an EOF before any response byte).
func classifyMessage(msg string) Class {
	switch {
	case strings.Contains(msg, "connection refused"):
		return Refused
	case strings.Contains(msg, "connection reset"), strings.Contains(msg, "broken pipe"):
		return Reset
	case strings.Contains(msg, "server closed idle connection"), strings.HasSuffix(msg, "EOF"):
		return EOF
	case strings.Contains(msg, "Client.Timeout exceeded"), strings.Contains(msg, "deadline exceeded"), strings.Contains(msg, "i/o timeout"):
		return Timeout
	}
	return Other
}
