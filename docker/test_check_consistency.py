"""Tests for check_consistency.py: the shipped files pass, and each kind of mistake is caught.

Each negative case copies the compose file (or a Grafana file) into a temporary project with one
deliberate mistake and expects a problem naming it. docker/check runs these with:

  DOCKER_CHECK_COMPOSE_BIN=... python -m unittest docker/test_check_consistency.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_consistency  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class ConsistencyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.compose_bin = os.environ.get("DOCKER_CHECK_COMPOSE_BIN", "docker-compose")

    def setUp(self) -> None:
        # A project directory with what the compose file mounts, so files can be changed freely.
        self.project = Path(self.enterContext(tempfile.TemporaryDirectory()))
        shutil.copy(ROOT / "docker-compose.yml", self.project)
        shutil.copytree(ROOT / "docker", self.project / "docker",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for crate in ("dashboard", "invoice-generator", "score-calculator"):
            (self.project / crate / "config").mkdir(parents=True)
            shutil.copy(ROOT / crate / "config/config.ini", self.project / crate / "config")

    def problems(self) -> list[str]:
        return check_consistency.run(self.compose_bin, self.project / "docker-compose.yml", self.project)

    def mutate(self, relative: str, old: str, new: str) -> None:
        path = self.project / relative
        text = path.read_text()
        if old not in text:
            self.fail(f"{old!r} is gone from {relative}: update this test's mutation")
        path.write_text(text.replace(old, new, 1))

    def assert_caught(self, *fragments: str) -> None:
        joined = "\n".join(self.problems())
        for fragment in fragments:
            self.assertIn(fragment, joined, f"expected a problem mentioning {fragment!r}, got:\n{joined}")

    def test_shipped_files_pass(self) -> None:
        self.assertEqual(self.problems(), [])

    def test_port_published_on_every_interface(self) -> None:
        self.mutate("docker-compose.yml", '"127.0.0.1:${DASHBOARD_HOST_PORT:-3000}:3000"',
                    '"${DASHBOARD_HOST_PORT:-3000}:3000"')
        self.assert_caught("service dashboard: port 3000->3000 is published on every interface")

    def test_port_published_on_another_address(self) -> None:
        self.mutate("docker-compose.yml", '"127.0.0.1:${KAFKA_HOST_PORT:-9092}:9092"',
                    '"0.0.0.0:${KAFKA_HOST_PORT:-9092}:9092"')
        self.assert_caught("service kafka: port 9092->9092 is published on 0.0.0.0")

    def test_compose_file_that_compose_rejects(self) -> None:
        self.mutate("docker-compose.yml", "    container_name: dashboard\n",
                    "    container_name: dashboard\n    no_such_key: 1\n")
        self.assert_caught("docker-compose config failed")

    def test_provisioning_not_mounted(self) -> None:
        self.mutate("docker-compose.yml", "/etc/grafana/provisioning:ro", "/etc/grafana/elsewhere:ro")
        self.assert_caught("no directory is mounted at /etc/grafana/provisioning")

    def test_data_source_names_no_service(self) -> None:
        self.mutate("docker/grafana/provisioning/datasources/prometheus.yml",
                    "http://prometheus:9090", "http://prom:9090")
        self.assert_caught("http://prom:9090 is not a compose service")

    def test_data_source_on_the_wrong_port(self) -> None:
        self.mutate("docker/grafana/provisioning/datasources/prometheus.yml",
                    "http://prometheus:9090", "http://prometheus:9091")
        self.assert_caught("prometheus serves [9090], not 9091")

    def test_dashboards_path_not_mounted(self) -> None:
        self.mutate("docker/grafana/provisioning/dashboards/request-reply.yml",
                    "path: /var/lib/grafana/dashboards", "path: /var/lib/grafana/boards")
        self.assert_caught("/var/lib/grafana/boards is not a mounted directory", "no dashboard is provisioned")

    def test_panel_with_an_unknown_data_source(self) -> None:
        self.mutate("docker/grafana/dashboards/services-up.json", '"uid": "prometheus"', '"uid": "prom"')
        self.assert_caught("services-up.json: data source uid prom is not provisioned")

    def test_board_that_is_not_json(self) -> None:
        self.mutate("docker/grafana/dashboards/request-reply.json", "{", "{{", )
        self.assert_caught("request-reply.json: not JSON")


if __name__ == "__main__":
    unittest.main()
