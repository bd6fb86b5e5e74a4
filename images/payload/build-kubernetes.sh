#!/usr/bin/env bash
# Builds kubelet, kube-apiserver, kube-controller-manager, kube-scheduler,
# kube-proxy and kubectl from Debian bookworm's `kubernetes` source package
# into DEST (static, stripped, version strings of upstream's tag).
#
#   images/payload/build-kubernetes.sh DEST
#
# Sourced settings: images/payload/versions.env. Called by
# images/build-payload.sh, which caches DEST by the hash of this script and
# the Kubernetes lines of versions.env; it can also run on its own.
#
# Why it is fast: one `go build` for all six commands (shared packages compile
# once, both cores busy), GOPATH mode on the vendored tree (no module
# downloads, no network), only the one generated file the tarball lacks
# (pkg/generated/openapi) instead of `make generated_files` (which runs five
# generators over the whole tree), no debug info (-s -w).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"

dest=${1:?usage: build-kubernetes.sh DEST}
work=${KUBE_WORK:-$dest.work}
rm -rf "$work"
mkdir -p "$work" "$dest"

log() { printf '     kubernetes: %s\n' "$*"; }

# --- source ------------------------------------------------------------------
# `apt-get source` needs a deb-src entry (images/install-deps.sh adds it).
# --download-only + dpkg-source: no build-dependency check, patches applied.
log "apt-get source kubernetes=$KUBERNETES_DEB_VERSION"
(cd "$work" && apt-get source -qq --download-only "kubernetes=$KUBERNETES_DEB_VERSION" 2>&1 |
  grep -v 'unsandboxed as root' || true)
dsc=$(ls "$work"/kubernetes_*.dsc 2>/dev/null | head -n 1)
[ -n "$dsc" ] || { echo "kubernetes source package $KUBERNETES_DEB_VERSION not downloaded (is the deb-src entry there? run images/install-deps.sh)" >&2; exit 1; }
dpkg-source --no-check -x "$dsc" "$work/src" >/dev/null
# Cairn's own fixes to the vendored code (images/payload/patches, each says why).
for p in "$HERE"/patches/*.patch; do
  log "patch $(basename "$p")"
  patch -s -p1 -d "$work/src" <"$p"
done

# --- GOPATH ------------------------------------------------------------------
export GOPATH=$work/gopath GO111MODULE=off CGO_ENABLED=0 GOFLAGS=-trimpath
export GOCACHE=$work/gocache HOME=$work/home
mkdir -p "$GOPATH/src/k8s.io" "$HOME"
ln -s "$work/src" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"
pkg=k8s.io/kubernetes

# --- the one missing generated file ------------------------------------------
# Same inputs as Makefile.generated_files' KUBE openapi target: every
# directory with Go files (staging named as vendor/) whose files carry a
# +k8s:openapi-gen= tag, minus code-generator and sample-apiserver.
log "openapi-gen (pkg/generated/openapi)"
go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
dirs=$(find -H . \( -path ./_\* -o -path ./.\* -o -path ./vendor \) -prune -o -type f -name '*.go' -print |
  sed 's|^./staging/src|vendor|; s|^\./||' | xargs grep -l '^// *+k8s:openapi-gen=' |
  grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' |
  xargs -n1 dirname | LC_ALL=C sort -u | sed "s|^|$pkg/|" | paste -sd,)
# GOROOT explicitly: a -trimpath binary does not know where the standard
# library is, and without it time.Duration is an "invalid type".
GOROOT=$(go env GOROOT) "$work/openapi-gen" -i "$dirs" -p "$pkg/pkg/generated/openapi" -O zz_generated.openapi \
  -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$work/violations.report" >"$work/openapi-gen.log" 2>&1 ||
  { tail -n 20 "$work/openapi-gen.log" >&2; exit 1; }
[ -s pkg/generated/openapi/zz_generated.openapi.go ] || { echo "openapi-gen wrote nothing" >&2; exit 1; }

# --- build -------------------------------------------------------------------
# hack/lib/version.sh sets these; kubectl version and /version read them.
minor=${KUBERNETES_VERSION#v*.}
minor=${minor%%.*}
major=${KUBERNETES_VERSION#v}
major=${major%%.*}
ldflags="-s -w"
for p in $pkg/vendor/k8s.io/component-base/version $pkg/vendor/k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitCommit=$KUBERNETES_GIT_COMMIT -X $p.gitTreeState=archive -X $p.buildDate=$KUBERNETES_BUILD_DATE"
done
cmds=(kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)
log "go build ${cmds[*]} ($(go version | cut -d' ' -f3), GOMAXPROCS default)"
go build -o "$work/bin/" -ldflags "$ldflags" "${cmds[@]/#/./cmd/}"
for c in "${cmds[@]}"; do
  install -m 0755 "$work/bin/$c" "$dest/$c"
done
"$dest/kubectl" version --client --short 2>/dev/null | grep -q "$KUBERNETES_VERSION" ||
  { echo "kubectl does not report $KUBERNETES_VERSION" >&2; exit 1; }
cd /
rm -rf "$work"
log "done"
