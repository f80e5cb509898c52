package images

// EnsureBaseAs builds the base image under another reference, so a test
// builds it cold whatever Docker holds.
var EnsureBaseAs = ensureBase
