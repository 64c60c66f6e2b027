"""Checks every query of the Grafana dashboard with promtool: each expression, with the
dashboard's variables filled in, becomes a recording rule of a scratch rules file, and
`promtool check rules` parses them all as Prometheus would.

    python .ci/check-dashboard.py DASHBOARD.json
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def expressions(node):
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield node.get("title", ""), node["expr"]
        for value in node.values():
            yield from expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from expressions(value)


def main() -> int:
    dashboard = json.loads(Path(sys.argv[1]).read_text())
    exprs = [
        e.replace("$__rate_interval", "5m").replace("$job", ".*")
        for _, e in expressions(dashboard["panels"])
    ]
    if not exprs:
        print("no queries found")
        return 1
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(exprs):
        lines.append(f"      - record: dashboard:query{i}")
        lines.append(f"        expr: {json.dumps(expr)}")
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "dashboard.rules.yml"
        rules.write_text("\n".join(lines) + "\n")
        checked = subprocess.run(["promtool", "check", "rules", str(rules)])
    print(f"dashboard: {len(exprs)} queries parsed by promtool" if checked.returncode == 0
          else "dashboard: promtool refused a query")
    return checked.returncode


if __name__ == "__main__":
    sys.exit(main())
