package manifest

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// kernelName is Windows's version, as uname's would be recorded elsewhere.
func kernelName() string {
	v := windows.RtlGetVersion()
	return fmt.Sprintf("Windows %d.%d.%d", v.MajorVersion, v.MinorVersion, v.BuildNumber)
}
