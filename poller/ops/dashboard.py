"""The Grafana dashboard (grafana/dashboards/poller.json), generated from this module so panels
are reviewed as code: rows Overview / Entities / Kafka / Source horizon / Fleet.

Regenerate with `make docs-reference` (python -m poller.cli.reference); the unit tests fail when
the committed JSON is stale, when a query names a metric the poller does not export, or when a
query is not valid PromQL; tests/integration/ops runs every panel against a real Prometheus.
"""

from __future__ import annotations

import json
from typing import Any

from poller.ops.dashboard_panels import ROWS, Panel

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    height = 5 if p.kind == "stat" else 8
    defaults: dict[str, Any] = {"unit": p.unit, **p.extra}
    if p.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": True,
        }
        options: dict[str, Any] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background" if "thresholds" in p.extra else "value",
            "graphMode": "none",
            "textMode": "value_and_name",
            "orientation": "auto",
            "justifyMode": "auto",
        }
    return {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": height, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {
                "datasource": DATASOURCE,
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "range": True,
                "instant": False,
            }
            for i, (expr, legend) in enumerate(p.targets)
        ],
    }


def _variable(name: str, label: str, definition: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": definition,
        "query": {
            "query": definition,
            "refId": f"PrometheusVariableQueryEditor-{name}",
            "qryType": 1,
        },
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": None,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for title, row in ROWS:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y, x, line_h = pid + 1, y + 1, 0, 0
        for p in row:
            if x + p.width > 24:
                x, y = 0, y + line_h
            panels.append(_panel(p, pid, x, y))
            line_h = max(line_h, panels[-1]["gridPos"]["h"])
            pid, x = pid + 1, x + p.width
        y += line_h
    return {
        "uid": "poller",
        "title": "Poller",
        "description": "SQL → Kafka poller: overview, entities, Kafka, source horizon, fleet.",
        "tags": ["poller", "kafka"],
        "timezone": "",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 2,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [],
        "templating": {
            "list": [
                _variable("tenant", "Tenant", "label_values(poller_rows_read_total, tenant)"),
                _variable(
                    "entity",
                    "Entity",
                    'label_values(poller_rows_read_total{tenant=~"$tenant"}, entity)',
                ),
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"
