#!/usr/bin/env python3
"""What the real container run (docker/smoke) cannot prove about the container files.

docker/smoke builds the image and runs the compose file, so whether the files build, start,
connect and answer is settled there. Two things are not:

- exposure: a port published on every interface works just as well as one published on
  127.0.0.1, and nothing here has authentication (the dashboard runs with
  DASHBOARD_ALLOW_UNAUTHENTICATED=1). Every published port must be bound to 127.0.0.1.
- Grafana: there is no Debian package to make a Grafana image from, so it never runs in the
  test. Its provisioning is checked here instead: the data source names a compose service on the
  port it serves, every dashboard provider's path is a mounted directory holding dashboards, and
  every panel uses a provisioned data source. (docker/smoke runs every panel's query against the
  real Prometheus; dashboard/src/metrics.rs checks the metric names against the services'.)

The compose file is read through `docker-compose config` (the real Compose loader, which needs no
engine), so merges, defaults, interpolation and relative paths are resolved as Compose does.

Usage: check_consistency.py --compose-bin PATH [--compose FILE] [--project-dir DIR]
Prints one line per problem; exits 1 if there is any, else 0.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load_compose(compose_bin: str, compose: Path, project_dir: Path) -> tuple[dict, list[str]]:
    """The compose model as Compose resolves it, with every profile; default interpolation."""
    result = subprocess.run(
        [compose_bin, "--file", str(compose), "--project-directory", str(project_dir),
         "--profile", "*", "config", "--format", "json"],
        capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    if result.returncode != 0:
        return {}, [f"{compose.name}: docker-compose config failed: {result.stderr.strip()}"]
    return json.loads(result.stdout), []


def check_exposure(services: dict[str, dict], where: str) -> list[str]:
    problems = []
    for name, service in sorted(services.items()):
        for port in service.get("ports") or []:
            host_ip = port.get("host_ip", "")
            if host_ip != "127.0.0.1":
                problems.append(
                    f"{where}: service {name}: port {port.get('published')}->{port.get('target')} "
                    f"is published on {host_ip or 'every interface'}, not 127.0.0.1"
                )
    return problems


def mount_source(service: dict, path: str) -> Path | None:
    """The host path bind-mounted at (or above) PATH in the container."""
    for volume in service.get("volumes") or []:
        target = volume.get("target", "").rstrip("/")
        if volume.get("type") == "bind" and (path == target or path.startswith(target + "/")):
            return Path(volume["source"]) / posixpath.relpath(path, target)
    return None


def served_ports(service: dict) -> set[int]:
    ports = {int(port["target"]) for port in service.get("ports") or []}
    ports.update(int(port) for port in service.get("expose") or [])
    return ports


def check_grafana(services: dict[str, dict], root: Path) -> list[str]:
    problems = []
    for name, service in sorted(services.items()):
        if not (service.get("image") or "").startswith("grafana/grafana"):
            continue
        provisioning = mount_source(service, "/etc/grafana/provisioning")
        if provisioning is None or not provisioning.is_dir():
            problems.append(f"service {name}: no directory is mounted at /etc/grafana/provisioning")
            continue
        uids = set()
        for file in sorted((provisioning / "datasources").glob("*.y*ml")):
            where = rel(file, root)
            for source in (yaml.safe_load(file.read_text()) or {}).get("datasources") or []:
                uids.add(source.get("uid", ""))
                match = re.fullmatch(r"https?://([^/:]+):(\d+)/?", source.get("url", ""))
                target = services.get(match.group(1)) if match else None
                if target is None:
                    problems.append(f"{where}: data source {source.get('name')}: "
                                    f"{source.get('url')} is not a compose service")
                elif int(match.group(2)) not in served_ports(target):
                    problems.append(f"{where}: data source {source.get('name')}: {match.group(1)} "
                                    f"serves {sorted(served_ports(target))}, not {match.group(2)}")
        boards = 0
        for file in sorted((provisioning / "dashboards").glob("*.y*ml")):
            where = rel(file, root)
            for provider in (yaml.safe_load(file.read_text()) or {}).get("providers") or []:
                path = (provider.get("options") or {}).get("path", "")
                source = mount_source(service, path)
                if source is None or not source.is_dir():
                    problems.append(f"{where}: provider {provider.get('name')}: {path} is not a "
                                    f"mounted directory of service {name}")
                    continue
                for board in sorted(source.glob("*.json")):
                    boards += 1
                    problems += check_board(board, uids, root)
        if boards == 0:
            problems.append(f"service {name}: no dashboard is provisioned")
    return problems


def check_board(path: Path, uids: set[str], root: Path) -> list[str]:
    where = rel(path, root)
    try:
        board = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        return [f"{where}: not JSON: {error}"]
    problems = [f"{where}: no {key}" for key in ("uid", "title", "panels") if key not in board]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            source = node.get("datasource")
            if isinstance(source, dict):
                uid = source.get("uid", "")
                if uid and not uid.startswith("$") and uid not in uids and uid != "-- Grafana --":
                    problems.append(f"{where}: data source uid {uid} is not provisioned ({sorted(uids)})")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(board)
    return problems


def rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def run(compose_bin: str, compose: Path, project_dir: Path) -> list[str]:
    model, problems = load_compose(compose_bin, compose, project_dir)
    services = model.get("services") or {}
    return problems + check_exposure(services, compose.name) + check_grafana(services, project_dir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compose-bin", default="docker-compose", help="a Docker Compose v2+ binary")
    parser.add_argument("--compose", type=Path, default=ROOT / "docker-compose.yml")
    parser.add_argument("--project-dir", type=Path, default=ROOT)
    args = parser.parse_args()
    problems = run(args.compose_bin, args.compose.resolve(), args.project_dir.resolve())
    for problem in problems:
        print(problem)
    if problems:
        print(f"check_consistency: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check_consistency: ports published on 127.0.0.1 only; Grafana provisioning complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
