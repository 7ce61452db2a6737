#!/bin/bash
# mmdebstrap hook of image/build.sh: a cache of the arm64 packages outside the clone, so that a
# rebuild downloads only what changed. DEB_CACHE (set by build.sh) is the directory; empty: no cache.
#   deb-cache.sh in ROOT    setup hook: copy the cached .debs whose SHA256SUMS entry checks out into
#                           ROOT's apt cache (anything missing or damaged is simply downloaded again)
#   deb-cache.sh out ROOT   customize hook: rewrite the cache with the .debs of the packages
#                           installed in ROOT, plus those named in $WORK/deb-cache-extra (the
#                           16 KiB-page test kernel), and their SHA256SUMS
# A failure here never fails the build: the cache is an optimisation only.
set -uo pipefail
mode=$1; R=$2
[ -n "${DEB_CACHE:-}" ] || exit 0
A=$R/var/cache/apt/archives
mkdir -p "$A/partial"

case "$mode" in
in)
    if [ ! -s "$DEB_CACHE/SHA256SUMS" ]; then
        echo "deb-cache: $DEB_CACHE is empty, downloading every package"
        exit 0
    fi
    ok=$(cd "$DEB_CACHE" && sha256sum -c SHA256SUMS 2>/dev/null | sed -n 's/: OK$//p')
    n=0
    for f in $ok; do cp "$DEB_CACHE/$f" "$A/" && n=$((n + 1)); done
    total=$(wc -l < "$DEB_CACHE/SHA256SUMS")
    echo "deb-cache: $n of $total cached packages reused from $DEB_CACHE$( [ "$n" = "$total" ] || echo " (the others are missing or fail their checksum: downloaded again)")"
    ;;
out)
    new=$DEB_CACHE.new.$$
    rm -rf "$new" && mkdir -p "$new" || exit 0
    {
        chroot "$R" dpkg-query -W -f '${Package}_${Version}_${Architecture}.deb\n' | sed 's/:/%3a/'
        [ ! -f "${WORK:-/nonexistent}/deb-cache-extra" ] || cat "$WORK/deb-cache-extra"
    } | sort -u | while read -r f; do
        [ ! -f "$A/$f" ] || cp "$A/$f" "$new/"
    done
    if (cd "$new" && ls | grep '\.deb$' | xargs -r sha256sum > SHA256SUMS) && [ -s "$new/SHA256SUMS" ]; then
        rm -rf "$DEB_CACHE" && mv "$new" "$DEB_CACHE" \
            && echo "deb-cache: kept $(wc -l < "$DEB_CACHE/SHA256SUMS") packages ($(du -sh "$DEB_CACHE" | cut -f1)) in $DEB_CACHE"
    else
        echo "deb-cache: note: could not write the cache (ignored)"
        rm -rf "$new"
    fi
    ;;
*) echo "usage: deb-cache.sh in|out ROOT" >&2; exit 2 ;;
esac
exit 0
