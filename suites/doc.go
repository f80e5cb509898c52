// Package suites holds nodrop's Ginkgo v2 specs, one file per scenario
// family (rollout, hot upgrade, chaos), each configuration an Entry of a
// DescribeTable, each spec a claim about lost requests. matchers/ holds
// the Gomega matchers on loadgen reports.
package suites
