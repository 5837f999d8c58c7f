// Package registry is amber's side of an OCI registry (distribution,
// Harbor, ECR, GCR, ACR, Artifactory): a source of images to capture, and
// the shared store of sealed evidence that examiners read from — pushed
// as an OCI artifact whose one layer is the archive file byte for byte,
// and read back lazily with HTTP range requests.
//
// References use skopeo's transport prefix: docker://HOST[:PORT]/REPO
// [:TAG|@sha256:...]. The registry must be named: a Docker Hub-style
// short name ("alpine") is refused, never sent to docker.io. Credentials
// come from the Docker config (~/.docker/config.json and its credential
// helpers) through go-containerregistry's keychain; Options.Insecure
// allows plain HTTP and unverified certificates (loopback and labs); a
// custom CA through SSL_CERT_FILE, as Go reads it.
//
// Everything a registry answers is hostile input: bounded, checked
// against its digest, and an error names the registry.
package registry
