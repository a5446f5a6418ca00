#!/usr/bin/env python3
"""Lists every HTTP call the installed Trophy Python SDK can make, as JSON.

Reads the SDK's generated `raw_client.py` files (sync clients only; the async ones make the
same calls) for `httpx_client.request(<path>, base_url=<api|admin>, method=<M>)` and prints
`[{"api": "application"|"admin", "method": "GET", "path": "/users/{id}"}, ...]`, sorted.

    python3 tests/spec/extract_sdk_calls.py > tests/spec/sdk-1.27-calls.json

tests/sdk_compat.rs runs it against the SDK it installs and checks the result equals the
vendored tests/spec/sdk-1.27-calls.json, which the coverage test (tests/it/coverage.rs)
reads.
"""

import json
import pathlib
import re
import sys

import trophy

CALL = re.compile(
    r"httpx_client\.request\(\s*(f?)\"([^\"]*)\",\s*"
    r"base_url=self\._client_wrapper\.get_environment\(\)\.(api|admin),\s*"
    r"method=\"([A-Z]+)\"",
    re.S,
)
PARAM = re.compile(r"\{encode_path_param\(([a-z_]+)\)\}")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def main() -> int:
    root = pathlib.Path(trophy.__file__).parent
    calls = set()
    for f in root.rglob("raw_client.py"):
        for _, path, base, method in CALL.findall(f.read_text()):
            path = "/" + PARAM.sub(lambda m: "{" + camel(m.group(1)) + "}", path)
            calls.add(("application" if base == "api" else "admin", method, path))
    out = [{"api": a, "method": m, "path": p} for a, m, p in sorted(calls)]
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
