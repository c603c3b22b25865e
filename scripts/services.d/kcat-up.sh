#!/usr/bin/env bash
# Install kcat (Debian's package) when missing: the bad-input barrage test produces with it, as a
# real third-party client (librdkafka) would. Without root or apt-get this says why and leaves
# the barrage test to fail with its own install hint: a missing client is never a silent skip.
set -uo pipefail
log() { echo "kcat-up: $*" >&2; }
command -v kcat >/dev/null || command -v kafkacat >/dev/null && exit 0
command -v apt-get >/dev/null || { log "kcat missing and no apt-get to install it"; exit 0; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
export DEBIAN_FRONTEND=noninteractive
log "installing kcat with apt-get"
$SUDO apt-get install -y -q kcat >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null 2>&1
  $SUDO apt-get install -y -q kcat >/dev/null 2>&1 || log "apt-get install kcat failed"
}
exit 0
