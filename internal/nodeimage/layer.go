package nodeimage

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Files is the content of one image layer, by absolute path. It builds
// images from files alone: no Dockerfile, no base image, no registry.
type Files map[string]File

// File is a regular file (Data or Source), a directory or a symlink.
type File struct {
	Data   []byte
	Source string // path of a host file whose content to use
	Mode   fs.FileMode
	Dir    bool
	Link   string
}

// AddFile adds a host file (following symlinks) at path p.
func (f Files) AddFile(p, source string, mode fs.FileMode) { f[p] = File{Source: source, Mode: mode} }

// AddData adds a file with the given content.
func (f Files) AddData(p string, data []byte, mode fs.FileMode) { f[p] = File{Data: data, Mode: mode} }

// AddDir adds a directory.
func (f Files) AddDir(p string, mode fs.FileMode) { f[p] = File{Dir: true, Mode: mode} }

// AddLink adds a symlink.
func (f Files) AddLink(p, target string) { f[p] = File{Link: target} }

// epoch is the modification time of every file, so that equal inputs
// give equal layers.
var epoch = time.Unix(0, 0)

// writeTar writes the files as a tar stream, parents first.
func (f Files) writeTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	if err := f.writeEntries(tw, func(string) bool { return false }); err != nil {
		return err
	}
	return tw.Close()
}

// writeEntries writes the files and their missing parent directories,
// except parents for which exists reports true.
func (f Files) writeEntries(tw *tar.Writer, exists func(dir string) bool) error {
	all := map[string]File{}
	for p, file := range f {
		all[strings.TrimPrefix(path.Clean("/"+p), "/")] = file
	}
	for p := range f {
		p = strings.TrimPrefix(path.Clean("/"+p), "/")
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := all[d]; !ok && !exists(d) {
				all[d] = File{Dir: true, Mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		if err := writeEntry(tw, p, all[p]); err != nil {
			return err
		}
	}
	return nil
}

func writeEntry(tw *tar.Writer, p string, file File) error {
	h := &tar.Header{Name: p, ModTime: epoch, Mode: int64(file.Mode.Perm()), Format: tar.FormatPAX}
	if file.Mode&fs.ModeSticky != 0 {
		h.Mode |= 0o1000
	}
	switch {
	case file.Dir:
		h.Typeflag, h.Name = tar.TypeDir, p+"/"
	case file.Link != "":
		h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, file.Link, 0o777
	default:
		h.Typeflag = tar.TypeReg
	}
	if h.Typeflag != tar.TypeReg {
		return tw.WriteHeader(h)
	}
	if file.Source == "" {
		h.Size = int64(len(file.Data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(file.Data)
		return err
	}
	src, err := os.Open(file.Source)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	h.Size = st.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if _, err := io.Copy(tw, src); err != nil {
		return fmt.Errorf("adding %s: %w", file.Source, err)
	}
	return nil
}

// ImageConfig is the runtime configuration of an image built from Files.
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	User       string
	StopSignal string
	WorkingDir string
}

// Image builds a one-layer image from files.
func Image(files Files, cfg ImageConfig) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(files.writeTar(pw)) }()
		return pr, nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", runtime.GOARCH, v1.Time{Time: epoch}
	cf.Config.Entrypoint = cfg.Entrypoint
	cf.Config.Cmd = cfg.Cmd
	cf.Config.Env = cfg.Env
	cf.Config.User = cfg.User
	cf.Config.StopSignal = cfg.StopSignal
	cf.Config.WorkingDir = cfg.WorkingDir
	return mutate.ConfigFile(img, cf)
}
