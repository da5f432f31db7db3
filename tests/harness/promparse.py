"""Parse Prometheus text format on stdin with prometheus_client's parser; print JSON.

Output: {"families": [{"name", "type", "help", "samples": [{"name", "labels", "value"}]}]}.
Exits 1, naming the problem, when the text does not parse or a family has no HELP or TYPE
(the parser calls those "unknown"), which node_exporter's textfile collector would take amiss.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
try:
    families = list(text_string_to_metric_families(text))
except Exception as e:  # the parser raises ValueError and others on bad input
    print(f"promparse: does not parse: {e!r}", file=sys.stderr)
    sys.exit(1)
out = []
for f in families:
    if f.type == "unknown" or not f.documentation:
        print(f"promparse: {f.name}: no TYPE or HELP", file=sys.stderr)
        sys.exit(1)
    out.append({
        "name": f.name,
        "type": f.type,
        "help": f.documentation,
        "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples],
    })
json.dump({"families": out}, sys.stdout)
