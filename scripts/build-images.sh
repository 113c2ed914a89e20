#!/usr/bin/env bash
# Builds the two images of ./Dockerfile with buildah, pulling nothing, and checks them:
#   millrace:<version>           the broker and its tools
#   millrace-operator:<version>  the operator
# <version> is the workspace's (Cargo.toml). scripts/test.sh runs this after `cargo test`.
#
#   scripts/build-images.sh              from the debug binaries `cargo test --workspace` built
#   scripts/build-images.sh --release    cargo build --release first, and use those binaries
#   scripts/build-images.sh --save DIR   also write DIR/<image>-<version>.tar (oci-archive)
#
# The Dockerfile's two replaceable stages are handed in with --build-context:
#   builder  $CARGO_TARGET_DIR/images/builder, the two binaries without their debug info, in
#            place of the stage that compiles inside a rust image;
#   runtime  localhost/millrace-runtime:<version>, committed here from scratch out of
#            $CARGO_TARGET_DIR/images/runtime: the libraries `ldd` lists for the binaries, CA
#            certificates, /etc/passwd with nonroot = 10001. An image, not the directory, because
#            buildah takes a directory context for COPY --from but not for FROM.
# Checks: user 10001:10001, the entrypoint, the binary executable, no shell, and the binary's
# `--version` run inside the image as that user. Inputs unchanged since the last run (their hash
# is an image label) rebuild nothing.
#
# Installs buildah from Debian when missing. BUILDAH_ISOLATION defaults to chroot (the default,
# crun, fails here: "cgroups in hybrid mode not supported"). Storage is buildah's default, overlay;
# where overlay cannot mount, point CONTAINERS_STORAGE_CONF at a storage.conf with driver = "vfs".
set -euo pipefail
target=$(realpath -m "${CARGO_TARGET_DIR:-$(dirname "$0")/../target}")
cd "$(dirname "$0")/.."
t0=$SECONDS

profile=debug
save=
while [ $# -gt 0 ]; do
    case $1 in
        --release) profile=release ;;
        --save) save=$(realpath -m "${2:?--save needs a directory}"); shift ;;
        -h | --help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "build-images.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if ! command -v buildah >/dev/null; then
    echo "build-images.sh: installing buildah from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null
fi
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
images=(millrace millrace-operator) # image name = binary name
work=$target/images
mkdir -p "$work"
exec 9>"$work/.lock"
flock 9 # two runs at once would fight over the staging directories and the tags

containers=()
cleanup() { for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
die() { echo "build-images.sh: $*" >&2; exit 1; }
label() { # label IMAGE: the hash of the inputs IMAGE was built from, or nothing
    buildah inspect --type image --format '{{index .OCIv1.Config.Labels "io.millrace.inputs"}}' "$1" 2>/dev/null || true
}
image_id() { buildah images --noheading --no-trunc --format '{{.ID}}' "$1" 2>/dev/null | head -n1 || true; }
drop_if_dangling() { # the image a rebuild replaced, unless something still names it
    if [ -n "$1" ] && buildah images --noheading --no-trunc --filter dangling=true --format '{{.ID}}' | grep -qx "$1"; then
        buildah rmi "$1" >/dev/null 2>&1 || true # a container may still use it
    fi
}

# 1. The binaries, as the `builder` context.
if [ "$profile" = release ]; then
    cargo build --release --locked -p millrace -p millrace-operator
fi
mkdir -p "$work/builder"
for bin in "${images[@]}"; do
    src=$target/$profile/$bin
    [ -x "$src" ] || die "no $src: run \`cargo test --workspace\` (or \`cargo build -p $bin\`) first, or pass --release"
    # Debug info is most of each binary (debug 450 MB, release 160 MB, std's and C code's
    # included); the Dockerfile strips it too. Symbols stay, so backtraces name functions.
    if command -v strip >/dev/null; then
        strip --strip-debug -o "$work/builder/$bin.new" "$src"
    else
        echo "build-images.sh: no strip (binutils): $bin keeps its debug info" >&2
        cp "$src" "$work/builder/$bin.new"
    fi
    mv -f "$work/builder/$bin.new" "$work/builder/$bin"
done

# 2. The runtime: only what the binaries load, taken from this host.
rt=$work/runtime
rm -rf "$rt"
mkdir -p "$rt/etc/ssl/certs" "$rt/home/nonroot" "$rt/tmp" "$rt/usr/share/doc"
ldd_out=$(cd "$work/builder" && ldd "${images[@]}")
if grep -q 'not found' <<<"$ldd_out"; then die "missing libraries: $ldd_out"; fi
# "libc.so.6 => /lib/…/libc.so.6 (0x…)" and the loader "/lib64/ld-linux-x86-64.so.2 (0x…)"
libs=$(awk '$2 == "=>" && $3 ~ /^\// {print $3} NF == 2 && $1 ~ /^\// {print $1}' <<<"$ldd_out" | sort -u)
[ -n "$libs" ] || die "ldd found no libraries in: $ldd_out"
for lib in $libs /etc/ssl/certs/ca-certificates.crt; do
    mkdir -p "$rt$(dirname "$lib")"
    cp -L "$lib" "$rt$lib"
    # Their licences travel with them, as in Debian-based images. The CA bundle is generated by
    # update-ca-certificates, so dpkg does not know it.
    if [ "$lib" = /etc/ssl/certs/ca-certificates.crt ]; then pkg=ca-certificates
    else pkg=$(dpkg -S "$lib" 2>/dev/null | head -n1 | cut -d: -f1) || true; fi
    if [ -n "$pkg" ] && [ -f "/usr/share/doc/$pkg/copyright" ]; then
        mkdir -p "$rt/usr/share/doc/$pkg"
        cp "/usr/share/doc/$pkg/copyright" "$rt/usr/share/doc/$pkg/"
    fi
done
cat >"$rt/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:10001:10001:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$rt/etc/group" <<'EOF'
root:x:0:
nonroot:x:10001:
EOF
echo 'hosts: files dns' >"$rt/etc/nsswitch.conf"
chmod 1777 "$rt/tmp"
chmod 700 "$rt/home/nonroot"
rt_inputs=$(tar -C "$rt" --sort=name --mtime=@0 --numeric-owner -cf - . | sha256sum | cut -d' ' -f1)
rt_image=localhost/millrace-runtime:$version
if [ "$(label "$rt_image")" != "$rt_inputs" ]; then
    old=$(image_id "$rt_image")
    c=$(buildah from --quiet scratch)
    containers+=("$c")
    buildah copy --quiet "$c" "$rt" / >/dev/null
    buildah copy --quiet --chown 10001:10001 "$c" "$rt/home/nonroot" /home/nonroot >/dev/null
    buildah config --label io.millrace.inputs="$rt_inputs" \
        --env PATH=/usr/local/bin:/usr/bin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$c"
    buildah commit --quiet "$c" "$rt_image" >/dev/null
    drop_if_dangling "$old"
    echo "build-images.sh: committed $rt_image"
fi
rt_id=$(image_id "$rt_image")

# 3. The images. Each one's inputs: the Dockerfile, its binary, the runtime.
for image in "${images[@]}"; do
    tag=localhost/$image:$version
    inputs=$( (sha256sum Dockerfile "$work/builder/$image" | cut -d' ' -f1; echo "$rt_id") | sha256sum | cut -d' ' -f1)
    if [ "$(label "$tag")" = "$inputs" ]; then
        echo "build-images.sh: $tag is up to date"
        continue
    fi
    old=$(image_id "$tag")
    buildah bud --quiet --pull=never --target "$image" \
        --build-context builder="$work/builder" \
        --build-context runtime=container-image://"$rt_image" \
        --label io.millrace.inputs="$inputs" -t "$tag" . >/dev/null
    drop_if_dangling "$old"
    echo "build-images.sh: built $tag"
done

# 4. Check what was built.
for image in "${images[@]}"; do
    tag=localhost/$image:$version
    user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$tag")
    [ "$user" = 10001:10001 ] || die "$tag runs as '$user', not 10001:10001"
    entrypoint=$(buildah inspect --type image --format '{{.OCIv1.Config.Entrypoint}}' "$tag")
    [ "$entrypoint" = "[/usr/local/bin/$image]" ] || die "$tag has entrypoint $entrypoint"
    c=$(buildah from --quiet --pull=never "$tag")
    containers+=("$c")
    root=$(buildah mount "$c")
    [ -f "$root/usr/local/bin/$image" ] || die "$tag has no /usr/local/bin/$image"
    [ -x "$root/usr/local/bin/$image" ] || die "$tag: /usr/local/bin/$image is not executable"
    for shell in bin/sh usr/bin/sh bin/bash usr/bin/bash bin/busybox; do
        if [ -e "$root/$shell" ] || [ -L "$root/$shell" ]; then die "$tag contains /$shell"; fi
    done
    buildah umount "$c" >/dev/null
    # The loader and libraries are the image's own here, and the user its configured one.
    got=$(buildah run "$c" -- "/usr/local/bin/$image" --version) || die "$tag: $image --version failed"
    [ "$got" = "$image $version" ] || die "$tag: $image --version printed '$got'"
    buildah rm "$c" >/dev/null
    echo "build-images.sh: $tag checked: user $user, entrypoint $entrypoint, no shell, runs: $got"
done

if [ -n "$save" ]; then
    mkdir -p "$save"
    for image in "${images[@]}"; do
        buildah push --quiet "localhost/$image:$version" "oci-archive:$save/$image-$version.tar:$image:$version"
        echo "build-images.sh: wrote $save/$image-$version.tar"
    done
fi

for tag in "${images[@]/#/localhost/}" localhost/millrace-runtime; do
    buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$tag:$version" | awk '{printf "    %-36s %s %s\n", $1, $2, $3}'
done
echo "build-images.sh: done in $((SECONDS - t0)) s ($profile binaries)"
