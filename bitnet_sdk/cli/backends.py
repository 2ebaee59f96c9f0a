"""``bitnet backends``: list compute backends, their devices and what ``auto`` picks.

Exit status: 0 when ``auto`` resolves to a backend for the device, 1 when no
backend can run there (the listing is printed either way).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "backends",
        help="list compute backends and which one 'auto' picks",
        description=(
            "List the backend plugins found (entry-point group bitnet_sdk.backends), "
            "their devices, capabilities, priority and load errors. Honours "
            "BITNET_BACKEND and BITNET_DISABLE_PLUGINS."
        ),
    )
    p.add_argument("--json", action="store_true", help="print the GET /v1/devices document")
    p.add_argument("--device", default="cpu", help="device 'auto' is resolved for (default: cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bitnet_sdk import backends  # imported here: `bitnet --help` must not load plugins

    doc = backends.describe(args.device)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(format_text(doc))
    return 0 if doc["auto"] else 1


def format_text(doc: dict[str, Any]) -> str:
    """Human-readable table of a ``describe()`` document."""
    rows = [("NAME", "PRIO", "DEVICES", "STATUS", "PLUGIN", "CAPABILITIES")]
    for b in doc["backends"]:
        status = "ok" if b["available"] else "unavailable"
        caps = ",".join(b["capabilities"]) or "-"
        devices = ",".join(d["id"] for d in b["devices"]) or "-"
        rows.append(
            (b["name"], str(b["priority"]), devices, status,
             f"{b['plugin']} ({b['distribution']})" if b["distribution"] else b["plugin"], caps)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]
    for b in doc["backends"]:
        if b["error"]:
            lines.append(f"  {b['name']}: {b['error']}")
    for e in doc["errors"]:
        if e["stage"] in ("choose", "selected"):
            lines.append(f"  plugin {e['plugin']} failed in {e['stage']}: {e['error']}")
    if doc["disabled"]:
        lines.append(f"disabled by BITNET_DISABLE_PLUGINS: {', '.join(doc['disabled'])}")
    if doc["auto"]:
        variant = f" ({doc['auto_variant']})" if doc.get("auto_variant") else ""
        lines.append(f"auto ({doc['device']}) -> {doc['auto']}{variant} [{doc['auto_reason']}]")
    else:
        lines.append(f"auto ({doc['device']}) -> none: {doc['auto_error']}")
    return "\n".join(line.rstrip() for line in lines)
