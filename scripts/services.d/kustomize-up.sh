#!/usr/bin/env bash
# Build kustomize itself (sigs.k8s.io/kustomize/kustomize/v5, through the Go module proxy) for
# the manifest tests: tests/unit/deploy/test_k8s.py renders every overlay with it and requires
# the same objects as its own small renderer, which the other checks read. Cached outside the
# repo like the Kafka jars ($CITYOPS_CACHE_DIR/kustomize/<version>/kustomize); reused when
# present; make test runs this.
set -euo pipefail
VERSION="${CITYOPS_KUSTOMIZE_VERSION:-v5.4.3}"
CACHE="${CITYOPS_CACHE_DIR:-$HOME/.cache/cityops}/kustomize/$VERSION"
log() { echo "kustomize: $*" >&2; }
if [ -x "$CACHE/kustomize" ]; then exit 0; fi
command -v go >/dev/null || { log "Go (go) is not on PATH"; exit 1; }
log "building sigs.k8s.io/kustomize/kustomize/v5@$VERSION"
rm -rf "$CACHE.partial" && mkdir -p "$CACHE.partial"
GOBIN="$CACHE.partial" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$VERSION" >&2
rm -rf "$CACHE" && mv "$CACHE.partial" "$CACHE"
log "kustomize in $CACHE"
