// Package dfxmltest checks a DFXML document the way the tests of export
// and of cmd/amber do: valid against the committed dfxml.xsd (xmllint),
// then read back by Python's XML parser (export/testdata/dfxml/list.py),
// independently of amber's writer. Tests only.
package dfxmltest
