package snapshot

// KeepIndexMax lets tests have every index streamed into the archive.
var KeepIndexMax = &keepIndexMax
