"""Dashboard errors.

    CityopsError
    └── DashboardsError                 boards, provisioning, push
        ├── MacroError                  a query's macro or template variable cannot expand
        ├── BoardCheckError             a board or alert rule broke its contract (``check``)
        ├── SqlEndpointError            the worker's read-only SQL endpoint refused or failed
        └── GrafanaPushError            Grafana refused the token, or could not be reached
"""

from __future__ import annotations

from cityops.exceptions import CityopsError


class DashboardsError(CityopsError):
    code = "dashboards_error"


class MacroError(DashboardsError):
    """A macro got the wrong arguments, or a template variable is unknown."""

    code = "bad_macro"


class BoardCheckError(DashboardsError):
    code = "board_check_failed"


class SqlEndpointError(DashboardsError):
    code = "sql_endpoint"


class GrafanaPushError(DashboardsError):
    code = "grafana_push"
