// Package timeline writes an archive's file times as a The Sleuth Kit body
// file (mactime -b reads it): every entry of every image layer, container
// changes layer and volume, with its recorded access, modification and
// change times, and the custody events as rows of their own. It reads the
// file indexes only, never file content.
package timeline
