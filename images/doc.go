// Package images holds the sample apps nodrop deploys and their
// Dockerfiles. Every image builds offline, from Go modules and Debian
// packages, and is tagged by a hash of its inputs. app/ is the HTTP server
// whose flags reproduce each start-up and shut-down behaviour under test.
package images
