// Package browse is amber's interactive terminal explorer (amber browse):
// a bubbletea model of an archive's artifacts, their layers and stages,
// each layer's files marked as added, modified, removed or unchanged, a
// file's content checked against its SHA-256, its diff against the
// version below, blame, and extraction through the extract package.
//
// It reads only through the file indexes and the view, as ls, cat and
// mount do, and lazily: a directory's children are read when it is
// unfolded, and in a single layer only the rows on screen are decoded,
// so a layer of a million files opens at once and memory does not grow
// with what has been scrolled past. Every evidence string reaches the
// terminal through internal/textsafe.
package browse
