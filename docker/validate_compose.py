#!/usr/bin/env python3
"""Validates compose files against the Compose Specification's JSON schema.

Usage: validate_compose.py SCHEMA COMPOSE_FILE...

The YAML is loaded as written (anchors and merge keys resolved, no interpolation), as Compose
validates it. Prints every violation with its path; exits 1 if there is any.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import yaml


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    schema = json.loads(Path(argv[0]).read_text())
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    failed = False
    for name in argv[1:]:
        try:
            document = yaml.safe_load(Path(name).read_text())
        except yaml.YAMLError as error:
            print(f"{name}: not YAML: {error}")
            failed = True
            continue
        errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
        for error in errors:
            where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
            print(f"{name}: {where}: {error.message}")
        failed |= bool(errors)
        if not errors:
            print(f"{name}: valid against the Compose Specification schema")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
