"""``cityops dashboards push``: create or update folder, datasource, boards, alerting in Grafana.

Decisions are plain code (``decide``): a thing Grafana lacks is created, one that differs in
the fields we own is updated, an equal one is left alone, so a second push changes nothing.
The network layer (``GrafanaTarget``) is a thin wrapper over grafana-client. It has not run
against a Grafana here (none can run on our machines): check it against your own Grafana.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cityops.core.secrets import redact_url
from cityops.dashboards import alerts
from cityops.dashboards.exceptions import GrafanaPushError
from cityops.dashboards.grafana import (
    DATASOURCE_NAME,
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    PLUGIN_TYPE,
)
from cityops.dashboards.provisioning import Bundle

#: fields Grafana adds or rewrites on its side; never a reason to update
_SERVER_FIELDS = {"id", "version", "updated", "created", "provenance", "orgID", "orgId",
                  "readOnly", "typeLogoUrl", "access", "basicAuth", "withCredentials",
                  "secureJsonFields", "url", "iteration", "schemaVersion"}


@dataclass(frozen=True)
class Action:
    kind: str  # folder | datasource | dashboard | alert-rule | contact-point | policy
    name: str
    verb: str  # create | update | unchanged
    body: dict[str, Any]

    def line(self) -> str:
        return f"{self.verb:9} {self.kind} {self.name}"


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in sorted(obj.items()) if k not in _SERVER_FIELDS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def same(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Equal in every field we send (Grafana may hold more; secrets are never read back)."""
    cur = _strip(current)
    want = _strip(wanted)
    want.pop("secureJsonData", None)
    return all(cur.get(k) == v for k, v in want.items())


def decide(kind: str, name: str, current: dict[str, Any] | None,
           wanted: dict[str, Any]) -> Action:
    if current is None:
        return Action(kind, name, "create", wanted)
    return Action(kind, name, "unchanged" if same(current, wanted) else "update", wanted)


def datasource_body(host: str, port: int, database: str, user: str,
                    password: str) -> dict[str, Any]:
    return {"name": DATASOURCE_NAME, "uid": DATASOURCE_UID, "type": PLUGIN_TYPE,
            "isDefault": True, "jsonData": {"host": host, "port": port, "protocol": "native",
                                            "defaultDatabase": database, "username": user,
                                            "secure": False},
            "secureJsonData": {"password": password}}


def wanted(bundle: Bundle, datasource: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Everything push makes sure of, in the order it must be applied."""
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("folder", FOLDER_UID, {"uid": FOLDER_UID, "title": FOLDER_TITLE}),
        ("datasource", DATASOURCE_UID, datasource)]
    out += [("dashboard", uid, d) for uid, d in bundle.dashboards.items()]
    for cp in alerts.contact_points():
        out.append(("contact-point", cp["name"], cp))
    out.append(("policy", "root", alerts.policy()))
    for r in bundle.rules:
        out.append(("alert-rule", r.uid, r.body))
    return out


class GrafanaTarget:
    """The thin network layer: read current objects, write wanted ones (grafana-client)."""

    def __init__(self, url: str, token: str, timeout_s: float = 10.0) -> None:
        from grafana_client import GrafanaApi

        self.url = url
        self.label = redact_url(url)  # what messages show: a password in the URL masked
        self.api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)

    def _guard(self, fn: Callable[[], Any]) -> Any:
        from grafana_client.client import (
            GrafanaClientError,
            GrafanaServerError,
            GrafanaTimeoutError,
            GrafanaUnauthorizedError,
        )

        try:
            return fn()
        except GrafanaUnauthorizedError:
            raise GrafanaPushError(f"Grafana at {self.label} refused the token (401): check "
                                   "CITYOPS_GRAFANA_TOKEN / --token") from None
        except GrafanaClientError as exc:
            if getattr(exc, "status_code", 0) == 403:
                raise GrafanaPushError(f"Grafana at {self.label}: the token may not do this "
                                       "(403); it needs the Admin or Editor role") from None
            raise GrafanaPushError(f"Grafana at {self.label} answered {exc}") from None
        except (GrafanaServerError, GrafanaTimeoutError) as exc:
            raise GrafanaPushError(f"Grafana at {self.label}: {exc}") from None
        except OSError as exc:
            raise GrafanaPushError(f"cannot reach Grafana at {self.label}: {exc}") from None
        except Exception as exc:  # niquests' connection errors are not OSErrors
            if type(exc).__module__.startswith(("niquests", "urllib3")):
                raise GrafanaPushError(f"cannot reach Grafana at {self.label}: "
                                       f"{type(exc).__name__}") from None
            raise

    def _get(self, fn: Callable[[], Any]) -> Any:
        from grafana_client.client import GrafanaClientError

        try:
            return self._guard(fn)
        except GrafanaPushError as exc:
            if "404" in str(exc) or "not found" in str(exc).lower():
                return None
            raise
        except GrafanaClientError:
            return None

    def current(self, kind: str, name: str) -> dict[str, Any] | None:
        a = self.api
        if kind == "folder":
            return self._get(lambda: a.folder.get_folder(name))
        if kind == "datasource":
            return self._get(lambda: a.datasource.get_datasource_by_uid(name))
        if kind == "dashboard":
            got = self._get(lambda: a.dashboard.get_dashboard(name))
            return got.get("dashboard") if got else None
        if kind == "alert-rule":
            return self._get(lambda: a.alertingprovisioning.get_alertrule(name))
        if kind == "contact-point":
            found = self._guard(lambda: a.alertingprovisioning.get_contactpoints(name=name))
            return found[0] if found else None
        if kind == "policy":
            return self._guard(lambda: a.alertingprovisioning.get_notification_policy_tree())
        raise ValueError(kind)

    def apply(self, action: Action) -> None:
        a, body, create = self.api, action.body, action.verb == "create"
        if action.kind == "folder":
            self._guard(lambda: a.folder.create_folder(body["title"], uid=body["uid"]))
        elif action.kind == "datasource":
            self._guard(lambda: a.datasource.create_datasource(body) if create else
                        a.datasource.update_datasource_by_uid(action.name, body))
        elif action.kind == "dashboard":
            self._guard(lambda: a.dashboard.update_dashboard(
                {"dashboard": body, "folderUid": FOLDER_UID, "overwrite": True,
                 "message": "cityops dashboards push"}))
        elif action.kind == "alert-rule":
            self._guard(lambda: a.alertingprovisioning.create_alertrule(body) if create else
                        a.alertingprovisioning.update_alertrule(action.name, body))
        elif action.kind == "contact-point":
            self._guard(lambda: a.alertingprovisioning.create_contactpoint(body) if create else
                        a.alertingprovisioning.update_contactpoint(body["uid"], body))
        elif action.kind == "policy":
            self._guard(lambda: a.alertingprovisioning.set_notification_policy_tree(body))


def push(target: GrafanaTarget, items: list[tuple[str, str, dict[str, Any]]],
         *, dry_run: bool = False, report: Callable[[Action], None] | None = None) -> list[Action]:
    """Create or update what differs; returns every decision (``unchanged`` included)."""
    actions = []
    for kind, name, body in items:
        action = decide(kind, name, target.current(kind, name), body)
        if action.verb != "unchanged" and not dry_run:
            target.apply(action)
        if report:
            report(action)
        actions.append(action)
    return actions
