"""Tests for check_consistency.py: the shipped files pass, and each kind of mistake is caught.

Each negative case copies one shipped file into a temporary directory with a single deliberate
mistake and expects a problem naming it. docker/check runs these with:

  DOCKER_CHECK_COMPOSE_BIN=... DOCKER_CHECK_LIBRDKAFKA_CONFIG=... python -m unittest ...
"""

from __future__ import annotations

import os
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_consistency  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker/Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS = ROOT / "docker/prometheus.yml"


class ConsistencyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.compose_bin = os.environ.get("DOCKER_CHECK_COMPOSE_BIN", "docker-compose")
        cls.librdkafka = Path(os.environ["DOCKER_CHECK_LIBRDKAFKA_CONFIG"])

    def setUp(self) -> None:
        self.tmp = Path(self.enterContext(tempfile.TemporaryDirectory()))

    def problems(
        self,
        compose: str | None = None,
        dockerfile: str | None = None,
        dockerignore: str | None = None,
    ) -> list[str]:
        paths = {}
        for name, text, shipped in (
            ("docker-compose.yml", compose, COMPOSE),
            ("Dockerfile", dockerfile, DOCKERFILE),
            (".dockerignore", dockerignore, DOCKERIGNORE),
        ):
            if text is None:
                paths[name] = shipped
            else:
                paths[name] = self.tmp / name
                paths[name].write_text(text)
        return check_consistency.run(
            ROOT,
            paths["docker-compose.yml"],
            paths["Dockerfile"],
            paths[".dockerignore"],
            self.compose_bin,
            self.librdkafka,
            project_dir=ROOT,
            dockerfile_as=DOCKERFILE,
        )

    def mutated(self, path: Path, old: str, new: str) -> str:
        text = path.read_text()
        if old not in text:
            self.fail(f"{old!r} is gone from {path.name}: update this test's mutation")
        return text.replace(old, new, 1)

    def assert_caught(self, problems: list[str], *fragments: str) -> None:
        joined = "\n".join(problems)
        for fragment in fragments:
            self.assertIn(fragment, joined, f"expected a problem mentioning {fragment!r}, got:\n{joined}")

    def fixture(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    # ---------------------------------------------------------------------------------------

    def test_shipped_files_pass(self) -> None:
        self.assertEqual(self.problems(), [])

    def test_wrong_binary_name_in_command(self) -> None:
        compose = self.mutated(
            COMPOSE,
            'command: ["invoice-generator", "config/config.ini"]',
            'command: ["invoice-generater", "config/config.ini"]',
        )
        self.assert_caught(self.problems(compose=compose), "command invoice-generater is not a binary of the workspace")

    def test_unknown_option(self) -> None:
        compose = self.mutated(
            COMPOSE,
            'command: ["invoice-generator", "config/config.ini"]',
            'command: ["invoice-generator", "config/config.ini", "--rewind"]',
        )
        self.assert_caught(self.problems(compose=compose), "has no option --rewind")

    def test_container_name_differs(self) -> None:
        compose = self.mutated(COMPOSE, "container_name: score-calculator", "container_name: scores")
        self.assert_caught(self.problems(compose=compose), "container_name must be score-calculator")

    def test_missing_bind_mount_source(self) -> None:
        compose = self.mutated(
            COMPOSE,
            "./dashboard/config/config.ini:/app/dashboard/config/config.ini:ro",
            "./dashboard/config/missing.ini:/app/dashboard/config/config.ini:ro",
        )
        self.assert_caught(self.problems(compose=compose), "dashboard/config/missing.ini does not exist")

    def test_config_not_where_the_command_reads_it(self) -> None:
        compose = self.mutated(COMPOSE, "working_dir: /app/score-calculator", "working_dir: /srv")
        self.assert_caught(self.problems(compose=compose), "reads /srv/config/config.ini, which is neither mounted")

    def test_another_services_config(self) -> None:
        compose = self.mutated(
            COMPOSE,
            "./score-calculator/config/config.ini:/app/score-calculator",
            "./invoice-generator/config/config.ini:/app/score-calculator",
        )
        self.assert_caught(self.problems(compose=compose), "mounts invoice-generator's config.ini, not its own")

    def test_env_var_nobody_reads(self) -> None:
        compose = self.mutated(COMPOSE, "DASHBOARD_LISTEN: 0.0.0.0:3000", "DASHBOARD_LISTEN_ADDR: 0.0.0.0:3000")
        self.assert_caught(self.problems(compose=compose), "DASHBOARD_LISTEN_ADDR is not read by dashboard")

    def test_env_var_of_another_binary(self) -> None:
        compose = self.mutated(
            COMPOSE,
            "WORKER_METRICS_LISTEN: 0.0.0.0:9101",
            "WORKER_METRICS_LISTEN: 0.0.0.0:9101\n      DASHBOARD_HISTORY_LIMIT: 5",
        )
        self.assert_caught(self.problems(compose=compose), "DASHBOARD_HISTORY_LIMIT is not read by invoice-generator")

    def test_unknown_librdkafka_property_in_env(self) -> None:
        compose = self.mutated(
            COMPOSE, "RUST_LOG: info\n    volumes:\n      - ./invoice", "RUST_LOG: info\n      LIBRDKAFKA_LINGER_MSEC: '5'\n    volumes:\n      - ./invoice"
        )
        self.assert_caught(self.problems(compose=compose), "sets linger.msec, which is not a librdkafka property")

    def test_unknown_config_keys(self) -> None:
        config = (ROOT / "invoice-generator/config/config.ini").read_text()
        for section in ("\n[topics]\n", "\n[consumer]\n"):
            self.assertIn(section, config)
        config = config.replace("\n[topics]\n", "\n[topics]\npartitionz=3\n", 1)
        config = config.replace("\n[consumer]\n", "\n[consumer]\nlinger.ms=5\nfetch.wait.max.msec=10\n", 1)
        config += "\n[invoices]\nprefix=x\n"
        fixture = self.fixture("config.ini", config)
        compose = self.mutated(COMPOSE, "./invoice-generator/config/config.ini", str(fixture))
        self.assert_caught(
            self.problems(compose=compose),
            "[topics] partitionz: invoice-generator does not read this setting",
            "[consumer] linger.ms is a producer-only librdkafka property",
            "[consumer] fetch.wait.max.msec is not a librdkafka property",
            "[invoices]: invoice-generator reads no such section",
        )

    def test_dashboard_setting_in_a_worker_config(self) -> None:
        config = (ROOT / "score-calculator/config/config.ini").read_text() + "\n[dashboard]\nlisten=0.0.0.0:3000\n"
        fixture = self.fixture("config.ini", config)
        compose = self.mutated(COMPOSE, "./score-calculator/config/config.ini", str(fixture))
        self.assert_caught(self.problems(compose=compose), "[dashboard]: score-calculator reads no such section")

    def test_published_port_not_listened_on(self) -> None:
        compose = self.mutated(COMPOSE, '"127.0.0.1:3000:3000"', '"127.0.0.1:8080:8080"')
        self.assert_caught(self.problems(compose=compose), "publishes container port 8080, but dashboard listens on [3000]")

    def test_listening_on_loopback_inside_the_container(self) -> None:
        compose = self.mutated(COMPOSE, "DASHBOARD_LISTEN: 0.0.0.0:3000", "DASHBOARD_LISTEN: 127.0.0.1:3000")
        self.assert_caught(self.problems(compose=compose), "listens on 127.0.0.1:3000, unreachable from outside")

    def test_port_differs_from_config_default(self) -> None:
        compose = self.mutated(COMPOSE, "WORKER_METRICS_LISTEN: 0.0.0.0:9102", "WORKER_METRICS_LISTEN: 0.0.0.0:9200")
        self.assert_caught(self.problems(compose=compose), "uses port 9200 but the config file's default")

    def test_healthcheck_port_and_route(self) -> None:
        compose = self.mutated(COMPOSE, '"http-probe", "3000", "/readyz"', '"http-probe", "3001", "/ready"')
        self.assert_caught(
            self.problems(compose=compose),
            "the health check probes port 3001",
            "the health check asks for /ready, which dashboard does not serve",
        )

    def test_bootstrap_servers_on_the_host_listener(self) -> None:
        compose = self.mutated(COMPOSE, "KAFKA_BOOTSTRAP_SERVERS: kafka:19092", "KAFKA_BOOTSTRAP_SERVERS: kafka:9092")
        self.assert_caught(self.problems(compose=compose), "KAFKA_BOOTSTRAP_SERVERS=kafka:9092 is not an advertised in-network listener")

    def test_bootstrap_servers_missing_falls_back_to_loopback(self) -> None:
        compose = self.mutated(COMPOSE, "      KAFKA_BOOTSTRAP_SERVERS: kafka:19092\n", "", )
        self.assert_caught(self.problems(compose=compose), "bootstrap.servers=127.0.0.1:9092 is not an advertised", "loopback inside a container")

    def test_advertised_port_not_published(self) -> None:
        compose = self.mutated(COMPOSE, "PLAINTEXT_HOST://127.0.0.1:9092", "PLAINTEXT_HOST://127.0.0.1:9093")
        self.assert_caught(self.problems(compose=compose), "advertises 127.0.0.1:9093 for host clients but port 9093 is not published")

    def test_advertised_in_network_port_differs_from_listener(self) -> None:
        compose = self.mutated(COMPOSE, "PLAINTEXT://kafka:19092,", "PLAINTEXT://kafka:29092,")
        self.assert_caught(self.problems(compose=compose), "advertises kafka:29092 but listens on port 19092")

    def test_the_advertised_listeners_trap(self) -> None:
        compose = self.mutated(
            COMPOSE,
            "KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://kafka:19092,PLAINTEXT_HOST://127.0.0.1:9092",
            "KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://kafka:19092,PLAINTEXT_HOST://kafka:9092",
        )
        self.assert_caught(self.problems(compose=compose), "the advertised-listeners trap")

    def test_listener_missing_from_protocol_map(self) -> None:
        compose = self.mutated(COMPOSE, "PLAINTEXT_HOST:PLAINTEXT,", "")
        self.assert_caught(self.problems(compose=compose), "PLAINTEXT_HOST is missing from KAFKA_LISTENER_SECURITY_PROTOCOL_MAP")

    def test_quorum_voter_on_the_wrong_port(self) -> None:
        compose = self.mutated(COMPOSE, "KAFKA_CONTROLLER_QUORUM_VOTERS: 1@kafka:9093", "KAFKA_CONTROLLER_QUORUM_VOTERS: 1@kafka:9094")
        self.assert_caught(self.problems(compose=compose), "quorum voter 1@kafka:9094 is not this broker's controller")

    def test_replication_factor_above_one(self) -> None:
        compose = self.mutated(COMPOSE, "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: 1", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: 3")
        self.assert_caught(self.problems(compose=compose), "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR must be 1")

    def test_topic_auto_creation(self) -> None:
        compose = self.mutated(COMPOSE, 'KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false"', 'KAFKA_AUTO_CREATE_TOPICS_ENABLE: "true"')
        self.assert_caught(self.problems(compose=compose), "KAFKA_AUTO_CREATE_TOPICS_ENABLE=false")

    def test_broker_healthcheck_on_a_wrong_port(self) -> None:
        compose = self.mutated(COMPOSE, '"--bootstrap-server", "kafka:19092"', '"--bootstrap-server", "kafka:9092"')
        self.assert_caught(self.problems(compose=compose), "health check bootstrap server kafka:9092 is no listener")

    def test_unpinned_image(self) -> None:
        compose = self.mutated(COMPOSE, "image: prom/prometheus:v3.5.0", "image: prom/prometheus")
        self.assert_caught(self.problems(compose=compose), "image prom/prometheus has no pinned tag")

    def test_interpolation(self) -> None:
        compose = self.mutated(COMPOSE, "RUST_LOG: info", "RUST_LOG: ${LOG:-info}")
        self.assert_caught(self.problems(compose=compose), "$LOG: variable interpolation")

    def test_prometheus_target_on_the_wrong_port(self) -> None:
        prometheus = self.mutated(PROMETHEUS, '"invoice-generator:9101"', '"invoice-generator:9102"')
        fixture = self.fixture("prometheus.yml", prometheus)
        compose = self.mutated(COMPOSE, "./docker/prometheus.yml", str(fixture))
        self.assert_caught(self.problems(compose=compose), "invoice-generator:9102, but invoice-generator listens on [9101]")

    def test_service_not_scraped(self) -> None:
        prometheus = PROMETHEUS.read_text()
        cut = prometheus.index("  - job_name: score-calculator")
        fixture = self.fixture("prometheus.yml", prometheus[:cut])
        compose = self.mutated(COMPOSE, "./docker/prometheus.yml", str(fixture))
        self.assert_caught(self.problems(compose=compose), "no job scrapes score-calculator")

    def test_dockerfile_copies_a_missing_path(self) -> None:
        dockerfile = self.mutated(DOCKERFILE, "COPY dashboard dashboard", "COPY dashbord dashboard")
        self.assert_caught(self.problems(dockerfile=dockerfile), "COPY source dashbord does not exist")

    def test_dockerfile_ships_a_binary_that_does_not_exist(self) -> None:
        dockerfile = self.mutated(DOCKERFILE, "/out/score-calculator /usr", "/out/score-calculater /usr")
        self.assert_caught(
            self.problems(dockerfile=dockerfile),
            "score-calculater copied from the build stage is not a binary",
            "does not ship the score-calculator binary",
        )

    def test_dockerfile_runs_as_root(self) -> None:
        dockerfile = self.mutated(DOCKERFILE, "USER 10001:10001", "USER root")
        self.assert_caught(self.problems(dockerfile=dockerfile), "USER root: use a numeric UID")

    def test_dockerfile_toolchain_too_old(self) -> None:
        dockerfile = self.mutated(DOCKERFILE, "ARG RUST_VERSION=1.95", "ARG RUST_VERSION=1.80")
        self.assert_caught(self.problems(dockerfile=dockerfile), "is older than the workspace's rust-version")

    def test_dockerfile_runtime_on_another_debian(self) -> None:
        dockerfile = self.mutated(DOCKERFILE, "FROM debian:bookworm-slim", "FROM debian:trixie-slim")
        self.assert_caught(self.problems(dockerfile=dockerfile), "the binaries need the same glibc")

    def test_dockerfile_build_not_locked(self) -> None:
        dockerfile = self.mutated(DOCKERFILE, "cargo build --release --locked --bins", "cargo build --release --bins")
        self.assert_caught(self.problems(dockerfile=dockerfile), "cargo build without --locked")

    def test_dockerignore_excludes_what_the_build_needs(self) -> None:
        dockerignore = DOCKERIGNORE.read_text() + "\n*.html\n**/templates\n"
        self.assert_caught(
            self.problems(dockerignore=dockerignore),
            "dashboard/templates/base.html (under COPY source dashboard) is excluded by .dockerignore",
        )

    def test_dockerignore_lets_target_in(self) -> None:
        dockerignore = DOCKERIGNORE.read_text() + "\n!target\n"
        self.assert_caught(self.problems(dockerignore=dockerignore), "target/ is not excluded from the build context")

    def test_compose_file_that_compose_rejects(self) -> None:
        compose = self.mutated(COMPOSE, "condition: service_healthy", "condition: service_happy")
        self.assert_caught(self.problems(compose=compose), "docker-compose config failed")


class DockerIgnoreTest(unittest.TestCase):
    """The .dockerignore matcher follows moby/patternmatcher: last match wins, parents count."""

    def ignore(self, text: str) -> check_consistency.DockerIgnore:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / ".dockerignore"
            path.write_text(text)
            return check_consistency.DockerIgnore(path)

    def test_allow_list(self) -> None:
        ignore = self.ignore("*\n!src/\nsrc/**/*.bak\n")
        self.assertTrue(ignore.excluded("README.md"))
        self.assertFalse(ignore.excluded("src/main.rs"))
        self.assertFalse(ignore.excluded("src/a/b/c.rs"))
        self.assertTrue(ignore.excluded("src/a/b/c.bak"))
        self.assertTrue(ignore.excluded("src/c.bak"))

    def test_single_star_stays_in_one_directory(self) -> None:
        ignore = self.ignore("*/tests\n")
        self.assertTrue(ignore.excluded("crate/tests/a.rs"))
        self.assertFalse(ignore.excluded("a/crate/tests/a.rs"))
        self.assertFalse(ignore.excluded("tests/a.rs"))


if __name__ == "__main__":
    unittest.main()
