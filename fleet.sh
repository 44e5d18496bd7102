#!/usr/bin/env bash
# fleet.sh: drive a fleet of nodes from this controller with this bundle's playbooks, over SSH.
#
# For a controller that has no Ansible (an operator workstation, or one node acting as
# controller): it sets up ansible-core in a temporary folder from the bundle's wheels/, with pip
# run from its own wheel (as install.sh does on a node; nothing outside that folder changes),
# then runs the fleet playbook. A controller that has Ansible can run the playbooks directly
# (docs/operator-guide.md, "A fleet"). Needs python3 3.11 or 3.13 (the wheels' Pythons: Debian
# 12 or 13), and ssh.
#
#   ./fleet.sh install BUNDLE.tar -i INVENTORY [ANSIBLE-PLAYBOOK OPTIONS]
#   ./fleet.sh import PACK -i INVENTORY [ANSIBLE-PLAYBOOK OPTIONS]
#   ./fleet.sh status -i INVENTORY [--json] [ANSIBLE-PLAYBOOK OPTIONS]
#   ./fleet.sh playbook ANSIBLE-PLAYBOOK-ARGUMENTS...   (any playbook of ansible/)
#
# Exit codes: 0 done, 2 a bad flag or controller, 4 the playbook failed (a node refused or failed;
# the last line names it), 1 anything unexpected.
set -euo pipefail
umask 022

PROG=fleet.sh
BUNDLE_DIR=$(cd "$(dirname "$0")" && pwd -P)

die() {
    trap - ERR
    echo "$PROG: error: $1" >&2
    exit "${2:-1}"
}
trap 'die "unexpected failure at line $LINENO of fleet.sh (exit $?)" 1' ERR
note() { echo "$PROG: $*" >&2; }

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
}

[ $# -gt 0 ] || { usage >&2; exit 2; }
case "$1" in -h | --help) usage; exit 0 ;; esac
for tool in python3 ssh; do
    command -v "$tool" >/dev/null || die "$tool not found: install it (Debian: python3, openssh-client)" 2
done

# -e NAME=PATH as JSON: a path with spaces or quotes stays one value.
json_var() {
    python3 -c 'import json, sys; print(json.dumps({sys.argv[1]: sys.argv[2]}))' "$1" "$2"
}

command=$1
shift
json=false
args=()
case "$command" in
    install)
        [ $# -gt 0 ] && [ "${1#-}" = "$1" ] || die "install needs the bundle's tar: ./fleet.sh install appliance-VERSION.tar -i INVENTORY" 2
        [ -f "$1" ] || die "$1: no such file" 2
        args=("$BUNDLE_DIR/ansible/fleet-install.yml" -e "$(json_var bundle "$(realpath -e -- "$1")")")
        shift
        ;;
    import)
        [ $# -gt 0 ] && [ "${1#-}" = "$1" ] || die "import needs the pack: ./fleet.sh import results.pack -i INVENTORY" 2
        [ -f "$1" ] || die "$1: no such file" 2
        args=("$BUNDLE_DIR/ansible/fleet-import.yml" -e "$(json_var pack "$(realpath -e -- "$1")")")
        shift
        ;;
    status) args=("$BUNDLE_DIR/ansible/fleet-status.yml") ;;
    playbook) ;;
    *) die "unknown command $command: install, import, status or playbook (see --help)" 2 ;;
esac
rest=()
for arg in "$@"; do
    if [ "$command" = status ] && [ "$arg" = --json ]; then json=true; else rest+=("$arg"); fi
done
[ "$command" != playbook ] || [ ${#rest[@]} -gt 0 ] || die "playbook needs ansible-playbook's arguments" 2
if [ "$command" != playbook ]; then
    has_inventory=false
    for arg in "${rest[@]}"; do case "$arg" in -i | --inventory | -i* | --inventory=*) has_inventory=true ;; esac; done
    [ "$has_inventory" = true ] || die "name the fleet's inventory: -i INVENTORY (see ansible/inventory/fleet.example.yml)" 2
fi
work=$(mktemp -d 2>/dev/null) || die "cannot make a temporary folder in ${TMPDIR:-/tmp}" 2
trap 'rm -rf "$work"' EXIT

pip_wheels=("$BUNDLE_DIR"/wheels/pip-*-py3-none-any.whl)
[ -f "${pip_wheels[0]}" ] && [ -f "$BUNDLE_DIR/wheels/bootstrap.lock" ] || die "wheels/ has no pip wheel or bootstrap.lock: run fleet.sh from an unpacked bundle" 2
if ! out=$(PIP_CONFIG_FILE=/dev/null python3 "${pip_wheels[0]}/pip" install --quiet --disable-pip-version-check --no-index \
    --root-user-action=ignore --no-compile --find-links "$BUNDLE_DIR/wheels" --require-hashes \
    --target "$work/ansible" -r "$BUNDLE_DIR/wheels/bootstrap.lock" 2>&1); then
    py=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "?")
    die "cannot set up Ansible from wheels/ for Python $py (the bundle carries wheels for Python 3.11 and 3.13): $(echo "$out" | grep -v '^ *$' | tail -n 1)" 2
fi

export ANSIBLE_CONFIG="$BUNDLE_DIR/ansible/ansible.cfg"
export ANSIBLE_LOCAL_TEMP="$work/ansible-local"
export ANSIBLE_HOME="${ANSIBLE_HOME:-$work/ansible-home}"
status=0
if [ "$json" = true ]; then
    args+=(-e "$(json_var appliance_fleet_status_json "$work/status.json")")
fi
what=${args[0]:-ansible-playbook}
note "running ${what##*/} with Ansible from the bundle's wheels"
trap - ERR
run() {
    python3 -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = "ansible-playbook"
from ansible.cli.playbook import main; sys.exit(main())' "$work/ansible" "${args[@]}" "${rest[@]}"
}
if [ "$json" = true ]; then
    run > "$work/ansible.log" 2>&1 || status=$?
    if [ "$status" -eq 0 ] && [ -f "$work/status.json" ]; then
        cat "$work/status.json"
        exit 0
    fi
    tail -n 20 "$work/ansible.log" >&2
else
    run 2>&1 | tee "$work/ansible.log" || status=$?
    [ "$status" -eq 0 ] && exit 0
fi
# Each failure ends with "fatal: [host]: FAILED! => {json}": the last one names the node and why.
reason=$(python3 - "$work/ansible.log" <<'EOF' || true
import json, sys
reason = ""
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    # "fatal: [host]: FAILED! => {...}", "fatal: [host]: UNREACHABLE! => {...}", and a loop's
    # "failed: [host] (item=...) => {...}".
    marker = next((m for m in ("FAILED! => ", "UNREACHABLE! => ") if m + "{" in line), None)
    if marker is None and line.startswith("failed: [") and " => {" in line:
        marker = " => "
    if marker:
        host = line.split("[", 1)[-1].split("]", 1)[0]
        try:
            result = json.loads(line.split(marker, 1)[1])
        except ValueError:
            continue
        if isinstance(result, dict) and result.get("msg"):
            msg = " ".join(str(result["msg"]).split())
            reason = msg if host == "localhost" or msg.startswith(host + ":") else f"{host}: {msg}"
print(reason)
EOF
)
die "${reason:-ansible-playbook failed (see above)}" 4
