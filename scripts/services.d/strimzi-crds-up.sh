#!/usr/bin/env bash
# Generate the Strimzi CRDs (v1beta2) offline for the manifest tests: io.strimzi:api and
# io.strimzi:crd-generator from Maven Central run Strimzi's own generator over the API classes.
# Cached outside the repo like the Kafka jars ($CITYOPS_CACHE_DIR/strimzi/<version>/crds):
# the Kafka CRD alone is ~480 KB of generated YAML. Reused when present; make test runs this.
set -euo pipefail
VERSION="${CITYOPS_STRIMZI_VERSION:-0.45.0}"
CACHE="${CITYOPS_CACHE_DIR:-$HOME/.cache/cityops}/strimzi/$VERSION"
OUT="$CACHE/crds"
log() { echo "strimzi-crds: $*" >&2; }
if [ -f "$OUT/.complete" ]; then exit 0; fi
command -v mvn >/dev/null || { log "Maven (mvn) is not on PATH"; exit 1; }
command -v java >/dev/null || { log "java is not on PATH"; exit 1; }
mkdir -p "$CACHE"
cat > "$CACHE/pom.xml" <<XML
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>cityops.local</groupId><artifactId>strimzi-crds</artifactId>
  <version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>io.strimzi</groupId><artifactId>api</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>io.strimzi</groupId><artifactId>crd-generator</artifactId><version>$VERSION</version></dependency>
  </dependencies>
</project>
XML
if [ ! -f "$CACHE/libs/.complete" ]; then
  log "fetching io.strimzi:api and io.strimzi:crd-generator $VERSION"
  rm -rf "$CACHE/libs"
  mvn -B -q -f "$CACHE/pom.xml" dependency:copy-dependencies -DoutputDirectory="$CACHE/libs" \
    -DincludeScope=runtime >&2
  touch "$CACHE/libs/.complete"
fi
rm -rf "$OUT.partial" && mkdir -p "$OUT.partial"
M=io.strimzi.api.kafka.model
java -cp "$CACHE/libs/*" io.strimzi.crdgenerator.CrdGenerator --yaml \
  --api-versions v1beta2 --storage-version v1beta2 \
  "$M.kafka.Kafka=$OUT.partial/kafka.yaml" \
  "$M.nodepool.KafkaNodePool=$OUT.partial/kafkanodepool.yaml" \
  "$M.topic.KafkaTopic=$OUT.partial/kafkatopic.yaml" \
  "$M.user.KafkaUser=$OUT.partial/kafkauser.yaml" 2>&1 | grep -v '^SLF4J' >&2 || true
for f in kafka kafkanodepool kafkatopic kafkauser; do
  [ -s "$OUT.partial/$f.yaml" ] || { log "generator wrote no $f.yaml"; exit 1; }
done
rm -rf "$OUT" && mv "$OUT.partial" "$OUT" && touch "$OUT/.complete"
log "CRDs in $OUT"
