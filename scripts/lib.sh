# Shared setup for scripts/test.sh and scripts/demo.sh (sourced, not run).

log() { printf '\n==> %s\n' "$*" >&2; }

# Installs the Debian packages listed in scripts/apt-packages.txt that are missing.
install_system_packages() {
    local wanted=() missing=()
    mapfile -t wanted < <(grep -v -e '^\s*#' -e '^\s*$' scripts/apt-packages.txt | sort -u)
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing system packages (${missing[*]}); run as root or install them" >&2
        return 1
    fi
    log "installing ${missing[*]}"
    # Keep package scripts from starting daemons (NetworkManager, MariaDB) on this machine:
    # multinic's tests and demo start exactly what they need, in their own namespaces.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
}

# Creates .venv with the Python tools in scripts/requirements.txt and puts it on PATH.
install_python_tools() {
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements.txt
    export PATH="$PWD/.venv/bin:$PATH"
}
