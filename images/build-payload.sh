#!/usr/bin/env bash
# Builds the Kubernetes payload (`make payload`): one read-only squashfs that
# machined mounts at /system/payload once the API is up.
#
#   $CAIRN_CACHE/payload/<key>/payload.sqsh   the payload (key: hash of every input)
#   $CAIRN_CACHE/payload/<key>/kubectl        kubectl for the host
#   $OUT/payload.sqsh, $OUT/kubectl           copies of those
#
# Inputs (the key): images/payload/versions.env (the one versions file), this
# script, build-kubernetes.sh and oci-image.py, the Rust sources of the image programs (pause/,
# testpod/, dns/, metrics-server/, webui/), Prometheus's config (addons/src/prometheus.yml),
# Cargo.lock and the host's libc6 version (the payload's
# libc must match the loader the rootfs copies from the host). A second run
# with the same inputs only copies the cached files.
#
# Heavy parts have their own caches, so changing one input does not redo the
# others: the Kubernetes binaries (images/payload/build-kubernetes.sh, keyed by
# that script, its patches in images/payload/patches and the KUBERNETES_* lines) and the Debian packages (keyed by the
# package versions). Layout of the payload: images/payload/README.md.
set -euo pipefail
# One compound command: bash parses it whole before running it, so editing
# this file while a build runs cannot change the running build.
{
source "$(dirname "$0")/lib.sh"
umask 022
export LC_ALL=C TZ=UTC
cd "$ROOT"

P=$ROOT/images/payload
# shellcheck source=payload/versions.env
source "$P/versions.env"
started=$(date +%s)
cache=$CAIRN_CACHE/payload
mkdir -p "$cache" "$OUT"

# Step counter: "[n/N] name", each with its duration (lib.sh's step).
STEPS=7
_n=0
pstep() {
  _n=$((_n + 1))
  step "[$_n/$STEPS] $1"
}
hash_of() { sha256sum | cut -c1-16; }

# The image programs: pause and testpod always, cairn-dns when its crate is
# in the workspace (it is written in parallel; the image appears when it lands).
rust_crates=(pause testpod)
[ -f dns/Cargo.toml ] && grep -q '"dns"' Cargo.toml && rust_crates+=(dns)
# The add-ons' programs: the metrics API and Prometheus's target discovery
# (metrics-server/), the Web UI (webui/).
rust_crates+=(metrics-server webui)
# Cluster logging: the log store and the per-node collector.
rust_crates+=(logstore logcollector)

libc_version=$(dpkg-query -W -f='${Version}' libc6)
kube_key=$({ cat "$P/build-kubernetes.sh" "$P"/patches/*.patch; grep '^KUBERNETES_' "$P/versions.env"; } | hash_of)
debs_key=$({ grep -v '^KUBERNETES_\|^#' "$P/versions.env"; sed -n '/^# --- debs/,/^# --- end debs/p' "$0"; echo "$libc_version"; } | hash_of)
key=$({
  echo "kube $kube_key debs $debs_key"
  cat "$0"
  git ls-files -z --cached --others --exclude-standard -- "${rust_crates[@]}" Cargo.lock \
    images/payload/versions.env images/payload/build-kubernetes.sh images/payload/oci-image.py \
    addons/src/prometheus.yml |
    LC_ALL=C sort -zu | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
    xargs -0 sha256sum
} | hash_of)
dest=$cache/$key
echo "payload: Kubernetes $KUBERNETES_VERSION, key $key -> $OUT/payload.sqsh"
# Several builds share the cache (other checkouts, other OUT directories):
# one at a time; the next one then finds the cached result.
exec 9>"$cache/.lock"
if ! flock -n 9; then
  echo "payload: waiting for another payload build to finish"
  flock 9
fi

if [ -f "$dest/payload.sqsh" ] && [ -f "$dest/kubectl" ]; then
  pstep "cached payload $key"
  install -m 0644 "$dest/payload.sqsh" "$OUT/payload.sqsh"
  install -m 0755 "$dest/kubectl" "$OUT/kubectl"
  step_done
  echo "payload: cached, done in $(($(date +%s) - started)) s"
  exit 0
fi

command -v mksquashfs >/dev/null || die "mksquashfs missing: run images/install-deps.sh"
work=$cache/.work-$key
rm -rf "$work"
mkdir -p "$work"
# Every file in the payload and in the image layers gets this mtime.
epoch=$(date -d "$KUBERNETES_BUILD_DATE" +%s)

# --- Kubernetes binaries -----------------------------------------------------
kube=$cache/kubernetes-$kube_key
if [ -x "$kube/kubelet" ] && [ -x "$kube/kubectl" ]; then
  pstep "Kubernetes $KUBERNETES_VERSION binaries (cached)"
else
  pstep "Kubernetes $KUBERNETES_VERSION binaries (go build, 5-12 min on 2 cores)"
  command -v go >/dev/null || die "go missing: run images/install-deps.sh (golang-go)"
  rm -rf "$kube.tmp"
  KUBE_WORK=$work/kubernetes run_logged "$work/kubernetes.log" "$P/build-kubernetes.sh" "$kube.tmp"
  rm -rf "$kube"
  mv "$kube.tmp" "$kube"
fi

# --- debs: Debian's binary packages, downloaded and unpacked -------------------------
debs=$cache/debs-$debs_key
if [ -f "$debs/packages.lock" ]; then
  pstep "Debian packages (cached)"
else
  pstep "Debian packages (apt-get download, dpkg-deb -x)"
  rm -rf "$debs.tmp"
  mkdir -p "$debs.tmp/debs" "$debs.tmp/root"
  main=(
    "etcd-server=$ETCD_SERVER_VERSION" "etcd-client=$ETCD_CLIENT_VERSION"
    "containerd=$CONTAINERD_VERSION" "runc=$RUNC_VERSION"
    "containernetworking-plugins=$CONTAINERNETWORKING_PLUGINS_VERSION"
    "iptables=$IPTABLES_VERSION" "conntrack=$CONNTRACK_VERSION" "mount=$MOUNT_VERSION"
    "coreutils=$COREUTILS_VERSION" "findutils=$FINDUTILS_VERSION"
  )
  # The libraries they need: every lib* package in their dependency closure
  # (a few more than needed; only the sonames the binaries name are copied).
  # glibc itself comes from the host (see copy_needed), and netbase brings
  # /etc/protocols for the iptables tools.
  libs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "${main[@]}" | grep -E '^lib' | grep -vx 'libc6' | grep -v perl | sort -u)
  # Prometheus (Debian's build: no Kubernetes service discovery, hence
  # cairn-prometheus-sd) and the scripts, styles and fonts its web UI links
  # to (only the files it names go into its image). Outside the closure above.
  prom=("prometheus=$PROMETHEUS_VERSION" libjs-bootstrap4 libjs-d3 libjs-eonasdan-bootstrap-datetimepicker
    libjs-jquery libjs-jquery-hotkeys libjs-moment libjs-moment-timezone libjs-mustache libjs-popper.js
    libjs-rickshaw fonts-glyphicons-halflings)
  (cd "$debs.tmp/debs" && apt-get download -qq "${main[@]}" "${prom[@]}" $libs netbase 2>&1 | grep -v 'unsandboxed' || true)
  for d in "$debs.tmp"/debs/*.deb; do
    dpkg-deb -x "$d" "$debs.tmp/root"
    dpkg-deb --show --showformat='${Package} ${Version}\n' "$d" >>"$debs.tmp/packages.unsorted"
  done
  for p in "${main[@]}" "${prom[0]}"; do
    grep -qx "${p%%=*} ${p#*=}" "$debs.tmp/packages.unsorted" ||
      die "Debian package $p was not downloaded (superseded? check apt-cache policy ${p%%=*} and images/payload/versions.env)"
  done
  sort -u "$debs.tmp/packages.unsorted" >"$debs.tmp/packages.lock"
  rm -rf "$debs.tmp/debs" "$debs.tmp/packages.unsorted" "$debs"
  mv "$debs.tmp" "$debs"
fi
# --- end debs
droot=$debs/root

# --- Rust programs of the images ------------------------------------------------
TARGET=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
pstep "cargo build --release (${rust_crates[*]}, static)"
# The same flags as build-image.sh's machined build, so both share one cargo cache.
RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$ROOT=/cairn --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" \
  run_logged "$work/cargo.log" cargo build --release --locked --target "$TARGET" "${rust_crates[@]/#/-p}"
rbin=$target_dir/$TARGET/release
rust_bins=(pause testpod)
[[ " ${rust_crates[*]} " == *" dns "* ]] && rust_bins+=(cairn-dns)
rust_bins+=(cairn-metrics-server cairn-webui)
rust_bins+=(cairn-logstore cairn-logcollector)
for b in "${rust_bins[@]}"; do
  [ -x "$rbin/$b" ] || die "cargo did not produce $rbin/$b"
  readelf -lW "$rbin/$b" | grep -q "Requesting program interpreter" && die "$rbin/$b is dynamically linked"
done

# --- shared libraries ---------------------------------------------------------------
# glibc's own libraries come from the host: the rootfs carries the host's
# loader (/lib64/ld-linux-x86-64.so.2) and loader and libc must be one build.
glibc_files=$(dpkg -L libc6 | grep -E '/lib/x86_64-linux-gnu/[^/]+\.so[.0-9]*$' || true)
# find_lib SONAME: the path of SONAME in the unpacked packages, else the host's glibc.
find_lib() {
  local so=$1 d f
  for f in $glibc_files; do
    [ "${f##*/}" = "$so" ] && { readlink -f "$f"; return; }
  done
  for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do
    [ -e "$droot/$d/$so" ] && { readlink -f "$droot/$d/$so"; return; }
  done
  return 1
}
# copy_needed LIBDIR ELF...: copy every shared library the ELF files need,
# transitively (DT_NEEDED), as LIBDIR/<soname>.
copy_needed() {
  local libdir=$1 so path
  shift
  local queue=("$@")
  mkdir -p "$libdir"
  while [ ${#queue[@]} -gt 0 ]; do
    local elf=${queue[0]}
    queue=("${queue[@]:1}")
    for so in $(readelf -dW "$elf" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      [ -e "$libdir/$so" ] && continue
      [[ "$so" == ld-linux-x86-64.so.2 ]] && continue
      path=$(find_lib "$so") || die "$elf needs $so, which no downloaded package provides"
      install -m 0755 "$path" "$libdir/$so"
      queue+=("$libdir/$so")
    done
  done
}
is_dynamic() { readelf -lW "$1" 2>/dev/null | grep -q "Requesting program interpreter"; }

# --- payload tree ------------------------------------------------------------------
pstep "payload tree (bin, lib, cni/bin)"
tree=$work/payload
mkdir -p "$tree/bin" "$tree/lib" "$tree/cni/bin" "$tree/images"
# Hard links into the cache where possible: the tree is large and the disk shared.
ln "$kube/kubelet" "$tree/bin/kubelet"
for f in usr/bin/containerd usr/bin/containerd-shim-runc-v2 usr/sbin/runc usr/bin/etcd usr/bin/etcdctl \
  bin/mount bin/umount usr/sbin/xtables-nft-multi usr/sbin/conntrack usr/bin/du usr/bin/nice usr/bin/find; do
  [ -f "$droot/$f" ] || die "$f is not in the Debian packages"
  install -m 0755 "$droot/$f" "$tree/bin/${f##*/}"
done
# The kubelet and the CNI plugins exec the iptables tools by these names
# (iptables-nft: the same backend kube-proxy's image uses).
iptables_names=(iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore)
for n in "${iptables_names[@]}"; do ln -s xtables-nft-multi "$tree/bin/$n"; done
for p in bridge host-local loopback portmap; do
  f=$droot/usr/lib/cni/$p
  [ -f "$f" ] || die "CNI plugin $p is not in containernetworking-plugins"
  install -m 0755 "$f" "$tree/cni/bin/$p"
done
# iptables' extensions, loaded at run time (XTABLES_LIBDIR=/system/payload/lib/xtables).
cp -a "$droot/usr/lib/x86_64-linux-gnu/xtables" "$tree/lib/xtables"
dyn=()
for f in "$tree"/bin/* "$tree"/cni/bin/* "$tree"/lib/xtables/*.so; do
  [ -L "$f" ] && continue
  is_dynamic "$f" || [[ "$f" == *.so ]] && dyn+=("$f")
done
copy_needed "$tree/lib" "${dyn[@]}"
# The binaries find the payload's libraries by themselves (DT_RPATH, which
# also covers their libraries' own dependencies): LD_LIBRARY_PATH does not
# reach every process, e.g. runc re-executes itself as `runc init` with an
# environment of its own, and without libseccomp that child dies before it
# can start a container ("can't copy bootstrap data to pipe").
for f in "$tree"/bin/* "$tree"/cni/bin/*; do
  [ -L "$f" ] || ! is_dynamic "$f" && continue
  patchelf --force-rpath --set-rpath /system/payload/lib "$f"
done
# Smoke test: each dynamic binary loads with only the payload's libraries.
for f in "$tree"/bin/*; do
  [ -L "$f" ] || ! is_dynamic "$f" && continue
  missing=$(LD_LIBRARY_PATH=$tree/lib ldd "$f" | grep 'not found' || true)
  [ -z "$missing" ] || die "${f##*/} misses libraries: $missing"
done
install -m 0644 "$P/versions.env" "$tree/versions.env"
install -m 0644 "$debs/packages.lock" "$tree/packages.lock"
echo "$key" >"$tree/id"

# --- OCI images ----------------------------------------------------------------------
pstep "OCI images (python3 images/payload/oci-image.py)"
layers=$work/layers
oci() { python3 "$P/oci-image.py" --epoch "$epoch" "$@"; }
refs=$tree/images/refs.txt
: >"$refs"
# image NAME REF ROOTFS ARGS...: build $tree/images/NAME.tar and list it in refs.txt.
image() {
  local name=$1 ref=$2 rootfs=$3
  shift 3
  oci --ref "$ref" --rootfs "$rootfs" --out "$tree/images/$name.tar" "$@" >/dev/null
  rm -rf "$rootfs"
  echo "$name.tar $ref" >>"$refs"
}
base() { # base DIR: the directories every image has (runc creates mount points in them)
  mkdir -p "$1/etc" "$1/tmp" "$1/usr/local/bin"
  chmod 1777 "$1/tmp"
}
r=$layers/pause; base "$r"; install -m 0755 "$rbin/pause" "$r/pause"
image pause "$IMAGE_REGISTRY/pause:$IMAGE_TAG" "$r" --entrypoint /pause
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  r=$layers/$c; base "$r"; ln "$kube/$c" "$r/usr/local/bin/$c"
  image "$c" "$IMAGE_REGISTRY/$c:$IMAGE_TAG" "$r" --entrypoint "/usr/local/bin/$c"
done
# kube-proxy: its binary, the iptables-nft tools and conntrack with their
# libraries at the paths the loader searches, the loader, the xtables
# extensions at their compiled-in path; no shell.
r=$layers/kube-proxy; base "$r"
ln "$kube/kube-proxy" "$r/usr/local/bin/kube-proxy"
install -D -m 0755 "$droot/usr/sbin/xtables-nft-multi" "$r/usr/sbin/xtables-nft-multi"
install -D -m 0755 "$droot/usr/sbin/conntrack" "$r/usr/sbin/conntrack"
for n in "${iptables_names[@]}"; do ln -s xtables-nft-multi "$r/usr/sbin/$n"; done
mkdir -p "$r/usr/lib/x86_64-linux-gnu"
cp -a "$droot/usr/lib/x86_64-linux-gnu/xtables" "$r/usr/lib/x86_64-linux-gnu/xtables"
copy_needed "$r/lib/x86_64-linux-gnu" "$r/usr/sbin/xtables-nft-multi" "$r/usr/sbin/conntrack" "$r"/usr/lib/x86_64-linux-gnu/xtables/*.so
install -D -m 0755 "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "$r/lib64/ld-linux-x86-64.so.2"
install -m 0644 "$droot/etc/protocols" "$r/etc/protocols"
if [ "$(id -u)" -eq 0 ]; then
  chroot "$r" /usr/sbin/iptables --version >/dev/null && chroot "$r" /usr/sbin/conntrack --version >/dev/null ||
    die "the iptables tools do not run inside the kube-proxy image (missing library?)"
fi
image kube-proxy "$IMAGE_REGISTRY/kube-proxy:$IMAGE_TAG" "$r" --entrypoint /usr/local/bin/kube-proxy \
  --env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
if [[ " ${rust_bins[*]} " == *" cairn-dns "* ]]; then
  r=$layers/cairn-dns; base "$r"; install -m 0755 "$rbin/cairn-dns" "$r/usr/local/bin/cairn-dns"
  image cairn-dns "$IMAGE_REGISTRY/cairn-dns:$IMAGE_TAG" "$r" --entrypoint /usr/local/bin/cairn-dns
fi
# The add-ons (addons/src): the metrics API with Prometheus's target
# discovery beside it (one image, one program under two names), the Web
# UI, and Prometheus.
r=$layers/cairn-metrics-server; base "$r"
install -m 0755 "$rbin/cairn-metrics-server" "$r/usr/local/bin/cairn-metrics-server"
# One program: called by this name it is the target discovery (saves ~9 MB).
ln -s cairn-metrics-server "$r/usr/local/bin/cairn-prometheus-sd"
image cairn-metrics-server "$IMAGE_REGISTRY/cairn-metrics-server:$IMAGE_TAG" "$r" \
  --entrypoint /usr/local/bin/cairn-metrics-server
r=$layers/cairn-webui; base "$r"; install -m 0755 "$rbin/cairn-webui" "$r/usr/local/bin/cairn-webui"
image cairn-webui "$IMAGE_REGISTRY/cairn-webui:$IMAGE_TAG" "$r" --entrypoint /usr/local/bin/cairn-webui
# Prometheus: Debian's binary (dynamic: its libraries and the loader go
# along, as for kube-proxy), its classic web UI (templates, its own static
# files, and from the libjs packages only the files the templates name,
# symlinks resolved), a default config (the add-on mounts the same file
# from a ConfigMap). No shell.
r=$layers/prometheus; base "$r"
install -D -m 0755 "$droot/usr/bin/prometheus" "$r/bin/prometheus"
copy_needed "$r/lib/x86_64-linux-gnu" "$r/bin/prometheus"
install -D -m 0755 "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "$r/lib64/ld-linux-x86-64.so.2"
web=$r/usr/share/prometheus/web
mkdir -p "$web/static"
cp -a "$droot/usr/share/prometheus/web/templates" "$web/templates"
for d in css img js vendor; do cp -a "$droot/usr/share/prometheus/web/static/$d" "$web/static/$d"; done
glyph=$web/static/vendor/bootstrap4-glyphicons/fonts/glyphicons
rm -f "$glyph"
cp -a "$droot/usr/share/fonts-glyphicons" "$glyph"
for f in bootstrap4/css/bootstrap.min.css bootstrap4/js/bootstrap.min.js d3/d3.min.js \
  eonasdan-bootstrap-datetimepicker/bootstrap-datetimepicker.min.css \
  eonasdan-bootstrap-datetimepicker/bootstrap-datetimepicker.min.js jquery/jquery.min.js \
  jquery-hotkeys/jquery.hotkeys.js moment/moment.min.js moment-timezone/moment-timezone-with-data.min.js \
  mustache/mustache.min.js popper.js/popper.min.js rickshaw/rickshaw.min.css rickshaw/rickshaw.min.js; do
  src=$(readlink -f "$droot/usr/share/javascript/$f")
  [ -f "$src" ] || die "Prometheus's web UI needs javascript/$f, which no downloaded libjs package has"
  install -D -m 0644 "$src" "$web/static/$f"
done
install -D -m 0644 addons/src/prometheus.yml "$r/etc/prometheus/prometheus.yml"
if [ "$(id -u)" -eq 0 ]; then
  chroot "$r" /bin/prometheus --version >/dev/null || die "prometheus does not run inside its image (missing library?)"
fi
image prometheus "$IMAGE_REGISTRY/prometheus:$IMAGE_TAG" "$r" --entrypoint /bin/prometheus \
  --cmd=--config.file=/etc/prometheus/prometheus.yml --cmd=--storage.tsdb.path=/prometheus
# Cluster logging (addons/src/logging.rs): the log store and the
# per-node collector, one static binary each.
for b in cairn-logstore cairn-logcollector; do
  r=$layers/$b; base "$r"; install -m 0755 "$rbin/$b" "$r/usr/local/bin/$b"
  image "$b" "$IMAGE_REGISTRY/$b:$IMAGE_TAG" "$r" --entrypoint "/usr/local/bin/$b"
done
r=$layers/cairn-testpod; base "$r"; install -m 0755 "$rbin/testpod" "$r/usr/local/bin/testpod"
image cairn-testpod "$IMAGE_REGISTRY/cairn-testpod:$TESTPOD_TAG" "$r" --entrypoint /usr/local/bin/testpod \
  --cmd serve --cmd=--port --cmd 8080

# --- squashfs --------------------------------------------------------------------------
pstep "payload.sqsh (zstd squashfs)"
find "$tree" -exec touch -h -d "@$epoch" {} +
rm -f "$work/payload.sqsh"
# zstd level 15: within a few percent of 19's size at a fraction of the time;
# reading it back under TCG costs the same.
env -u SOURCE_DATE_EPOCH mksquashfs "$tree" "$work/payload.sqsh" -comp zstd -Xcompression-level 15 \
  -noappend -no-progress -quiet -all-root -reproducible -mkfs-time "$epoch" -all-time "$epoch" >/dev/null

# --- cache and copy out -----------------------------------------------------------------
pstep "cache $dest, copy to $OUT"
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
mv "$work/payload.sqsh" "$dest.tmp/payload.sqsh"
install -m 0755 "$kube/kubectl" "$dest.tmp/kubectl"
(cd "$tree" && find . -type f -printf '%s %P\n' | sort -k2) >"$dest.tmp/contents.txt"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
# This build's work directory, and any an interrupted build left (the lock
# says none is running).
rm -rf "$cache"/.work-*
install -m 0644 "$dest/payload.sqsh" "$OUT/payload.sqsh"
install -m 0755 "$dest/kubectl" "$OUT/kubectl"
# Older payloads of this machine's cache: keep the three newest.
ls -1dt "$cache"/* | grep -E '/[0-9a-f]{16}$' | tail -n +4 | xargs -r rm -rf
step_done
echo "payload: done in $(($(date +%s) - started)) s; $(stat -c %s "$OUT/payload.sqsh") bytes"
exit 0
}
