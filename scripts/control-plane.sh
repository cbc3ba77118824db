#!/usr/bin/env bash
# Starts and stops a real Kubernetes control plane for tests, on 127.0.0.1 only:
# etcd (data on tmpfs, no fsync), kube-apiserver (TLS from an openssl CA, static token auth,
# Node+RBAC authorization, service-account signing keys, PodSecurity and
# OwnerReferencesPermissionEnforcement admission on top of the defaults, audit log) and
# kube-controller-manager (Job, GC, TTL-after-finished, namespace, service accounts and their
# tokens, root-CA publisher, cluster-role aggregation, pod GC).
#
#   scripts/control-plane.sh up DIR [--owner PID]   start; DIR/admin.kubeconfig when ready
#   scripts/control-plane.sh down DIR               stop all it started, remove the tmpfs data
#
# Ports are picked free at start, so several control planes can run at once. With --owner PID a
# watchdog runs `down DIR` when that process goes away (a test killed before its cleanup ran).
# The binaries come from $MULTINIC_K8S_BIN_DIR (scripts/k8s-bins.sh prints it), else PATH.
# $KCM_EXTRA_ARGS (word-split) is added to kube-controller-manager's flags, e.g. its client rate
# limit (`--kube-api-qps=200 --kube-api-burst=400`) for a benchmark.
#
# DIR afterwards holds: admin.kubeconfig, cp.env (URL, ports, admin token, paths), ca.crt,
# audit.log, logs/*.log, pids/*.pid.
set -Eeuo pipefail

usage() { echo "usage: $0 up DIR [--owner PID] | down DIR" >&2; exit 2; }
say() { printf 'control-plane: %s\n' "$*" >&2; }

# How long `up` waits for each component to become ready.
READY_TIMEOUT=${MULTINIC_CP_READY_TIMEOUT:-120}
# How long `down` waits for a process to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT=15

bin_path() {
    local name=$1
    if [ -n "${MULTINIC_K8S_BIN_DIR:-}" ] && [ -x "$MULTINIC_K8S_BIN_DIR/$name" ]; then
        echo "$MULTINIC_K8S_BIN_DIR/$name"
    elif command -v "$name" >/dev/null; then
        command -v "$name"
    else
        say "$name not found: set MULTINIC_K8S_BIN_DIR to the dir scripts/k8s-bins.sh prints"
        exit 1
    fi
}

# Prints N ports the kernel hands out as free on 127.0.0.1 (all held open until printed, so they
# are distinct).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Starts a program in its own session (so a Ctrl-C in the caller's terminal does not hit it),
# logging to DIR/logs/NAME.log, and records its pid in DIR/pids/NAME.pid.
start() {
    local name=$1
    shift
    setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$dir/pids/$name.pid"
}

# Waits until `check` succeeds, failing early if the component's process died.
wait_for() {
    local name=$1 what=$2
    shift 2
    local deadline=$((SECONDS + READY_TIMEOUT)) pid
    pid=$(cat "$dir/pids/$name.pid")
    until "$@" >/dev/null 2>&1; do
        if ! alive "$pid"; then
            say "$name exited before $what; last log lines:"
            tail -n 30 "$dir/logs/$name.log" >&2
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            say "$name: no $what after ${READY_TIMEOUT}s; last log lines:"
            tail -n 30 "$dir/logs/$name.log" >&2
            return 1
        fi
        sleep 0.2
    done
}

api_get() {
    curl -fsS --max-time 5 --cacert "$dir/ca.crt" -H "Authorization: Bearer $admin_token" \
        "https://127.0.0.1:$api_port$1"
}

make_certs() {
    local pki=$dir/pki
    mkdir -p "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=multinic-test-ca" \
        -keyout "$pki/ca.key" -out "$dir/ca.crt" 2>/dev/null
    cat >"$pki/apiserver.ext" <<'EOF'
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
        -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
    openssl x509 -req -in "$pki/apiserver.csr" -CA "$dir/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -CAserial "$pki/ca.srl" -days 2 -extfile "$pki/apiserver.ext" \
        -out "$pki/apiserver.crt" 2>/dev/null
    # Service-account token signing pair (apiserver signs, both verify).
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    chmod 600 "$pki"/*.key
}

# kubeconfig USER TOKEN FILE: a self-contained kubeconfig (CA embedded) for a bearer token.
write_kubeconfig() {
    local user=$1 token=$2 file=$3 ca
    ca=$(base64 -w0 <"$dir/ca.crt")
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: multinic-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $ca
users:
- name: $user
  user:
    token: $token
contexts:
- name: $user@multinic-test
  context:
    cluster: multinic-test
    user: $user
current-context: $user@multinic-test
EOF
    chmod 600 "$file"
}

up() {
    [ -e "$dir/pids" ] && { say "$dir already holds a control plane (run down first)"; exit 1; }
    local etcd apiserver kcm
    etcd=$(bin_path etcd)
    apiserver=$(bin_path kube-apiserver)
    kcm=$(bin_path kube-controller-manager)
    mkdir -p "$dir/logs" "$dir/pids" "$dir/kcm-certs"
    # Whatever fails from here on, leave nothing running.
    trap up_failed ERR

    local etcd_port peer_port kcm_port data
    read -r etcd_port peer_port api_port kcm_port < <(free_ports 4)
    data=$(mktemp -d /dev/shm/multinic-etcd.XXXXXX)
    echo "$data" >"$dir/etcd-data-dir"

    make_certs
    admin_token=$(openssl rand -hex 24)
    local kcm_token
    kcm_token=$(openssl rand -hex 24)
    # token,user,uid,"groups"
    cat >"$dir/pki/tokens.csv" <<EOF
$admin_token,admin,admin-uid,"system:masters"
$kcm_token,system:kube-controller-manager,kcm-uid
EOF
    chmod 600 "$dir/pki/tokens.csv"

    # Metadata for every request: who did what, and the response code (tests look for 403s).
    cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
EOF

    say "etcd on 127.0.0.1:$etcd_port (data $data)"
    start etcd "$etcd" --name default --data-dir "$data" --unsafe-no-fsync \
        --listen-client-urls "http://127.0.0.1:$etcd_port" \
        --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "default=http://127.0.0.1:$peer_port" \
        --log-level warn
    wait_for etcd "/health" curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health"

    say "kube-apiserver on https://127.0.0.1:$api_port"
    # Endpoints may not hold loopback addresses, so the apiserver does not publish its own
    # endpoint (--endpoint-reconciler-type=none); the service CIDR is only allocated, never routed.
    # --enable-admission-plugins adds to the default set: PodSecurity (on by default, named so
    # it stays on) and OwnerReferencesPermissionEnforcement, which hardened clusters (OpenShift)
    # enable: an ownerReference with blockOwnerDeletion needs `update` on the owner's finalizers.
    start kube-apiserver "$apiserver" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
        --etcd-servers "http://127.0.0.1:$etcd_port" \
        --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
        --client-ca-file "$dir/ca.crt" --cert-dir "$dir/pki" \
        --token-auth-file "$dir/pki/tokens.csv" \
        --authorization-mode Node,RBAC \
        --enable-admission-plugins PodSecurity,OwnerReferencesPermissionEnforcement \
        --allow-privileged=true \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$dir/pki/sa.pub" \
        --service-account-signing-key-file "$dir/pki/sa.key" \
        --service-cluster-ip-range 10.0.0.0/24 \
        --endpoint-reconciler-type none \
        --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" \
        --profiling=false
    wait_for kube-apiserver "/readyz" api_get /readyz

    write_kubeconfig admin "$admin_token" "$dir/admin.kubeconfig"
    write_kubeconfig system:kube-controller-manager "$kcm_token" "$dir/pki/kcm.kubeconfig"

    say "kube-controller-manager (health on https://127.0.0.1:$kcm_port)"
    local controllers=job-controller,garbage-collector-controller,ttl-after-finished-controller
    controllers+=,namespace-controller,serviceaccount-controller,serviceaccount-token-controller
    controllers+=,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller
    controllers+=,pod-garbage-collector-controller
    local kcm_extra=()
    read -r -a kcm_extra <<<"${KCM_EXTRA_ARGS:-}"
    # Each controller runs as its own kube-system ServiceAccount with the bootstrap RBAC roles,
    # as on a kubeadm cluster.
    start kube-controller-manager "$kcm" \
        --kubeconfig "$dir/pki/kcm.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$kcm_port" --cert-dir "$dir/kcm-certs" \
        --controllers "$controllers" \
        --use-service-account-credentials \
        --service-account-private-key-file "$dir/pki/sa.key" \
        --root-ca-file "$dir/ca.crt" \
        --leader-elect=false \
        --profiling=false \
        "${kcm_extra[@]}"
    wait_for kube-controller-manager "/healthz" \
        curl -fsSk --max-time 2 "https://127.0.0.1:$kcm_port/healthz"
    # The controllers act, not just listen: the default ServiceAccount and the root CA ConfigMap.
    wait_for kube-controller-manager "default ServiceAccount" \
        api_get /api/v1/namespaces/default/serviceaccounts/default
    wait_for kube-controller-manager "kube-root-ca.crt ConfigMap" \
        api_get /api/v1/namespaces/default/configmaps/kube-root-ca.crt

    cat >"$dir/cp.env" <<EOF
APISERVER_URL=https://127.0.0.1:$api_port
APISERVER_PORT=$api_port
ETCD_PORT=$etcd_port
KCM_PORT=$kcm_port
ADMIN_TOKEN=$admin_token
KUBECONFIG=$dir/admin.kubeconfig
CA_CERT=$dir/ca.crt
AUDIT_LOG=$dir/audit.log
EOF
    trap - ERR

    if [ -n "$owner" ]; then
        # Watchdog: stop this control plane when the owner process is gone.
        setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" down "$3"' \
            watchdog "$owner" "$script" "$dir" >"$dir/logs/watchdog.log" 2>&1 </dev/null &
        echo $! >"$dir/pids/watchdog.pid"
    fi
    say "ready: KUBECONFIG=$dir/admin.kubeconfig"
}

# A failed start stops what it started. A port taken between picking and binding it (another
# control plane starting at the same moment) is retried with new ports, twice at most.
up_failed() {
    trap - ERR
    say "start failed; stopping what was started"
    down
    local attempt=${MULTINIC_CP_ATTEMPT:-1}
    if [ "$attempt" -lt 3 ] && grep -qs "address already in use" "$dir"/logs/*.log; then
        say "a port was taken meanwhile; retrying with new ports"
        export MULTINIC_CP_ATTEMPT=$((attempt + 1))
        exec "$script" up "$dir" ${owner:+--owner "$owner"}
    fi
    exit 1
}

stop_pid() {
    local name=$1 pid=$2 deadline
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if alive "$pid"; then
        say "$name ($pid) ignored SIGTERM; killing"
        kill -KILL "$pid" 2>/dev/null || true
        while alive "$pid"; do sleep 0.1; done
    fi
}

down() {
    local name pid f
    # Reverse start order; the watchdog (if this is not the watchdog itself) first.
    for name in watchdog kube-controller-manager kube-apiserver etcd; do
        f=$dir/pids/$name.pid
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        # A pid recorded by us but now reused by another program is not ours to kill.
        if [ "$pid" != "$$" ] && alive "$pid" && is_ours "$name" "$pid"; then
            stop_pid "$name" "$pid"
        fi
        rm -f "$f"
    done
    rmdir "$dir/pids" 2>/dev/null || true
    if [ -f "$dir/etcd-data-dir" ]; then
        local data
        data=$(cat "$dir/etcd-data-dir")
        case $data in /dev/shm/multinic-etcd.*) rm -rf "$data" ;; esac
        rm -f "$dir/etcd-data-dir"
    fi
}

is_ours() {
    local name=$1 pid=$2 cmd
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    case $name in
        watchdog) [[ $cmd == *watchdog*"$dir"* ]] ;;
        *) [[ $cmd == *"$name"* ]] ;;
    esac
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
shift 2
owner=""
while [ $# -gt 0 ]; do
    case $1 in
        --owner) owner=${2:?--owner needs a pid}; shift 2 ;;
        *) usage ;;
    esac
done
script=$(realpath "$0")
mkdir -p "$dir"
dir=$(realpath "$dir")
case $cmd in
    up) up ;;
    down) down ;;
    *) usage ;;
esac
