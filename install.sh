#!/usr/bin/env bash
# install.sh: install, upgrade, roll back, uninstall, back up or restore the appliance on this node.
#
# Runs from the unpacked bundle folder, as root, with no network. In order:
#   1. verify the bundle with stock tools (ssh-keygen -Y verify, sha256sum -c), after the trust
#      update given with --trust-update (a new release key) and against the node's revocation
#      list (ssh-keygen -Y verify -r); nothing on the node changes before this passes;
#   2. check that the node is a Debian release with the python3 the bundle carries wheels for;
#   3. set up Ansible in a temporary folder, with pip run from its own wheel (the node needs
#      neither pip nor python3-venv, and nothing outside the temporary folder changes);
#   4. run the Ansible playbook for the action on this node (ansible-playbook -c local): its
#      preflight checks everything else before anything changes, then it installs what the node
#      lacks from the bundle's Debian packages, builds this version's environment, and so on.
# The playbook's output is kept in /var/log/appliance/<action>-<time>.log.
# Every failure prints one line "install.sh: error: ..." and exits with one of these codes
# (docs/operator-guide.md lists each message):
#   2  a flag, or the node itself, is not as needed (root, tools, trust files, folders)
#   3  the bundle is refused: incomplete, changed, or not signed by a trusted key
#   4  the playbook failed (its reason is in the error line)
#   1  an unexpected failure (the lines above it say more)
set -euo pipefail
umask 022

PROG=install.sh
BUNDLE_DIR=$(cd "$(dirname "$0")" && pwd -P)
NAMESPACE=appliance-bundle   # appliance/bundles/bundle_layout.py SIGNATURE_NAMESPACE
# Trust updates, as appliance/trust/trust_layout.py has them (tests/unit/test_installer_facts.py).
TRUST_NAMESPACE=appliance-trust
TRUST_FORMAT=appliance-trust-update
TRUST_MEMBERS="trust-update.json trust-update.json.sig"
# A version names folders and image tags: only what appliance/bundles/bundle_layout.py VERSION_PATTERN
# allows (tests/unit/test_installer_facts.py runs both on the same versions).
VERSION_PATTERN='^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$'
CONFIG_DIR=${APPLIANCE_CONFIG_DIR:-/etc/appliance}
INSTALLED_SIGNERS="$CONFIG_DIR/bundle_signers"
INSTALLED_REVOKED="$INSTALLED_SIGNERS.revoked"   # revoked keys, as ssh-keygen -Y verify -r reads them
INSTALLED_SERIAL="$INSTALLED_SIGNERS.serial"     # the serial of the last trust update applied

usage() {
    cat <<'EOF'
Usage: install.sh [ACTION] [OPTIONS]

Actions (default: install, which also upgrades an installed node):
  --upgrade               same as the default; refuses a version below the bundle's floor
  --rollback              go back to the version installed before the current one
  --uninstall             stop and remove the appliance; data and trust stay
  --purge                 with --uninstall: also remove data, trust and configuration
  --backup DIR            write a backup of data, configuration and trust into DIR
  --restore FILE          restore a backup made with --backup
  --support-bundle DIR    verify the bundle, then write this node's diagnostics (no secrets) to
                          DIR/appliance-support-<host>-<time>.tar.gz: for a failed install too
  --stage DIR             verify the bundle and this node as an install does, change nothing,
                          and leave in DIR (new) the playbook's variables and the trust files
                          they name: what ansible/fleet-install.yml runs over SSH
  --bundle DIR            with --stage: verify the bundle unpacked in DIR, not the one this
                          script is in (a fleet run checks each node's copy with the install.sh
                          of the playbooks it runs, so nothing of the copy runs unverified)

Trust (needed on a first install; later the node's own /etc/appliance/bundle_signers is used):
  --signers FILE          allowed_signers file holding the release key (namespace appliance-bundle)
  --trust-fingerprint FP  trust the key in signer.pub if its fingerprint is FP (SHA256:...)
  --pack-signers FILE     allowed_signers for result packs (installed as /etc/appliance/pack-trust/pack_signers)
  --trust-update FILE     a trust update (.trust) of role bundle, signed by a key the node trusts:
                          applied before the bundle is verified (a bundle signed by a new release key)

Engine (chosen at the first install, then remembered by the node):
  --engine NAME           podman (default) or docker; both come from the bundle when missing
  --change-engine         with --engine: switch an installed node to another engine

Other:
  --check                 show what would change (ansible --check --diff), change nothing
  -e, --extra-var K=V     pass a variable to the playbook, K=V or JSON
                          (e.g. -e '{"appliance_importer_inbox_dirs": ["/mnt/share"]}')
  -V, --version           print the bundle's version, revision and build time (as its
                          manifest.json says, before any check), and exit
  -h, --help              this text

Exit codes: 0 done, 2 a bad flag or node, 3 the bundle is refused, 4 the playbook failed,
1 anything unexpected. Every failure ends with one line "install.sh: error: ...".

Examples:
  ./install.sh --trust-fingerprint SHA256:abc... --pack-signers /media/usb/pack_signers
  ./install.sh                      # upgrade with a newer bundle
  ./install.sh --backup /media/usb
EOF
}

die() {
    trap - ERR
    echo "$PROG: error: $1" >&2
    exit "${2:-1}"
}

# Anything that fails without its own message still ends with one error line.
trap 'die "unexpected failure at line $LINENO of install.sh (exit $?)" 1' ERR

note() {
    echo "$PROG: $*" >&2
}

# --version: what the bundle's manifest says of itself, read before any check (it is not
# verified yet; every other action verifies it first). Needs neither root nor ssh-keygen.
print_version() {
    [ -f "$BUNDLE_DIR/manifest.json" ] || die "$BUNDLE_DIR/manifest.json is missing: not a whole bundle" 3
    local said
    said=$(python3 - "$BUNDLE_DIR/manifest.json" 2>&1 <<'EOF'
import json, sys
try:
    with open(sys.argv[1], encoding="utf-8") as handle:
        manifest = json.load(handle)
    build = manifest.get("build", {})
    targets = ", ".join(t["name"] for t in manifest.get("targets", []))
    print(f"appliance {manifest['version']} (revision {build.get('revision', 'unknown')}, "
          f"built {build.get('created', 'unknown')}; targets {targets or 'none'})")
except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
    sys.exit(f"manifest.json is not a bundle manifest ({type(exc).__name__}: {exc})")
EOF
) || die "$BUNDLE_DIR/$(echo "$said" | tail -n 1)" 3
    echo "$said"
}

action=""
action_flag=""
signers=""
fingerprint=""
pack_signers=""
trust_update=""
backup_dir=""
support_dir=""
restore_file=""
stage_dir=""
bundle_given=""
purge=false
check=false
extra_vars=()
engine=""
change_engine=false
LOG_DIR=${APPLIANCE_LOG_DIR:-/var/log/appliance}

# One action per run: a second one would silently win over the first.
set_action() {
    [ -z "$action" ] || [ "$action" = "$1" ] || die "$action_flag and $2: choose one action (see --help)" 2
    action=$1
    action_flag=$2
}

# A flag's value: present and not empty (an empty path would read as "not given").
value_of() {
    [ -n "$3" ] || die "$1 needs $2" 2
}

extra_var() {
    case "$1" in
        @*)
            [ -f "${1#@}" ] || die "-e $1: no such file" 2
            extra_vars+=(-e "@$(realpath -e -- "${1#@}")")
            ;;
        \{* | \[* | *=*) extra_vars+=(-e "$1") ;;
        *) die "-e $1: not KEY=VALUE, JSON or @FILE" 2 ;;
    esac
}

while [ $# -gt 0 ]; do
    case "$1" in
        --upgrade) set_action install "$1" ;;
        --rollback) set_action rollback "$1" ;;
        --uninstall) set_action uninstall "$1" ;;
        --purge) purge=true ;;
        --backup) value_of "$1" "a folder" "${2-}"; set_action backup "$1"; backup_dir=$2; shift ;;
        --support-bundle) value_of "$1" "a folder" "${2-}"; set_action support "$1"; support_dir=$2; shift ;;
        --restore) value_of "$1" "a backup file" "${2-}"; set_action restore "$1"; restore_file=$2; shift ;;
        --stage) value_of "$1" "a folder" "${2-}"; set_action stage "$1"; stage_dir=$2; shift ;;
        --bundle) value_of "$1" "a folder" "${2-}"; bundle_given=$2; shift ;;
        --signers) value_of "$1" "a file" "${2-}"; signers=$2; shift ;;
        --trust-fingerprint) value_of "$1" "SHA256:..." "${2-}"; fingerprint=$2; shift ;;
        --pack-signers) value_of "$1" "a file" "${2-}"; pack_signers=$2; shift ;;
        --trust-update) value_of "$1" "a file" "${2-}"; trust_update=$2; shift ;;
        --check) check=true ;;
        --engine) value_of "$1" "podman or docker" "${2-}"; engine=$2; shift ;;
        --change-engine) change_engine=true ;;
        -e | --extra-var) value_of "$1" "KEY=VALUE" "${2-}"; extra_var "$2"; shift ;;
        -h | --help) usage; exit 0 ;;
        -V | --version) print_version; exit 0 ;;
        *) die "unknown option $1 (see --help)" 2 ;;
    esac
    shift
done
action=${action:-install}

[ "$(id -u)" -eq 0 ] || die "run as root (the playbook manages systemd units and /opt/appliance)" 2

# Paths given on the command line are the operator's, resolved before the script moves into the
# bundle; trust never comes from a file inside the bundle it is meant to check.
given_file() {
    [ ! -d "$2" ] || die "$1 $2 is a folder, not a file" 2
    [ -f "$2" ] || die "$1 $2: no such file" 2
    [ -r "$2" ] || die "$1 $2: not readable" 2
}
[ -z "$signers" ] || given_file --signers "$signers"
[ -z "$pack_signers" ] || given_file --pack-signers "$pack_signers"
[ -z "$trust_update" ] || given_file --trust-update "$trust_update"
[ -z "$restore_file" ] || given_file --restore "$restore_file"
if [ -n "$bundle_given" ]; then
    [ "$action" = stage ] || die "--bundle goes with --stage only" 2
    [ -d "$bundle_given" ] || die "--bundle $bundle_given: no such folder" 2
    BUNDLE_DIR=$(cd "$bundle_given" && pwd -P)
fi
if [ -n "$stage_dir" ]; then
    # Made only once everything is verified: a refused bundle leaves nothing behind.
    [ ! -e "$stage_dir" ] && [ ! -L "$stage_dir" ] || die "--stage $stage_dir already exists: give a new folder" 2
    [ -d "$(dirname -- "$stage_dir")" ] || die "--stage $stage_dir: no folder $(dirname -- "$stage_dir") to make it in" 2
    stage_dir=$(realpath -m -- "$stage_dir")
    case "$stage_dir" in
        "$BUNDLE_DIR" | "$BUNDLE_DIR"/*) die "--stage $stage_dir is inside the bundle: give a folder outside it" 2 ;;
    esac
fi
if [ -n "$backup_dir" ]; then
    [ ! -e "$backup_dir" ] || [ -d "$backup_dir" ] || die "--backup $backup_dir is a file, not a folder" 2
    [ -d "$backup_dir" ] || die "--backup $backup_dir: no such folder" 2
fi
# The form ssh-keygen -lf prints: anything else can never match, so say so before verifying.
[ -z "$fingerprint" ] || [[ "$fingerprint" =~ ^SHA256:[A-Za-z0-9+/]{43}$ ]] ||
    die "--trust-fingerprint $fingerprint is not a key fingerprint (SHA256: and 43 characters, as ssh-keygen -lf prints)" 2
[ -z "$signers" ] || signers=$(realpath -e -- "$signers")
[ -z "$pack_signers" ] || pack_signers=$(realpath -e -- "$pack_signers")
[ -z "$trust_update" ] || trust_update=$(realpath -e -- "$trust_update")
[ -z "$restore_file" ] || restore_file=$(realpath -e -- "$restore_file")
[ -z "$backup_dir" ] || backup_dir=$(realpath -e -- "$backup_dir")
if [ -n "$support_dir" ]; then
    [ -d "$support_dir" ] || die "--support-bundle $support_dir: no such folder" 2
    support_dir=$(realpath -e -- "$support_dir")
fi
for given in "$signers" "$pack_signers"; do
    case "$given" in
        "$BUNDLE_DIR"/*) die "$given is inside the bundle: trust must come from outside it" 2 ;;
    esac
done
[ "$purge" = false ] || [ "$action" = uninstall ] || die "--purge goes with --uninstall only" 2
case "$engine" in
    "" | podman | docker) ;;
    *) die "--engine $engine: choose podman or docker" 2 ;;
esac
[ "$change_engine" = false ] || [ -n "$engine" ] || die "--change-engine needs --engine podman or --engine docker" 2
[ -z "$engine" ] || [ "$action" = install ] || [ "$action" = stage ] || die "--engine goes with an install or upgrade only (the node remembers its engine)" 2
[ -z "$trust_update" ] || [ "$action" = install ] || [ "$action" = stage ] || die "--trust-update goes with an install or upgrade only" 2
[ "$check" = false ] || [ "$action" != stage ] || die "--check and --stage: --stage changes nothing anyway" 2
for tool in ssh-keygen sha256sum python3 tar; do
    command -v "$tool" >/dev/null || die "$tool not found: install it (Debian: openssh-client, coreutils, python3, tar)" 2
done

# --- 1. verify the bundle, with stock tools only ----------------------------------------------------

case "$action" in
    install | stage) playbook=install.yml ;;
    rollback) playbook=rollback.yml ;;
    uninstall) playbook=uninstall.yml ;;
    backup) playbook=backup.yml ;;
    restore) playbook=restore.yml ;;
    support) playbook=install.yml ;;  # not run: only checked to be in the bundle
esac

cd "$BUNDLE_DIR"
# What the steps below read, whether or not SHA256SUMS lists it (a bundle signed without it).
for file in SHA256SUMS SHA256SUMS.sig manifest.json wheels/requirements.lock ansible/ansible.cfg "ansible/$playbook"; do
    [ -f "$file" ] || die "$BUNDLE_DIR/$file is missing: not a whole bundle" 3
done

work=$(mktemp -d 2>/dev/null) || die "cannot make a temporary folder in ${TMPDIR:-/tmp}: check that it exists and has free space" 2
trap 'rm -rf "$work"' EXIT

# Only root may change the bundle between this check and its use.
writable=$(find . \( ! -user 0 -o -perm /022 \) -print -quit)
[ -z "$writable" ] || die "$BUNDLE_DIR/${writable#./} is not owned by root or is writable by others: unpack the bundle as root" 3

# Links and special files first: sha256sum would follow a link, and hang on a FIFO.
special=$(find . ! -type f ! -type d | head -n 1)
[ -z "$special" ] || die "the bundle holds a link or special file: $special" 3

if [ -n "$signers" ]; then
    [ -r "$signers" ] || die "--signers $signers: no such readable file" 2
    cp "$signers" "$work/allowed_signers"
elif [ -n "$fingerprint" ]; then
    [ -f signer.pub ] || die "the bundle has no signer.pub to compare with --trust-fingerprint" 3
    actual=$(ssh-keygen -lf signer.pub 2>/dev/null | awk '{print $2}') || actual=""
    [ -n "$actual" ] || die "signer.pub is not an SSH public key" 3
    [ "$actual" = "$fingerprint" ] || die "signer.pub has fingerprint $actual, not $fingerprint: not trusted" 3
    # The release key may also sign the trust updates that rotate it (docs/formats.md).
    printf 'release namespaces="%s,%s" %s\n' "$NAMESPACE" "$TRUST_NAMESPACE" "$(cut -d' ' -f1,2 signer.pub)" > "$work/allowed_signers"
elif [ -e "$INSTALLED_SIGNERS" ]; then
    [ -f "$INSTALLED_SIGNERS" ] && [ -r "$INSTALLED_SIGNERS" ] ||
        die "$INSTALLED_SIGNERS is not a readable file: fix it, or pass --signers FILE or --trust-fingerprint SHA256:..." 2
    cp "$INSTALLED_SIGNERS" "$work/allowed_signers"
else
    die "no trusted bundle signers: pass --signers FILE or --trust-fingerprint SHA256:... on a first install" 2
fi

# The node's revocation list applies whichever allowed_signers is used: a revoked key is refused
# even where a line still names it.
revoked=()
if [ -e "$INSTALLED_REVOKED" ]; then
    [ -f "$INSTALLED_REVOKED" ] && [ -r "$INSTALLED_REVOKED" ] ||
        die "$INSTALLED_REVOKED is not a readable file: fix it (it lists the revoked keys)" 2
    cp "$INSTALLED_REVOKED" "$work/revoked_keys"
    revoked=(-r "$work/revoked_keys")
fi

# verify_signature WHAT SIG MESSAGE NAMESPACE: ssh-keygen -Y verify against $work/allowed_signers
# and the revocation list; sets principal and signer_fingerprint, or dies naming the reason.
verify_signature() {
    local what=$1 sig=$2 message=$3 namespace=$4 verdict
    if ! principal=$(ssh-keygen -Y find-principals -s "$sig" -f "$work/allowed_signers" 2>"$work/find.err" | head -n 1) ||
        [ -z "$principal" ]; then
        # ssh-keygen names a key that is trusted but outside its valid-after/valid-before window.
        window=$(tr -d '\r' < "$work/find.err" | grep -Eo '(key has expired|key is not yet valid).*' | head -n 1 || true)
        [ -z "$window" ] || die "$what is signed by a key the node trusts only in a window: $window (a rotated release key: ask for the bundle signed by the current one)" 3
        die "$what is not signed by a trusted key" 3
    fi
    if ! verdict=$(ssh-keygen -Y verify -f "$work/allowed_signers" -I "$principal" -n "$namespace" -s "$sig" \
        "${revoked[@]}" < "$message" 2>&1); then
        # ssh-keygen says only "Could not verify signature" for a revoked key: tell it apart.
        if [ ${#revoked[@]} -gt 0 ] && ssh-keygen -Y verify -f "$work/allowed_signers" -I "$principal" \
            -n "$namespace" -s "$sig" < "$message" >/dev/null 2>&1; then
            die "$what is signed by a revoked key (listed in $revoked_source)" 3
        fi
        die "$what: signature check failed: $(echo "$verdict" | tail -n 1)" 3
    fi
    signer_fingerprint=$(echo "$verdict" | grep -o 'SHA256:[A-Za-z0-9+/=]*' | head -n 1)
}
revoked_source="the revocation list $INSTALLED_REVOKED"

# A trust update of role bundle (docs/formats.md): signed for namespace appliance-trust by a key
# the node trusts with that namespace named, its serial above the node's. Its allowed_signers
# and revocation list then verify the bundle; the playbook applies it with this version's own
# `appliance trust apply` (which checks it again, in full) once the environment is built.
trust_serial=""
if [ -n "$trust_update" ]; then
    what="--trust-update $(basename "$trust_update")"
    listing=$(tar -tvf "$trust_update" 2>/dev/null) || die "$what is not a whole tar archive: not a trust update" 3
    [ "$(echo "$listing" | awk '{print $NF}' | paste -sd' ')" = "$TRUST_MEMBERS" ] &&
        [ "$(echo "$listing" | cut -c1 | paste -sd' ')" = "- -" ] ||
        die "$what must hold the files $TRUST_MEMBERS, in that order, and nothing else" 3
    mkdir "$work/trust"
    for member in $TRUST_MEMBERS; do
        tar -xOf "$trust_update" "$member" > "$work/trust/$member" 2>/dev/null ||
            die "$what is truncated or damaged ($member cannot be read)" 3
    done
    verify_signature "$what" "$work/trust/trust-update.json.sig" "$work/trust/trust-update.json" "$TRUST_NAMESPACE"
    update_signer="$principal ($signer_fingerprint)"
    current_serial=0
    if [ -e "$INSTALLED_SERIAL" ]; then
        current_serial=$(cat "$INSTALLED_SERIAL" 2>/dev/null) || current_serial=""
        [[ "$current_serial" =~ ^[0-9]{1,18}$ ]] || die "$INSTALLED_SERIAL does not hold a serial number: fix it" 2
    fi
    # The fields, read strictly (one value per key), and the rules appliance trust apply checks.
    trust_serial=$(python3 - "$work/trust" "$work/allowed_signers" "$signer_fingerprint" "$current_serial" \
        "$INSTALLED_SIGNERS" "$NAMESPACE" "$TRUST_NAMESPACE" "$TRUST_FORMAT" 2>"$work/trust.why" <<'EOF'
import base64, binascii, hashlib, json, re, sys

folder, current, fingerprint, serial_text, installed, role_ns, trust_ns, form = sys.argv[1:]
allowed = {role_ns, trust_ns}
KEY_TYPE = re.compile(r"(ssh|ecdsa|sk)-[\w@.-]+")


def unique(pairs):
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def refuse(why):
    sys.exit(f"trust-update.json: {why}")


def signer_lines(text):
    """(namespaces or None, SHA256 fingerprint) of each allowed_signers line."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        found = re.search(r'(?i)(?:^|[\s,])namespaces="([^"]*)"', line)
        words = line.split()
        blob = next((b for t, b in zip(words, words[1:]) if KEY_TYPE.fullmatch(t)), None)
        try:
            digest = hashlib.sha256(base64.b64decode(blob or "!", validate=True)).digest()
        except (binascii.Error, ValueError):
            refuse(f"allowed_signers line {line[:32]!r}... has no well-formed key")
        key = "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
        yield (None if found is None else found.group(1).split(",")), key


try:
    with open(f"{folder}/trust-update.json", encoding="utf-8") as handle:
        update = json.load(handle, object_pairs_hook=unique)
except (OSError, ValueError, RecursionError) as exc:
    refuse(f"not readable JSON ({(str(exc).splitlines() or [type(exc).__name__])[0]})")
fields = ["format", "format_version", "role", "serial", "issued_at", "allowed_signers", "revoked_keys"]
if not isinstance(update, dict) or sorted(update) != sorted(fields):
    refuse(f"must be an object with exactly {', '.join(fields)}")
version = update["format_version"]
if update["format"] != form or type(version) is not int or version != 1:
    refuse(f"not format {form} version 1")
if update["role"] != "bundle":
    refuse(f"role {update['role']!r} is not bundle: apply it on the node with appliance trust apply")
serial = update["serial"]
if type(serial) is not int or not 1 <= serial < 2**63:
    refuse("serial must be a whole number from 1")
if not all(isinstance(update[key], str) for key in ("issued_at", "allowed_signers", "revoked_keys")):
    refuse("issued_at, allowed_signers and revoked_keys must be strings")
with open(current, encoding="utf-8") as handle:
    signing = [ns for ns, key in signer_lines(handle.read()) if key == fingerprint]
if not any(ns is not None and trust_ns in ns for ns in signing):
    refuse(f"key {fingerprint} is trusted for bundles but its line does not name namespace {trust_ns}")
new = list(signer_lines(update["allowed_signers"]))
if not new:
    refuse("allowed_signers lists no keys (role bundle would trust nobody)")
for ns, key in new:
    if ns is None or not set(ns) <= allowed:
        granted = "every namespace" if ns is None else ", ".join(sorted(set(ns) - allowed))
        refuse(f"the line of {key} grants {granted}, beyond role bundle")
if not any(trust_ns in ns for ns, _ in new):
    refuse(f"no key keeps namespace {trust_ns}, so role bundle could never be updated again")
for line in update["revoked_keys"].splitlines():
    words = line.split()
    if words and not words[0].startswith("#") and (len(words) < 2 or not KEY_TYPE.fullmatch(words[0])):
        refuse("revoked_keys has a line that is not a public key")
signers_text = update["allowed_signers"].rstrip("\n") + "\n"
current_serial = int(serial_text)
if serial < current_serial:
    refuse(f"serial {serial} is older than the applied serial {current_serial} of role bundle")
if serial == current_serial:
    # The same update again (a second run of the same install) is fine; another one is a replay.
    try:
        with open(installed, encoding="utf-8") as handle:
            applied = handle.read() == signers_text
    except OSError:
        applied = False
    if not applied:
        refuse(f"serial {serial} of role bundle is already applied (a replay)")
with open(f"{folder}/allowed_signers", "w", encoding="utf-8") as handle:
    handle.write(signers_text)
with open(f"{folder}/revoked_keys", "w", encoding="utf-8") as handle:
    handle.write(update["revoked_keys"])
print(serial)
EOF
) || { why=$(tail -n 1 "$work/trust.why"); die "$what refused: ${why:-it could not be read}" 3; }
    if [ "$trust_serial" = "$current_serial" ]; then
        note "trust update serial $trust_serial is already applied (signed by $update_signer)"
        trust_update=""
    else
        note "trust update good: role bundle, serial $current_serial -> $trust_serial, signed by $update_signer"
        cp "$work/allowed_signers" "$work/allowed_signers.before-update"
    fi
    # The bundle is verified with the trust the update brings.
    cp "$work/trust/allowed_signers" "$work/allowed_signers"
    cp "$work/trust/revoked_keys" "$work/revoked_keys"
    revoked=(-r "$work/revoked_keys")
    revoked_source="the revocation list of $what"
fi

verify_signature SHA256SUMS.sig SHA256SUMS.sig SHA256SUMS "$NAMESPACE"
note "signature good: $principal ($signer_fingerprint)"
if ! failed=$(sha256sum --strict --quiet -c SHA256SUMS 2>&1); then
    die "checksum check failed: $(echo "$failed" | head -n 1)" 3
fi
note "every file matches SHA256SUMS"
# sha256sum -c cannot see a file that SHA256SUMS does not list; find can.
find . -type f ! -path ./SHA256SUMS ! -path ./SHA256SUMS.sig | sed 's|^\./||' | LC_ALL=C sort > "$work/present"
sed 's/^[0-9a-f]*  //' SHA256SUMS | LC_ALL=C sort > "$work/listed"
unlisted=$(LC_ALL=C comm -23 "$work/present" "$work/listed" | head -n 1)
[ -z "$unlisted" ] || die "$unlisted is in the bundle but not in SHA256SUMS" 3

# Python's own errors would be a traceback: the reader says why in one line instead. Duplicate
# keys are refused, as appliance verify does: two readers must not see two versions.
version=$(python3 - manifest.json 2>"$work/manifest.why" <<'EOF'
import json, sys


def unique(pairs):
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen.add(key)
    return dict(pairs)


try:
    with open(sys.argv[1], encoding="utf-8") as handle:
        manifest = json.load(handle, object_pairs_hook=unique)
except (OSError, ValueError, RecursionError) as exc:
    sys.exit(f"manifest.json is not readable JSON ({(str(exc).splitlines() or [type(exc).__name__])[0]})")
version = manifest.get("version") if isinstance(manifest, dict) else None
if not isinstance(version, str):
    sys.exit("manifest.json has no version string")
print(version)
targets = manifest.get("targets")
if not isinstance(targets, list) or not targets:
    sys.exit("manifest.json lists no node targets")
for target in targets:
    fields = [target.get(key) if isinstance(target, dict) else None for key in ("name", "os_version_id", "python")]
    if not all(isinstance(field, str) and field.replace(".", "").isalnum() for field in fields):
        sys.exit("manifest.json has a target without name, os_version_id and python")
    print(" ".join(fields))
EOF
) || { why=$(tail -n 1 "$work/manifest.why"); die "${why:-manifest.json could not be read}" 3; }
targets=$(echo "$version" | tail -n +2)
version=$(echo "$version" | head -n 1)
[[ "$version" =~ $VERSION_PATTERN ]] || die "manifest.json: version '$version' is not a version" 3
[ "$(basename "$BUNDLE_DIR")" = "appliance-$version" ] ||
    note "the bundle folder is $(basename "$BUNDLE_DIR"), the manifest says $version"

# --support-bundle: the node's diagnostics, by the verified bundle's own appliance wheel (standard
# library only, so no environment is needed), whatever the node's release or Python: a node the
# install refused or left unhealthy is where it is wanted.
if [ "$action" = support ]; then
    wheel=(wheels/appliance-*-py3-none-any.whl)
    [ -f "${wheel[0]}" ] || die "wheels/ has no appliance wheel: not a whole bundle" 3
    out="$support_dir/appliance-support-$(hostname)-$(date -u +%Y%m%dT%H%M%SZ).tar.gz"
    note "writing the support bundle $out (no secrets go in it)"
    said=""
    status=0
    said=$(APPLIANCE_CONFIG_DIR=$CONFIG_DIR APPLIANCE_LOG_DIR=$LOG_DIR python3 -S -c \
        'import sys; sys.path.insert(0, sys.argv.pop(1)); from appliance.support.__main__ import main; sys.exit(main(sys.argv[1:]))' \
        "$BUNDLE_DIR/${wheel[0]}" "$out" 2>&1 >/dev/null) || status=$?
    [ -z "$said" ] || echo "$said" | grep -v '^support bundle: error: ' | sed "s/^/$PROG: /" >&2 || true
    if [ "$status" -ne 0 ]; then
        why=$(echo "$said" | grep '^support bundle: error: ' | tail -n 1 | sed 's/^support bundle: error: //') || why=""
        die "${why:-the support bundle failed: $(echo "$said" | tail -n 1)}" 2
    fi
    note "support bundle written: $out (carry it off the node; README.txt inside says what it holds)"
    exit 0
fi

# --- 2. the node: a Debian release and python3 the bundle carries wheels and packages for -----------

node_python=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
    die "python3 does not run: reinstall it (Debian: apt-get install --reinstall python3)" 2
node_id=$(. /etc/os-release 2>/dev/null && echo "${ID:-}") || node_id=""
node_release=$(. /etc/os-release 2>/dev/null && echo "${VERSION_ID:-}") || node_release=""
node_name=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}") || node_name=""
supported=$(echo "$targets" | awk '{sub(/^debian/, "Debian ", $1); printf "%s%s (Python %s)", sep, $1, $3; sep=" and "}')
# Compared as strings ("3.1" is not "3.10"), hence the "".
target=$(echo "$targets" | awk -v id="$node_id" -v release="$node_release" -v py="$node_python" \
    'id == "debian" && $2"" == release"" && $3"" == py"" {print $1; exit}')
if [ -z "$target" ]; then
    if ! echo "$targets" | awk -v py="$node_python" '$3"" == py"" {found=1} END {exit !found}'; then
        die "python3 here is Python $node_python; this bundle supports $supported" 2
    fi
    die "this node is ${node_name:-an unknown system}; this bundle supports $supported" 2
fi
note "node: ${node_name:-Debian $node_release} with Python $node_python (target $target)"
# --check runs the playbook without changing anything, so it can only compare with an install.
if [ "$check" = true ] && [ "$action" = install ] && [ ! -f "$CONFIG_DIR/installed.json" ]; then
    die "--check compares with what is installed, and nothing is: run the install without --check" 2
fi

# The playbook's variables: what was verified above, and the trust files it was verified with.
# write_vars FILE SIGNERS PACK_SIGNERS TRUST_UPDATE
write_vars() {
    SIGNERS_FILE=$2 PACK_SIGNERS_FILE=$3 TRUST_UPDATE_FILE=$4 python3 - "$1" <<'EOF'
import json, os, sys
env = os.environ
chosen = {"appliance_container_engine": env["engine"]} if env["engine"] else {}
json.dump({
    "appliance_bundle_dir": env["BUNDLE_DIR"],
    "appliance_bundle_version": env["version"],
    "appliance_bundle_signer": env["principal"],
    "appliance_bundle_signer_fingerprint": env["signer_fingerprint"],
    "appliance_trust_bundle_signers_src": env["SIGNERS_FILE"],
    "appliance_trust_pack_signers_src": env["PACK_SIGNERS_FILE"],
    "appliance_trust_update_file": env["TRUST_UPDATE_FILE"],
    "appliance_trust_update_serial": env["trust_serial"],
    "appliance_target_name": env["target"],
    "appliance_engine_change": env["change_engine"] == "true",
    "appliance_purge": env["purge"] == "true",
    "appliance_backup_dir": env["backup_dir"],
    "appliance_restore_file": env["restore_file"],
    **chosen,
}, open(sys.argv[1], "w"))
EOF
}
export BUNDLE_DIR version principal signer_fingerprint purge backup_dir restore_file target engine change_engine
export trust_serial
# With a trust update, the node's trust is installed as it was and the update applied on it.
if [ -n "$trust_update" ]; then
    verified_signers="$work/allowed_signers.before-update"
else
    verified_signers="$work/allowed_signers"
fi

# --stage: what the playbook needs, left for ansible/fleet-install.yml to run over SSH.
if [ "$action" = stage ]; then
    mkdir -m 0700 "$stage_dir" 2>/dev/null || die "--stage $stage_dir: cannot make the folder" 2
    cp "$verified_signers" "$stage_dir/bundle_signers"
    staged_pack="" staged_update=""
    if [ -n "$pack_signers" ]; then staged_pack="$stage_dir/pack_signers"; cp "$pack_signers" "$staged_pack"; fi
    if [ -n "$trust_update" ]; then staged_update="$stage_dir/$(basename "$trust_update")"; cp "$trust_update" "$staged_update"; fi
    write_vars "$stage_dir/vars.json" "$stage_dir/bundle_signers" "$staged_pack" "$staged_update" ||
        die "cannot write $stage_dir/vars.json" 2
    note "staged: appliance $version verified for this node (target $target); the playbook's variables are in $stage_dir/vars.json"
    exit 0
fi

# --- 3. Ansible, in a temporary folder, from the wheel cache ------------------------------------------

pip_wheels=(wheels/pip-*-py3-none-any.whl)
[ -f "${pip_wheels[0]}" ] && [ -f wheels/bootstrap.lock ] || die "wheels/ has no pip wheel or bootstrap.lock: not a whole bundle" 3
if ! out=$(PIP_CONFIG_FILE=/dev/null python3 "${pip_wheels[0]}/pip" install --quiet --disable-pip-version-check --no-index \
    --root-user-action=ignore --no-compile --find-links wheels --require-hashes \
    --target "$work/ansible" -r wheels/bootstrap.lock 2>&1); then
    die "cannot set up Ansible from wheels/ in ${TMPDIR:-/tmp}: $(echo "$out" | grep -v '^ *$' | tail -n 1)" 2
fi
# A file test, not -x: a /tmp mounted noexec is fine, nothing runs from there but through python3.
[ -f "$work/ansible/ansible/cli/playbook.py" ] || die "wheels/ did not install ansible-playbook: not a whole bundle" 3

# --- 4. the playbook ---------------------------------------------------------------------------------

vars="$work/vars.json"
write_vars "$vars" "$verified_signers" "$pack_signers" "$trust_update"

flags=()
[ "$check" = false ] || flags+=(--check --diff)
export ANSIBLE_CONFIG="$BUNDLE_DIR/ansible/ansible.cfg"
export ANSIBLE_LOCAL_TEMP="$work/ansible-local"
export ANSIBLE_HOME="$work/ansible-home"
export ANSIBLE_REMOTE_TMP="$work/ansible-remote"
note "running ansible/$playbook${flags:+ ${flags[*]}}"
trap - ERR
status=0
# Ansible's folder goes on this one process's path, not in PYTHONPATH: every command the
# playbook runs (pip building the node's environment among them) would see it too.
python3 -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = "ansible-playbook"
from ansible.cli.playbook import main; sys.exit(main())' "$work/ansible" \
    -c local -i localhost, "$BUNDLE_DIR/ansible/$playbook" \
    -e "@$vars" "${extra_vars[@]}" "${flags[@]}" 2>&1 | tee "$work/ansible.log" || status=$?
# The playbook's output stays on the node, also when it failed (nothing else does then).
log_name="$action-$(date -u +%Y%m%dT%H%M%SZ).log"
if mkdir -p "$LOG_DIR" 2>/dev/null && cp "$work/ansible.log" "$LOG_DIR/$log_name" 2>/dev/null; then
    note "the playbook's output is in $LOG_DIR/$log_name"
fi
if [ "$status" -ne 0 ]; then
    # Each failure ends with a line "fatal: [host]: FAILED! => {json}": the last one says why. A
    # message of several lines (preflight: one per failed check) prints all but its first above.
    reason=$(python3 - "$work/ansible.log" <<'EOF' || true
import json, sys
reason = ""
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    if "FAILED! => {" in line:
        try:
            result = json.loads(line.split("FAILED! => ", 1)[1])
        except ValueError:
            continue
        if isinstance(result, dict):
            reason = str(result.get("msg") or reason)
print("\n".join(" ".join(line.split()) for line in reason.strip().splitlines() if line.strip()))
EOF
)
    details=$(echo "$reason" | tail -n +2)
    # Only preflight's message is a list (one failed check per line); any other says one thing.
    if [ -n "$details" ] && [[ "$(echo "$reason" | head -n 1)" =~ ^preflight:\ [0-9]+\ check ]]; then
        while IFS= read -r line; do note "  $line"; done <<< "$details"
        die "$(echo "$reason" | head -n 1): $(echo "$details" | cut -d: -f1 | paste -sd, | sed 's/,/, /g') (each is named above with its fix)" 4
    fi
    die "$(echo "${reason:-ansible-playbook $playbook failed (see above)}" | head -n 1)" 4
fi
note "$action done: appliance $version"
