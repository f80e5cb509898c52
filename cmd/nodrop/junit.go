package main

import (
	"encoding/xml"
	"fmt"
	"os"
	"strings"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/scenario"
)

// JUnit's XML, as CI systems read it: one suite, one case per run.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Time     float64     `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// writeJUnit writes one test case per run: a loss is a failure, a run
// that could not be judged an error.
func writeJUnit(path string, runs []scenario.Record) error {
	s := junitSuite{Name: "nodrop check", Tests: len(runs)}
	for i, r := range runs {
		c := junitCase{Name: fmt.Sprintf("%s, %s, run %d: %s", r.Config, r.Load, i+1, r.Disruption), Classname: "nodrop.check." + r.Config, Time: r.TookS}
		var b strings.Builder
		if r.Report != nil {
			_ = r.Report.WriteTable(&b)
		}
		c.SystemOut = b.String()
		switch {
		case r.Error != "":
			c.Error = &junitProblem{Message: r.Why(), Text: r.Error}
			s.Errors++
		case r.Verdict == loadgen.NotJudged:
			c.Error = &junitProblem{Message: "not judged", Text: strings.Join(r.NotJudgedBecause(), "\n")}
			s.Errors++
		case r.Verdict == loadgen.Lossy || !r.Outcome.Passed():
			c.Failure = &junitProblem{Message: fmt.Sprintf("%d of %d requests lost", r.Report.Lost, r.Report.Total), Text: strings.Join(append(r.Outcome.Problems, r.Advice...), "\n")}
			s.Failures++
		}
		s.Time += c.Time
		s.Cases = append(s.Cases, c)
	}
	raw, err := xml.MarshalIndent(junitSuites{Suites: []junitSuite{s}}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte(xml.Header), append(raw, '\n')...), 0o644)
}
