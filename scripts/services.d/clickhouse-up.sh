#!/usr/bin/env bash
# Start a private clickhouse-server for the server-backend tests (make test runs this).
# Installs Debian's clickhouse-server / clickhouse-client with apt-get only when missing, then
# runs the server in the background on a free native port with its own config and data under
# $CITYOPS_DATA_DIR/clickhouse, waits until it answers, and writes the port to
# $CITYOPS_DATA_DIR/clickhouse/port (the tests read that file). Exports nothing.
# Exit 3 (reason in $CITYOPS_DATA_DIR/clickhouse/unavailable) when the server is not installed
# and cannot be: no apt-get, not root and no passwordless sudo, or apt-get failing.
# The shipped least-privilege users (cityops/deploy/clickhouse/users.d) are installed beside
# the server's users.xml, with random passwords kept in $CITYOPS_DATA_DIR/clickhouse/users.env
# (mode 600) and handed to the server through its environment, as compose does.
set -euo pipefail
DATA_DIR="${CITYOPS_DATA_DIR:-$PWD/.cityops-data}"
CH_DIR="$DATA_DIR/clickhouse"
PORT_FILE="$CH_DIR/port"
PID_FILE="$CH_DIR/server.pid"
UNAVAILABLE_FILE="$CH_DIR/unavailable"
mkdir -p "$CH_DIR"

log() { echo "clickhouse-up: $*" >&2; }

server_bin() { command -v clickhouse-server || { [ -x /usr/sbin/clickhouse-server ] && echo /usr/sbin/clickhouse-server; } || true; }

# already running (e.g. the fixture or a previous make test)? reuse it
if [ -f "$PID_FILE" ] && [ -f "$PORT_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  if clickhouse-client --port "$(cat "$PORT_FILE")" --query "SELECT 1" >/dev/null 2>&1; then
    log "already running on port $(cat "$PORT_FILE") (pid $(cat "$PID_FILE"))"
    exit 0
  fi
fi

# The server cannot be had on this machine: say why in $UNAVAILABLE_FILE and exit 3, so
# scripts/test.sh runs the other tests and names the ones that could not run.
unavailable() {
  echo "$*" > "$UNAVAILABLE_FILE"
  log "unavailable: $*"
  exit 3
}
rm -f "$UNAVAILABLE_FILE"

if [ -z "$(server_bin)" ] || ! command -v clickhouse-client >/dev/null; then
  command -v apt-get >/dev/null \
    || unavailable "clickhouse-server is not installed and there is no apt-get to install it"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null \
      || unavailable "clickhouse-server is not installed and installing it with apt-get needs root (or passwordless sudo)"
    SUDO="sudo -n"
  fi
  log "installing clickhouse-server and clickhouse-client with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >/dev/null \
    || unavailable "apt-get update failed (no network or no package sources?)"
  $SUDO apt-get install -y -q clickhouse-server clickhouse-client >/dev/null \
    || unavailable "apt-get install clickhouse-server clickhouse-client failed"
fi
BIN="$(server_bin)"
[ -n "$BIN" ] || { log "clickhouse-server not found after install"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
TCP_PORT="$(free_port)"
HTTP_PORT="$(free_port)"
while [ "$HTTP_PORT" = "$TCP_PORT" ]; do HTTP_PORT="$(free_port)"; done

mkdir -p "$CH_DIR/data" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas" "$CH_DIR/log"
cat > "$CH_DIR/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$CH_DIR/log/server.log</log>
        <errorlog>$CH_DIR/log/server.err.log</errorlog>
        <size>10M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$TCP_PORT</tcp_port>
    <http_port>$HTTP_PORT</http_port>
    <max_connections>64</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>32</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>
    <users_config>$CH_DIR/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
XML
cat > "$CH_DIR/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default><max_memory_usage>2000000000</max_memory_usage><load_balancing>random</load_balancing></default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML

mkdir -p "$CH_DIR/users.d"
cp "$(dirname "$0")/../../cityops/deploy/clickhouse/users.d/"*.xml "$CH_DIR/users.d/"
if [ ! -s "$CH_DIR/users.env" ]; then
  ( umask 077
    echo "CITYOPS_CH_WRITER_PASSWORD=w$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$CH_DIR/users.env"
    echo "CITYOPS_CH_READER_PASSWORD=r$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')" >> "$CH_DIR/users.env" )
fi
set -a; . "$CH_DIR/users.env"; set +a

log "starting $BIN on 127.0.0.1:$TCP_PORT (data $CH_DIR/data)"
# setsid: the server outlives this script; clickhouse-down.sh stops it by its pid
setsid "$BIN" --config-file="$CH_DIR/config.xml" >"$CH_DIR/log/stdout.log" 2>&1 < /dev/null &
echo $! > "$PID_FILE"

for _ in $(seq 1 120); do
  if clickhouse-client --host 127.0.0.1 --port "$TCP_PORT" --query "SELECT 1" >/dev/null 2>&1; then
    echo "$TCP_PORT" > "$PORT_FILE"
    log "answering on port $TCP_PORT (pid $(cat "$PID_FILE"))"
    exit 0
  fi
  if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    log "server exited during start-up; last log lines:"
    tail -n 20 "$CH_DIR/log/server.err.log" "$CH_DIR/log/stdout.log" >&2 2>/dev/null || true
    rm -f "$PID_FILE"
    exit 1
  fi
  sleep 0.5
done
log "server did not answer within 60 s"
kill "$(cat "$PID_FILE")" 2>/dev/null || true
rm -f "$PID_FILE"
exit 1
