"""Names and paths the deployments agree on (compose, Kubernetes, the tests that check them).

The files themselves belong to their own areas: the ClickHouse users (``users.d`` XML: a
writer for the sink and migrations, a read-only reader for Grafana and analysts) and the
Grafana provisioning that ``cityops dashboards build`` generates. Compose mounts them from
these paths; tests/unit/deploy/test_compose.py checks both sides.
"""

from __future__ import annotations

#: ClickHouse users file, mounted into the server's users.d
CLICKHOUSE_USERS_XML = "cityops/deploy/clickhouse/users.d/cityops-users.xml"
#: the writer (sink, migrations) and the read-only reader (Grafana, analysts)
CLICKHOUSE_WRITER = "cityops_writer"
CLICKHOUSE_READER = "cityops_reader"
#: environment variables the users file reads the two passwords from
CLICKHOUSE_PASSWORD_ENV = {CLICKHOUSE_WRITER: "CITYOPS_CH_WRITER_PASSWORD",
                           CLICKHOUSE_READER: "CITYOPS_CH_READER_PASSWORD"}
#: the database every deployment creates
CLICKHOUSE_DATABASE = "cityops"
#: generated Grafana provisioning (datasources, dashboards provider, alerting) and board JSON
GRAFANA_PROVISIONING_DIR = "deploy/grafana/provisioning"
GRAFANA_DASHBOARDS_DIR = "deploy/grafana/dashboards"
#: where Grafana reads them (the dashboards provider's ``options.path``)
GRAFANA_PROVISIONING_MOUNT = "/etc/grafana/provisioning"
GRAFANA_DASHBOARDS_MOUNT = "/etc/grafana/dashboards/cityops"
