#!/usr/bin/env bash
# Fetches a real Oracle MySQL server and client (Debian sid's mysql-server-core and
# mysql-client-core) for the agent's caching_sha2_password test (crates/multinic/tests/
# agent_db_mysql.rs). Bookworm has only MariaDB, which has no caching_sha2_password server plugin,
# and sid's MySQL needs a newer glibc than bookworm's, so the packages and their whole dependency
# closure (sid's libc included) are unpacked into a root directory of their own. The test runs
# mysqld with `chroot` into that root; nothing is installed on the host and no maintainer script
# runs.
#
# A private apt configuration (its own lists, cache and an empty dpkg status, so the closure is
# complete) resolves and downloads the packages from the Debian mirror's sid suite; `dpkg-deb -x`
# unpacks them; the downloaded archives and the package lists are deleted afterwards, so the
# cache holds the unpacked root only. Cached in ~/.cache/multinic/mysql-<version>/root and fetched
# only when missing (a warm run downloads nothing). The last line on stdout is the root dir;
# progress goes to stderr.
#
# Usage: scripts/mysql-sid.sh                  (fetch if missing, print the root dir)
#        MYSQL_VERSION=9.7.4-2 scripts/mysql-sid.sh
set -euo pipefail

# Pinned so that a warm run needs no package index. When sid no longer serves this version the
# cold run takes the one it serves (and says so); bump the pin then.
MYSQL_VERSION=${MYSQL_VERSION:-9.7.4-2}
MIRROR=${MYSQL_SID_MIRROR:-http://deb.debian.org/debian}
KEYRING=${MYSQL_SID_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
packages=(mysql-server-core mysql-client-core)

cache_root=${MULTINIC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/multinic}

say() { printf 'mysql-sid: %s\n' "$*" >&2; }

# The marker is written last: a root without it is an interrupted unpack and is redone.
complete() { [ -f "$1/root/.multinic-complete" ] && [ -x "$1/root/usr/sbin/mysqld" ]; }

if complete "$cache_root/mysql-$MYSQL_VERSION"; then
    say "cached in $cache_root/mysql-$MYSQL_VERSION/root"
    echo "$cache_root/mysql-$MYSQL_VERSION/root"
    exit 0
fi

for tool in apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || { say "$tool is missing (a Debian host is needed)"; exit 1; }
done
[ -r "$KEYRING" ] || { say "no Debian archive keyring at $KEYRING (apt-get install debian-archive-keyring)"; exit 1; }
start=$(date +%s)
mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/mysql-sid-work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- resolve and download, with apt's own dependency solver but none of the host's state -------
mkdir -p "$work/apt/lists/partial" "$work/apt/archives/partial" "$work/apt/etc/apt.conf.d" \
    "$work/apt/etc/preferences.d" "$work/apt/etc/sources.list.d"
: > "$work/apt/status"
echo "deb [signed-by=$KEYRING] $MIRROR sid main" > "$work/apt/etc/sources.list"
cat > "$work/apt/apt.conf" <<EOF
Dir::Etc "$work/apt/etc/";
Dir::State "$work/apt/";
Dir::State::Lists "$work/apt/lists/";
Dir::State::status "$work/apt/status";
Dir::Cache "$work/apt/";
Dir::Cache::Archives "$work/apt/archives/";
APT::Architecture "$(dpkg --print-architecture)";
APT::Architectures { "$(dpkg --print-architecture)"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
// Root owns the private dirs; apt's _apt sandbox user could not write them.
APT::Sandbox::User "root";
// The mirror may serve a frozen copy of sid whose Release has passed its Valid-Until.
Acquire::Check-Valid-Until "false";
EOF
export APT_CONFIG=$work/apt/apt.conf
say "reading sid's package index"
apt-get update -qq >&2

served=$(apt-cache policy mysql-server-core | sed -n 's/^ *Candidate: //p')
[ -n "$served" ] && [ "$served" != "(none)" ] || { say "sid serves no mysql-server-core"; exit 1; }
version=$MYSQL_VERSION
if [ "$served" != "$MYSQL_VERSION" ]; then
    say "sid serves mysql-server-core $served, not the pinned $MYSQL_VERSION: using $served (bump MYSQL_VERSION)"
    version=$served
fi
out=$cache_root/mysql-$version
if complete "$out"; then
    say "cached in $out/root"
    echo "$out/root"
    exit 0
fi

say "downloading mysql-server-core $version and its dependencies"
pins=()
for p in "${packages[@]}"; do pins+=("$p=$version"); done
apt-get install -qq -y --download-only "${pins[@]}" >&2
debs=("$work"/apt/archives/*.deb)
say "unpacking ${#debs[@]} packages"

# --- unpack --------------------------------------------------------------------------------------
rm -rf "$out"
root=$out/root
mkdir -p "$root"
# sid is merged-/usr; base-files (not in the closure) would make these links.
for d in bin sbin lib lib64; do
    mkdir -p "$root/usr/$d"
    ln -s "usr/$d" "$root/$d"
done
for deb in "${debs[@]}"; do dpkg-deb -x "$deb" "$root"; done
rm -rf "$work/apt"
# What mysqld needs at run time and that a package script or base-files would have made.
mkdir -p "$root/tmp" "$root/dev" "$root/proc" "$root/etc" "$root/var/lib/mysql-files" \
    "$root/run/mysqld"
chmod 1777 "$root/tmp"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
# Keep the cache small: the test runs mysqld and the mysql client only, so the other client
# programs, perl (mysql-server-core's helper scripts want it) and the documentation go.
find "$root/usr/bin" -mindepth 1 ! -name mysql -delete
rm -rf "$root"/usr/lib/x86_64-linux-gnu/perl* "$root"/usr/lib/x86_64-linux-gnu/libperl* \
    "$root/usr/share/perl" "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" \
    "$root/usr/share/lintian"
say "$(chroot "$root" /usr/sbin/mysqld --version)" || { say "the unpacked mysqld does not run"; exit 1; }
echo "$version" > "$root/.multinic-complete"

say "fetched in $(($(date +%s) - start)) s ($(du -sh "$out" | cut -f1)): $root"
echo "$root"
