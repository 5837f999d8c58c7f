// Package textsafe makes evidence strings safe to print for a person.
//
// Evidence comes from compromised machines: an image's user, a label, a
// tag, a history comment or a process name can hold an escape sequence
// that retitles the terminal or moves the cursor, a carriage return or a
// newline that forges the line after it, or a bidi override that shows
// "root" where "toor" is recorded. Every such string amber prints as text
// goes through Escape; --json outputs carry the exact bytes instead.
package textsafe
