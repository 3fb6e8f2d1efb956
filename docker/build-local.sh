#!/usr/bin/env bash
# Build the CPU image from docker/Dockerfile.cpu on a machine where no image registry is reachable
# but Debian's docker.io, its package mirror and PyPI are: the base image is made with debootstrap
# from the mirror apt already uses (and carries the CA bundle that the host's pip trusts), torch
# comes from the build this machine's pip resolves (e.g. a local +cpu wheel) through a throw-away
# index on 127.0.0.1, and the build runs on the host network. Starts dockerd if none answers (and
# leaves it running). Progress goes to stderr; the last line on stdout is the image reference.
#
#   IMAGE=stac-clouds2mask:cpu-local   image to build
#   BASE_IMAGE=stac-clouds2mask-base:bookworm   debootstrap base, made once (REBUILD_BASE=1: again)
#   DOCKER=/usr/bin/docker             a client with BuildKit built in (Debian's docker.io has it)
#   TORCH_VERSION=2.13.0
#   TORCH_INDEX_PORT=47613             port of the throw-away torch index on 127.0.0.1 (taken: any free one)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image="${IMAGE:-stac-clouds2mask:cpu-local}"
base="${BASE_IMAGE:-stac-clouds2mask-base:bookworm}"
docker="${DOCKER:-/usr/bin/docker}"
torch_version="${TORCH_VERSION:-2.13.0}"
host_ca=/etc/ssl/certs/host-ca-bundle.pem  # where the host's CA bundle sits inside the base

say() { echo "build-local: $*" >&2; }

work="$(mktemp -d -t clouds2mask-build.XXXXXX)"
server=""
cleanup() {
    [ -z "$server" ] || kill "$server" 2>/dev/null || true
    rm -rf -- "$work"
}
trap cleanup EXIT

if ! "$docker" info >/dev/null 2>&1; then
    log="${TMPDIR:-/tmp}/clouds2mask-dockerd.log"
    say "no Docker daemon answers: starting dockerd (log: $log)"
    nohup dockerd >"$log" 2>&1 &
    for _ in $(seq 60); do "$docker" info >/dev/null 2>&1 && break; sleep 0.5; done
    "$docker" info >/dev/null
fi

if [ -n "${REBUILD_BASE:-}" ] || ! "$docker" image inspect "$base" >/dev/null 2>&1; then
    mirror="$(apt-cache policy | awk '$3 == "bookworm/main" {print $2; exit}')"
    [ -n "$mirror" ] || { say "no bookworm/main mirror in apt's sources"; exit 1; }
    say "debootstrap bookworm from $mirror -> $base"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    ca="${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || echo /etc/ssl/certs/ca-certificates.crt)}"
    cp "$ca" "$work/rootfs$host_ca"
    tar -C "$work/rootfs" -c . | "$docker" import - "$base" >/dev/null
    rm -rf -- "$work/rootfs"
fi

say "torch==$torch_version as this machine's pip resolves it"
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$work/simple/torch" "torch==$torch_version" >&2
# a fixed port keeps TORCH_INDEX, and so docker's cache of the torch layer, the same from build to build
port="$(python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' "${TORCH_INDEX_PORT:-47613}")"
python3 -m http.server --bind 127.0.0.1 --directory "$work" "$port" >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break
    sleep 0.1
done

say "building $image from docker/Dockerfile.cpu on $base"
start=$SECONDS
DOCKER_BUILDKIT=1 "$docker" build --network host --progress plain -f "$repo/docker/Dockerfile.cpu" \
    --build-arg "BASE_IMAGE=$base" --build-arg "TORCH_VERSION=$torch_version" \
    --build-arg "TORCH_INDEX=http://127.0.0.1:$port/simple" --build-arg "PIP_CERT=$host_ca" \
    -t "$image" "$repo" >&2
size="$("$docker" image inspect --format '{{.Size}}' "$image")"
say "built $image in $((SECONDS - start)) s, $((size / 1000000)) MB"
echo "$image"
