"""Parses Prometheus text from stdin with the official Python client's parser and
prints each family's name, type and sample count as JSON, so a test can check the
exposition is valid and complete. Exits non-zero if it does not parse."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = {
        "type": family.type,
        "samples": len(family.samples),
        "labels": sorted({k for s in family.samples for k in s.labels}),
    }
print(json.dumps(families))
