#!/usr/bin/env python3
"""Cross-checks the container files against the Cargo workspace they package.

There is no Docker engine to try the files on, so this reads them and the Rust sources and
reports every mismatch it can see without running anything:

- binaries: every binary named in docker/Dockerfile or docker-compose.yml is a binary of the
  workspace, and the image ships all of them;
- paths: every COPY source exists and is not excluded by .dockerignore; every bind-mount source
  exists; each service's config file (working_dir + its command's config argument) is mounted
  from that service's own crate or copied into the image;
- environment: every variable set for a service is one its binary reads (the EnvOverride tables,
  std::env::var calls, RUST_LOG, LIBRDKAFKA_<KEY> with KEY a real librdkafka property);
- config files: every section and key of the config.ini files the containers use is known
  (librdkafka properties checked against librdkafka's CONFIGURATION.md, this project's sections
  against the Rust sources);
- ports: published ports, health checks and Prometheus targets use the port the service listens
  on, on all interfaces, and the same port as the config file's default;
- Kafka: listeners, advertised listeners, the controller quorum, KAFKA_BOOTSTRAP_SERVERS and the
  broker health check agree with each other and with the published ports;
- Prometheus scrape targets and Grafana provisioning point at things that exist.

The compose file is read through `docker-compose config` (the real Compose loader, which needs no
engine), so merges, defaults and relative paths are resolved exactly as Compose resolves them.

Usage:
  check_consistency.py --compose-bin PATH --librdkafka-config PATH
                       [--root DIR] [--compose FILE] [--dockerfile FILE] [--dockerignore FILE]

Prints one line per problem; exits 1 if there is any, else 0.
"""

from __future__ import annotations

import argparse
import configparser
import ipaddress
import json
import os
import posixpath
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Sections of config.ini that go to librdkafka unchanged, and which client type reads each one.
LIBRDKAFKA_SECTIONS = {"default": "*", "consumer": "C", "producer": "P"}
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", ""}
# Debian release names and the distroless suffix of the same release.
DEBIAN_RELEASES = {"bookworm": "debian12", "trixie": "debian13", "bullseye": "debian11"}
# Directories on the runtime image's PATH where a bare command name is looked up.
IMAGE_PATH_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
# Environment variables a Dockerfile may set that are not meant for the binaries.
GENERIC_ENV = {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR"}
# Broker-wide settings that must be 1 on a single-node cluster.
SINGLE_NODE_KAFKA_SETTINGS = (
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
)
REQUIRED_KAFKA_SETTINGS = (
    "KAFKA_NODE_ID",
    "KAFKA_PROCESS_ROLES",
    "KAFKA_LISTENERS",
    "KAFKA_ADVERTISED_LISTENERS",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
    "KAFKA_CONTROLLER_LISTENER_NAMES",
    "KAFKA_INTER_BROKER_LISTENER_NAME",
    "CLUSTER_ID",
)


class Problems:
    """Collects problems; each names the file it is about."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


# --------------------------------------------------------------------------------------------
# The workspace: binaries, and what their sources read.


@dataclass
class Binary:
    name: str
    crate: str
    crate_dir: Path
    main: Path
    required_features: list[str] = field(default_factory=list)  # not built by default if any
    scope: list[Path] = field(default_factory=list)  # source files this binary's behaviour uses
    text: str = ""  # their text, test modules removed
    env: dict[str, tuple[str, str] | None] = field(default_factory=dict)  # var -> (section, key)
    env_prefixes: list[str] = field(default_factory=list)  # e.g. LIBRDKAFKA_
    reads_rust_log: bool = False
    routes: set[str] = field(default_factory=set)
    flags: set[str] = field(default_factory=set)


def strip_tests(text: str) -> str:
    """Drops `#[cfg(test)] mod ... { }` blocks (by convention at the end of a file)."""
    match = re.search(r"^\s*#\[cfg\(test\)\]\s*\n\s*mod\s+\w+", text, re.MULTILINE)
    return text[: match.start()] if match else text


class Workspace:
    def __init__(self, root: Path, problems: Problems) -> None:
        self.root = root
        self.problems = problems
        manifest = tomllib.loads((root / "Cargo.toml").read_text())
        workspace = manifest.get("workspace", {})
        self.rust_version = workspace.get("package", {}).get("rust-version")
        self.crates: dict[str, Path] = {}
        # `cargo build` in the workspace root builds the default members only (all if unset).
        self.default_members = {
            root / member
            for member in workspace.get("default-members", workspace.get("members", []))
        }
        self.binaries: dict[str, Binary] = {}
        for member in workspace.get("members", []):
            crate_dir = root / member
            crate_manifest = tomllib.loads((crate_dir / "Cargo.toml").read_text())
            name = crate_manifest["package"]["name"]
            self.crates[name] = crate_dir
            for bin_name, main, features in self._bins(crate_dir, name, crate_manifest):
                self.binaries[bin_name] = Binary(bin_name, name, crate_dir, main, features)
        self._texts: dict[Path, str] = {}
        for binary in self.binaries.values():
            self._analyse(binary)

    @staticmethod
    def _bins(crate_dir: Path, name: str, manifest: dict) -> list[tuple[str, Path, list[str]]]:
        bins = [
            (
                entry["name"],
                crate_dir / entry.get("path", f"src/bin/{entry['name']}.rs"),
                list(entry.get("required-features", [])),
            )
            for entry in manifest.get("bin", [])
        ]
        if manifest.get("package", {}).get("autobins", True):
            known = {bin_name for bin_name, _, _ in bins}
            if (crate_dir / "src/main.rs").is_file() and name not in known:
                bins.append((name, crate_dir / "src/main.rs", []))
            for path in sorted((crate_dir / "src/bin").glob("*.rs")):
                if path.stem not in known:
                    bins.append((path.stem, path, []))
        return bins

    def default_binaries(self) -> set[str]:
        """What `cargo build --bins` builds: binaries of the default members without
        required-features."""
        return {
            name
            for name, binary in self.binaries.items()
            if not binary.required_features and binary.crate_dir in self.default_members
        }

    def text(self, path: Path) -> str:
        if path not in self._texts:
            self._texts[path] = strip_tests(path.read_text())
        return self._texts[path]

    def _module_file(self, crate: str, module: str) -> Path | None:
        src = self.crates[crate] / "src"
        for candidate in (src / f"{module}.rs", src / module / "mod.rs"):
            if candidate.is_file():
                return candidate
        return None

    def _analyse(self, binary: Binary) -> None:
        """Finds the files the binary's behaviour comes from: its main, its own crate's sources,
        and the library modules they reach (`other_crate::module`, `crate::module`)."""
        crate_src = binary.crate_dir / "src"
        start = [binary.main] + sorted(
            path
            for path in crate_src.rglob("*.rs")
            if path != binary.main and "bin" not in path.relative_to(crate_src).parts
        )
        seen: list[Path] = []
        queue = [(binary.crate, path) for path in start]
        while queue:
            crate, path = queue.pop(0)
            if path in seen or path.name == "testkit.rs":
                continue
            seen.append(path)
            text = self.text(path)
            for other, crate_dir in self.crates.items():
                ident = other.replace("-", "_")
                modules = re.findall(rf"\b{ident}::(\w+)", text)
                for group in re.findall(rf"\b{ident}::\{{([^}}]*)\}}", text):
                    modules += re.findall(r"(?:^|,)\s*(\w+)", group)
                for module in modules:
                    module_file = self._module_file(other, module)
                    if module_file:
                        queue.append((other, module_file))
            own = re.findall(r"\bcrate::(\w+)", text)
            for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
                own += re.findall(r"(?:^|,)\s*(\w+)", group)
            for module in own:
                module_file = self._module_file(crate, module)
                if module_file:
                    queue.append((crate, module_file))
        binary.scope = seen
        binary.text = "\n".join(self.text(path) for path in seen)
        self._read_env(binary)
        binary.reads_rust_log = bool(
            re.search(r"from_default_env|\"RUST_LOG\"", binary.text)
        )
        binary.routes = set(re.findall(r"\.route\(\s*\"([^\"]+)\"", binary.text))
        binary.flags = {"--help", "--version", "-h", "-V"}
        for attributes, name in re.findall(
            r"#\[arg\(([^)]*)\)\]\s*(?:pub\s+)?(\w+)\s*:", binary.text
        ):
            if re.search(r"\blong\b", attributes):
                binary.flags.add("--" + name.replace("_", "-"))

    def _read_env(self, binary: Binary) -> None:
        text = binary.text
        # `const NAME: &[EnvOverride] = &[ EnvOverride { var: "...", section: "...", key: "..." }, ... ];`
        for name, body in re.findall(
            r"const\s+(\w+)\s*:\s*&\[EnvOverride\]\s*=\s*&\[(.*?)\];", text, re.DOTALL
        ):
            # In force only if the table is used, not just defined.
            if len(re.findall(rf"\b{name}\b", text)) < 2:
                continue
            for var, section, key in re.findall(
                r"var:\s*\"(\w+)\",\s*section:\s*\"(\w+)\",\s*key:\s*\"([\w.]+)\"", body
            ):
                binary.env[var] = (section, key)
        for var in re.findall(r"env::var(?:_os)?\(\s*\"(\w+)\"\s*\)", text):
            binary.env.setdefault(var, None)
        for name, prefix in re.findall(r"const\s+(\w*PREFIX\w*)\s*:\s*&str\s*=\s*\"(\w+)\"", text):
            if re.search(rf"strip_prefix\(\s*{name}\s*\)", text):
                binary.env_prefixes.append(prefix)

    def knows_setting(self, binary: Binary, section: str, key: str) -> bool:
        """Whether the binary's sources read `[section] key` (both appear as string literals in one
        of its files)."""
        for path in binary.scope:
            text = self.text(path)
            if f'"{section}"' in text and f'"{key}"' in text:
                return True
        return False

    def rel(self, path: Path | str) -> str:
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)


# --------------------------------------------------------------------------------------------
# librdkafka's property list.


def librdkafka_properties(path: Path) -> dict[str, str]:
    """property -> C/P column ('*', 'C' or 'P') from librdkafka's CONFIGURATION.md."""
    properties = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([a-z0-9_.]+)\s*\|\s*([CP*])\s*\|", line)
        if match:
            properties[match.group(1)] = match.group(2)
    return properties


# --------------------------------------------------------------------------------------------
# .dockerignore, with the semantics of moby/patternmatcher: last matching pattern wins, a pattern
# also matches everything below a directory it matches, `**` spans directories.


class DockerIgnore:
    def __init__(self, path: Path) -> None:
        self.patterns: list[tuple[bool, re.Pattern[str], str]] = []
        if not path.is_file():
            return
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate:
                line = line[1:].strip()
            line = posixpath.normpath(line).lstrip("/")
            if line in ("", "."):
                continue
            self.patterns.append((negate, self._compile(line), line))

    @staticmethod
    def _compile(pattern: str) -> re.Pattern[str]:
        out = "^"
        i = 0
        while i < len(pattern):
            char = pattern[i]
            if char == "*":
                if pattern[i : i + 2] == "**":
                    i += 2
                    if pattern[i : i + 1] == "/":
                        out += "(?:.*/)?"
                        i += 1
                    else:
                        out += ".*"
                    continue
                out += "[^/]*"
            elif char == "?":
                out += "[^/]"
            elif char == "[":
                end = pattern.find("]", i)
                if end == -1:
                    out += re.escape(char)
                else:
                    out += "[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]"
                    i = end
            elif char == "\\" and i + 1 < len(pattern):
                i += 1
                out += re.escape(pattern[i])
            else:
                out += re.escape(char)
            i += 1
        return re.compile(out + "$")

    def excluded(self, relpath: str) -> bool:
        relpath = posixpath.normpath(relpath)
        parts = relpath.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for negate, regex, _ in self.patterns:
            if any(regex.match(candidate) for candidate in candidates):
                result = not negate
        return result


# --------------------------------------------------------------------------------------------
# Dockerfile


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str
    flags: dict[str, str]
    words: list[str]  # exec-form (JSON) arguments, or the shell words


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    lines = path.read_text().splitlines()
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        logical.append((start, buffer))
        buffer = ""
    if buffer:
        logical.append((start, buffer))

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        if rest.startswith("["):
            try:
                words = json.loads(rest)
            except json.JSONDecodeError:
                words = shlex.split(rest)
        else:
            try:
                words = shlex.split(rest, comments=False)
            except ValueError:
                words = rest.split()
        instruction = Instruction(number, keyword, rest, flags, words)
        if keyword == "FROM":
            base = re.sub(
                r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0]
            )
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            if keyword == "ARG":
                for word in words:
                    key, _, value = word.partition("=")
                    global_args[key] = value
        else:
            stages[-1].instructions.append(instruction)
    return global_args, stages


@dataclass
class Image:
    """What the runtime image holds, as far as the Dockerfile says."""

    files: set[str] = field(default_factory=set)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str | None = None
    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    expose: set[int] = field(default_factory=set)

    def has_command(self, name: str) -> bool:
        if name.startswith("/"):
            return name in self.files
        return any(f"{directory}/{name}" in self.files for directory in IMAGE_PATH_DIRS)


def check_dockerfile(
    path: Path, ws: Workspace, ignore: DockerIgnore, problems: Problems
) -> Image:
    where = ws.rel(path)
    image = Image()
    if not path.is_file():
        problems.add(where, "does not exist")
        return image
    global_args, stages = parse_dockerfile(path)
    if not stages:
        problems.add(where, "has no FROM")
        return image
    stage_names = {stage.name for stage in stages if stage.name} | {
        str(index) for index in range(len(stages))
    }
    runtime = stages[-1]

    # Builder and runtime: a Rust toolchain new enough, and the same Debian release (glibc).
    builders = [stage for stage in stages if stage.base.startswith("rust:")]
    if not builders:
        problems.add(where, "no stage builds FROM the official rust image")
    for builder in builders:
        tag = builder.base.split(":", 1)[1]
        match = re.match(r"^(\d+)\.(\d+)(?:\.\d+)?(?:-(\w+))?", tag)
        if not match:
            problems.add(where, f"FROM {builder.base}: the tag does not pin a Rust version")
            continue
        version = (int(match.group(1)), int(match.group(2)))
        if ws.rust_version:
            wanted = tuple(int(part) for part in ws.rust_version.split(".")[:2])
            if version < wanted:
                problems.add(
                    where,
                    f"FROM {builder.base}: Rust {version[0]}.{version[1]} is older than the "
                    f"workspace's rust-version {ws.rust_version}",
                )
        release = match.group(3)
        if release not in DEBIAN_RELEASES:
            problems.add(where, f"FROM {builder.base}: name the Debian release (e.g. -bookworm)")
        elif not (
            runtime.base.startswith(f"debian:{release}")
            or runtime.base.startswith(f"gcr.io/distroless/cc-{DEBIAN_RELEASES[release]}")
        ):
            problems.add(
                where,
                f"runtime FROM {runtime.base} is not Debian {release} like the builder "
                f"({builder.base}): the binaries need the same glibc",
            )

    for stage in stages:
        for ins in stage.instructions:
            if ins.keyword in ("COPY", "ADD"):
                _check_copy(ins, stage is runtime, stage_names, ws, ignore, image, where, problems)
            elif ins.keyword == "RUN" and "cargo build" in ins.args:
                for flag in ("--release", "--locked"):
                    if flag not in ins.args:
                        problems.add(where, f"line {ins.line}: cargo build without {flag}")
                for name in re.findall(r"--bin[= ]([\w-]+)", ins.args):
                    if name not in ws.binaries:
                        problems.add(where, f"line {ins.line}: --bin {name} is not a binary of the workspace")
            if ins.keyword == "RUN":
                for name in re.findall(r"target/(?:release|debug)/([\w-]+)", ins.args):
                    if name not in ws.binaries and not name.startswith("build"):
                        problems.add(
                            where,
                            f"line {ins.line}: target/release/{name} is not a binary of the workspace",
                        )
            if stage is not runtime:
                continue
            if ins.keyword == "ENV":
                pairs = re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", ins.args) or (
                    [(ins.words[0], " ".join(ins.words[1:]))] if ins.words else []
                )
                for key, value in pairs:
                    image.env[key] = value.strip('"')
            elif ins.keyword == "WORKDIR":
                image.workdir = posixpath.join(image.workdir, ins.args.strip())
            elif ins.keyword == "USER":
                image.user = ins.args.strip()
            elif ins.keyword == "CMD":
                image.cmd = list(ins.words)
            elif ins.keyword == "ENTRYPOINT":
                image.entrypoint = list(ins.words)
            elif ins.keyword == "EXPOSE":
                for word in ins.words:
                    image.expose.add(int(word.split("/")[0]))

    # Every binary shipped, and nothing else that claims to be one.
    shipped = {
        posixpath.basename(file)
        for file in image.files
        if posixpath.dirname(file) in IMAGE_PATH_DIRS
    }
    for name in sorted(ws.default_binaries() - shipped):
        problems.add(where, f"the runtime image does not ship the {name} binary on PATH")
    build_commands = " ".join(
        ins.args for stage in stages for ins in stage.instructions
        if ins.keyword == "RUN" and "cargo build" in ins.args
    )
    for name in sorted(shipped & set(ws.binaries)):
        for feature in ws.binaries[name].required_features:
            if "--all-features" not in build_commands and feature not in build_commands:
                problems.add(
                    where,
                    f"the image ships {name}, which needs feature {feature}, but cargo build does "
                    "not enable it",
                )

    # Runs as a non-root user given by number (Kubernetes' runAsNonRoot can verify only that).
    user = (image.user or "").split(":")[0]
    if not user:
        problems.add(where, "the runtime stage has no USER: it would run as root")
    elif not user.isdigit():
        problems.add(where, f"USER {image.user}: use a numeric UID")
    elif int(user) == 0:
        problems.add(where, "USER 0 is root")

    command = image.entrypoint + image.cmd
    if command:
        program = command[0]
        if not image.has_command(program):
            problems.add(where, f"CMD/ENTRYPOINT runs {program}, which the image does not ship")
        if program in ws.binaries:
            _check_command_config(
                where, ws.binaries[program], command[1:], image.workdir, {}, image, ws, problems
            )
    for key in image.env:
        if key in GENERIC_ENV:
            continue
        if not any(_reads_env(binary, key) for binary in ws.binaries.values()):
            problems.add(where, f"ENV {key}: no binary of the workspace reads it")

    # The build context must leave out the bulky and the private.
    for private in ("target/release/x", ".cache/x", ".git/HEAD"):
        if not ignore.excluded(private):
            problems.add(
                ws.rel(ws.root / ".dockerignore"),
                f"{private.split('/')[0]}/ is not excluded from the build context",
            )
    return image


def _check_copy(
    ins: Instruction,
    in_runtime: bool,
    stage_names: set[str],
    ws: Workspace,
    ignore: DockerIgnore,
    image: Image,
    where: str,
    problems: Problems,
) -> None:
    if len(ins.words) < 2:
        problems.add(where, f"line {ins.line}: {ins.keyword} needs a source and a destination")
        return
    *sources, dest = ins.words
    from_stage = ins.flags.get("from")
    if from_stage is not None and from_stage not in stage_names:
        problems.add(where, f"line {ins.line}: --from={from_stage} is not a stage of this file")
    for source in sources:
        if from_stage is None:
            _check_context_path(ins, source, ws, ignore, where, problems)
        if in_runtime:
            name = posixpath.basename(source.rstrip("/"))
            target = posixpath.join(dest, name) if dest.endswith("/") or len(sources) > 1 else dest
            image.files.add(posixpath.normpath(target))
            if from_stage is not None and posixpath.dirname(target) in IMAGE_PATH_DIRS:
                if name not in ws.binaries:
                    problems.add(
                        where,
                        f"line {ins.line}: {name} copied from the build stage is not a binary of "
                        "the workspace",
                    )


def _check_context_path(
    ins: Instruction, source: str, ws: Workspace, ignore: DockerIgnore, where: str, problems: Problems
) -> None:
    relative = posixpath.normpath(source).lstrip("/")
    path = ws.root / relative
    if any(char in source for char in "*?["):
        if not list(ws.root.glob(relative)):
            problems.add(where, f"line {ins.line}: COPY {source} matches nothing")
        return
    if not path.exists():
        problems.add(where, f"line {ins.line}: COPY source {source} does not exist")
        return
    if ignore.excluded(relative):
        problems.add(where, f"line {ins.line}: COPY source {source} is excluded by .dockerignore")
        return
    if path.is_dir():
        for file in tracked_files(ws.root, relative):
            if "tests" in Path(file).parts or "target" in Path(file).parts:
                continue
            if ignore.excluded(file):
                problems.add(
                    where,
                    f"line {ins.line}: {file} (under COPY source {source}) is excluded by "
                    ".dockerignore",
                )


def tracked_files(root: Path, under: str) -> list[str]:
    try:
        output = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--", under],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        files = [name for name in output.split("\0") if name]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    return [
        str(path.relative_to(root))
        for path in (root / under).rglob("*")
        if path.is_file() and "target" not in path.parts and "node_modules" not in path.parts
    ]


# --------------------------------------------------------------------------------------------
# config.ini files


def read_ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None, comment_prefixes=(";", "#"), inline_comment_prefixes=None, strict=True
    )
    parser.optionxform = str  # keep keys as written: librdkafka keys are case-sensitive
    parser.read_string(path.read_text(), source=str(path))
    return parser


def check_config_file(
    path: Path,
    binary: Binary,
    ws: Workspace,
    properties: dict[str, str],
    problems: Problems,
) -> configparser.ConfigParser | None:
    where = ws.rel(path)
    try:
        ini = read_ini(path)
    except (configparser.Error, OSError) as error:
        problems.add(where, f"cannot be read as INI: {error}".replace("\n", " "))
        return None
    for section in ini.sections():
        for key in ini[section]:
            if section in LIBRDKAFKA_SECTIONS:
                applies = properties.get(key)
                if applies is None:
                    problems.add(where, f"[{section}] {key} is not a librdkafka property")
                elif LIBRDKAFKA_SECTIONS[section] != "*" and applies not in (
                    "*",
                    LIBRDKAFKA_SECTIONS[section],
                ):
                    kind = {"C": "consumer", "P": "producer"}[applies]
                    problems.add(
                        where, f"[{section}] {key} is a {kind}-only librdkafka property"
                    )
            elif not any(f'"{section}"' in ws.text(path) for path in binary.scope):
                problems.add(where, f"[{section}]: {binary.name} reads no such section")
                break
            elif not ws.knows_setting(binary, section, key):
                problems.add(
                    where,
                    f"[{section}] {key}: {binary.name} does not read this setting "
                    "(not found in its Rust sources)",
                )
    return ini


# --------------------------------------------------------------------------------------------
# Compose


def load_compose(compose_bin: str, compose: Path, project_dir: Path, problems: Problems) -> dict:
    """The compose model as Compose itself resolves it, every profile enabled, with an empty
    environment so nothing from the caller's shell leaks into the result."""
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
    result = subprocess.run(
        [
            compose_bin,
            "--file",
            str(compose),
            "--project-directory",
            str(project_dir),
            "--profile",
            "*",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=environment,
        cwd=project_dir,
    )
    if result.returncode != 0:
        problems.add(str(compose), f"docker-compose config failed: {result.stderr.strip()}")
        return {}
    if result.stderr.strip():
        problems.add(str(compose), f"docker-compose config warns: {result.stderr.strip()}")
    # Interpolation would make what runs depend on the shell that runs it.
    raw = compose.read_text()
    for match in re.finditer(r"(?<!\$)\$(?!\$)\{?(\w+)", raw.replace("$$", "")):
        problems.add(
            str(compose),
            f"${match.group(1)}: variable interpolation cannot be checked statically",
        )
    return json.loads(result.stdout)


def parse_host_port(value: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"\[?([^\[\]]*?)\]?:(\d+)", value.strip())
    if not match:
        return None
    return match.group(1), int(match.group(2))


def parse_listeners(value: str) -> dict[str, tuple[str, int]]:
    listeners = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        match = re.fullmatch(r"([A-Za-z0-9_-]+)://(.*)", item)
        hostport = parse_host_port(match.group(2)) if match else None
        if not match or not hostport:
            raise ValueError(item)
        listeners[match.group(1)] = hostport
    return listeners


@dataclass
class Broker:
    service: str
    names: set[str]  # how other containers reach it
    listeners: dict[str, tuple[str, int]]
    advertised: dict[str, tuple[str, int]]
    controllers: set[str]

    def in_network_endpoints(self) -> set[tuple[str, int]]:
        return {
            (host, port)
            for name, (host, port) in self.advertised.items()
            if host in self.names and name not in self.controllers
        }


def service_names(name: str, service: dict) -> set[str]:
    names = {name}
    if service.get("container_name"):
        names.add(service["container_name"])
    if service.get("hostname"):
        names.add(service["hostname"])
    for network in (service.get("networks") or {}).values():
        names.update((network or {}).get("aliases") or [])
    return names


def check_broker(name: str, service: dict, where: str, problems: Problems) -> Broker | None:
    env = service.get("environment") or {}
    for key in REQUIRED_KAFKA_SETTINGS:
        if not env.get(key):
            problems.add(where, f"kafka service {name}: {key} is not set")
    if not env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") and not env.get(
        "KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS"
    ):
        problems.add(where, f"kafka service {name}: no controller quorum configured")
    roles = {role.strip() for role in (env.get("KAFKA_PROCESS_ROLES") or "").split(",")}
    if roles != {"broker", "controller"}:
        problems.add(where, f"kafka service {name}: KAFKA_PROCESS_ROLES should be broker,controller (single node)")
    cluster_id = env.get("CLUSTER_ID") or ""
    if cluster_id and not re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id):
        problems.add(where, f"kafka service {name}: CLUSTER_ID {cluster_id} is not a base64 UUID (22 characters)")
    for key in SINGLE_NODE_KAFKA_SETTINGS:
        if env.get(key) != "1":
            problems.add(where, f"kafka service {name}: {key} must be 1 on a single broker (is {env.get(key)})")
    if (env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") or "").lower() != "false":
        problems.add(
            where,
            f"kafka service {name}: set KAFKA_AUTO_CREATE_TOPICS_ENABLE=false (the services "
            "create their topics; a typo must not)",
        )
    try:
        listeners = parse_listeners(env.get("KAFKA_LISTENERS") or "")
        advertised = parse_listeners(env.get("KAFKA_ADVERTISED_LISTENERS") or "")
    except ValueError as bad:
        problems.add(where, f"kafka service {name}: cannot parse listener {bad}")
        return None
    protocol_map = {}
    for item in filter(None, (env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP") or "").split(",")):
        listener, _, protocol = item.partition(":")
        protocol_map[listener.strip()] = protocol.strip()
    controllers = {
        item.strip() for item in (env.get("KAFKA_CONTROLLER_LISTENER_NAMES") or "").split(",") if item.strip()
    }
    names = service_names(name, service)
    broker = Broker(name, names, listeners, advertised, controllers)

    ports = [listener_port for _, listener_port in listeners.values()]
    if len(ports) != len(set(ports)):
        problems.add(where, f"kafka service {name}: two listeners share a port: KAFKA_LISTENERS={env.get('KAFKA_LISTENERS')}")
    for listener in listeners:
        if listener not in protocol_map:
            problems.add(where, f"kafka service {name}: listener {listener} is missing from KAFKA_LISTENER_SECURITY_PROTOCOL_MAP")
    for controller in controllers:
        if controller not in listeners:
            problems.add(where, f"kafka service {name}: controller listener {controller} is not in KAFKA_LISTENERS")
        if controller in advertised:
            problems.add(where, f"kafka service {name}: controller listener {controller} must not be advertised")
    inter_broker = env.get("KAFKA_INTER_BROKER_LISTENER_NAME")
    if inter_broker and inter_broker not in advertised:
        problems.add(where, f"kafka service {name}: KAFKA_INTER_BROKER_LISTENER_NAME {inter_broker} is not advertised")
    for listener in listeners:
        if listener not in controllers and listener not in advertised:
            problems.add(where, f"kafka service {name}: listener {listener} is not advertised, so clients cannot use it")

    published = {}
    for port in service.get("ports") or []:
        published[int(port["published"])] = (port.get("host_ip") or "", int(port["target"]))
    targets = {target: host_port for host_port, (_, target) in published.items()}
    for listener, (host, port) in advertised.items():
        if listener not in listeners:
            problems.add(where, f"kafka service {name}: advertised listener {listener} is not in KAFKA_LISTENERS")
            continue
        listener_port = listeners[listener][1]
        if host in names:
            # Containers connect straight to the listener.
            if port != listener_port:
                problems.add(
                    where,
                    f"kafka service {name}: {listener} advertises {host}:{port} but listens on "
                    f"port {listener_port}; containers would connect to a port nobody listens on",
                )
        elif host in LOOPBACK_HOSTS:
            # Host clients come in through a published port that must lead to this listener.
            if port not in published:
                problems.add(
                    where,
                    f"kafka service {name}: {listener} advertises {host}:{port} for host clients "
                    f"but port {port} is not published",
                )
            else:
                host_ip, target = published[port]
                if target != listener_port:
                    problems.add(
                        where,
                        f"kafka service {name}: {listener} advertises {host}:{port}, published to "
                        f"container port {target}, but the listener is on port {listener_port}",
                    )
                if host_ip not in WILDCARD_HOSTS and host_ip not in LOOPBACK_HOSTS:
                    problems.add(
                        where,
                        f"kafka service {name}: port {port} is published on {host_ip}, which "
                        f"{host} does not reach",
                    )
        else:
            problems.add(
                where,
                f"kafka service {name}: {listener} advertises {host}:{port}, neither a name of "
                "the service on the compose network nor the host's loopback",
            )
    for target, host_port in targets.items():
        listener = next((n for n, (_, p) in listeners.items() if p == target), None)
        if listener is None:
            problems.add(where, f"kafka service {name}: published container port {target} is no listener")
        elif listener in controllers:
            problems.add(where, f"kafka service {name}: the controller listener must not be published")
        elif advertised.get(listener, ("", 0))[0] in names:
            problems.add(
                where,
                f"kafka service {name}: port {host_port} is published but its listener {listener} "
                f"advertises {advertised[listener][0]}:{advertised[listener][1]}, which host "
                "clients cannot resolve (the advertised-listeners trap)",
            )

    for voter in filter(None, (env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") or "").split(",")):
        match = re.fullmatch(r"(\d+)@(.+)", voter.strip())
        hostport = parse_host_port(match.group(2)) if match else None
        if not match or not hostport:
            problems.add(where, f"kafka service {name}: cannot parse quorum voter {voter}")
            continue
        if match.group(1) != env.get("KAFKA_NODE_ID"):
            problems.add(where, f"kafka service {name}: quorum voter {voter} is not node {env.get('KAFKA_NODE_ID')}")
        controller_ports = {listeners[c][1] for c in controllers if c in listeners}
        if hostport[0] not in names | LOOPBACK_HOSTS or hostport[1] not in controller_ports:
            problems.add(
                where,
                f"kafka service {name}: quorum voter {voter} is not this broker's controller "
                f"listener (port {sorted(controller_ports)})",
            )

    # The health check must talk to a listener that exists.
    test = (service.get("healthcheck") or {}).get("test") or []
    if not test or test[0] == "NONE":
        problems.add(where, f"kafka service {name}: no health check, so depends_on cannot wait for the broker")
    else:
        words = shlex.split(" ".join(test[1:])) if test[0] == "CMD-SHELL" else test[1:]
        servers = [
            words[i + 1] for i, word in enumerate(words[:-1]) if word in ("--bootstrap-server", "--bootstrap-controller")
        ]
        if not servers:
            problems.add(where, f"kafka service {name}: the health check names no --bootstrap-server")
        for server in servers:
            hostport = parse_host_port(server)
            ok = hostport is not None and (
                (hostport[0] in names and hostport in broker.in_network_endpoints())
                or (
                    hostport[0] in LOOPBACK_HOSTS
                    and hostport[1] in {p for n, (_, p) in listeners.items() if n not in controllers}
                )
            )
            if not ok:
                problems.add(where, f"kafka service {name}: health check bootstrap server {server} is no listener of the broker")
    return broker


def _reads_env(binary: Binary, var: str) -> bool:
    if var in binary.env:
        return True
    if var == "RUST_LOG":
        return binary.reads_rust_log
    return any(var.startswith(prefix) for prefix in binary.env_prefixes)


def _check_command_config(
    where: str,
    binary: Binary,
    args: list[str],
    workdir: str,
    mounts: dict[str, str],
    image: Image,
    ws: Workspace,
    problems: Problems,
) -> str | None:
    """Checks a binary's arguments; returns the config file path in the container."""
    positional = []
    for arg in args:
        if arg.startswith("-"):
            if arg.split("=")[0] not in binary.flags:
                problems.add(where, f"{binary.name} has no option {arg} (it has {sorted(binary.flags)})")
        else:
            positional.append(arg)
    if len(positional) > 1:
        problems.add(where, f"{binary.name} takes one config file, given {positional}")
    config = positional[0] if positional else None
    if config is None:
        match = re.search(r"default_value\s*=\s*\"([^\"]+\.ini)\"", binary.text)
        config = match.group(1) if match else None
    if config is None:
        problems.add(where, f"{binary.name} is started without its config file")
        return None
    in_container = posixpath.normpath(posixpath.join(workdir or "/", config))
    if in_container not in mounts and in_container not in image.files:
        problems.add(
            where,
            f"{binary.name} reads {in_container}, which is neither mounted nor copied into the image",
        )
    return in_container


@dataclass
class AppService:
    name: str
    binary: Binary
    env: dict[str, str]
    listen: dict[str, tuple[str, int]]  # "section key" -> effective (host, port)
    config: configparser.ConfigParser | None


def check_compose(
    model: dict,
    where: str,
    ws: Workspace,
    image: Image,
    dockerfile: Path,
    properties: dict[str, str],
    problems: Problems,
) -> None:
    services: dict[str, dict] = model.get("services") or {}
    if not services:
        problems.add(where, "no services")
        return

    # Which services run this project's image.
    built_images = {
        svc.get("image")
        for svc in services.values()
        if svc.get("build")
        and Path(svc["build"].get("context", "."), svc["build"].get("dockerfile", "Dockerfile")).resolve()
        == dockerfile.resolve()
    }
    for name, svc in services.items():
        build = svc.get("build")
        if build and (Path(build.get("context", "."), build.get("dockerfile", "Dockerfile"))).resolve() != dockerfile.resolve():
            problems.add(where, f"service {name} builds {build.get('dockerfile')}, not {ws.rel(dockerfile)}")
    if not built_images:
        problems.add(where, f"no service builds {ws.rel(dockerfile)}")
    if None in built_images:
        problems.add(where, "a service builds the project image without naming it (image:)")
    app_names = [name for name, svc in services.items() if svc.get("image") in built_images]

    # Pinned images.
    for name, svc in services.items():
        ref = svc.get("image") or ""
        if svc.get("image") in built_images:
            continue
        tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else ""
        if not tag or tag == "latest":
            problems.add(where, f"service {name}: image {ref} has no pinned tag")

    # Bind mounts must exist.
    for name, svc in services.items():
        for volume in svc.get("volumes") or []:
            if volume.get("type") == "bind" and not Path(volume["source"]).exists():
                problems.add(where, f"service {name}: bind-mount source {ws.rel(volume['source'])} does not exist")

    # The broker.
    brokers = {}
    for name, svc in services.items():
        if (svc.get("image") or "").startswith("apache/kafka:"):
            broker = check_broker(name, svc, where, problems)
            if broker:
                brokers[name] = broker
    if app_names and not brokers:
        problems.add(where, "no apache/kafka broker service")

    apps: dict[str, AppService] = {}
    for name in app_names:
        app = _check_app_service(name, services[name], services, brokers, where, ws, image, properties, problems)
        if app:
            apps[name] = app

    _check_prometheus(services, apps, where, ws, problems)
    _check_grafana(services, where, ws, problems)

    for port in sorted(image.expose):
        if not any(port == p for app in apps.values() for _, p in app.listen.values()):
            problems.add(ws.rel(dockerfile), f"EXPOSE {port}: no service listens there")


def _check_app_service(
    name: str,
    svc: dict,
    services: dict[str, dict],
    brokers: dict[str, Broker],
    where: str,
    ws: Workspace,
    image: Image,
    properties: dict[str, str],
    problems: Problems,
) -> AppService | None:
    label = f"service {name}"
    command = (svc.get("entrypoint") or image.entrypoint) + (svc.get("command") or image.cmd)
    if not command:
        problems.add(where, f"{label}: no command")
        return None
    program = command[0]
    binary = ws.binaries.get(program)
    if binary is None:
        problems.add(
            where,
            f"{label}: command {program} is not a binary of the workspace "
            f"({', '.join(sorted(ws.binaries))})",
        )
        return None
    if not image.has_command(program):
        problems.add(where, f"{label}: the image does not ship {program} on PATH")
    # `docker exec -it <name> <name> config/config.ini` only works if these agree.
    if name != program:
        problems.add(where, f"{label} runs {program}: name the service after its binary")
    if svc.get("container_name") != name:
        problems.add(
            where,
            f"{label}: container_name must be {name}, so that `docker exec -it {name} {program} "
            "config/config.ini` works",
        )

    mounts = {
        volume["target"]: volume["source"]
        for volume in svc.get("volumes") or []
        if volume.get("type") == "bind"
    }
    workdir = svc.get("working_dir") or image.workdir
    config_path = _check_command_config(
        f"{where}: {label}", binary, command[1:], workdir, mounts, image, ws, problems
    )
    ini = None
    if config_path in mounts:
        source = Path(mounts[config_path])
        own = binary.crate_dir / "config" / "config.ini"
        if source.resolve() != own.resolve() and source.is_file():
            # A different file is fine (a fixture, a site config), but not another service's.
            for other in ws.binaries.values():
                if other is not binary and source.resolve() == (other.crate_dir / "config/config.ini").resolve():
                    problems.add(where, f"{label} mounts {other.crate}'s config.ini, not its own")
        if source.is_file():
            ini = check_config_file(source, binary, ws, properties, problems)
    elif config_path in image.files:
        own = binary.crate_dir / "config" / "config.ini"
        if own.is_file():
            ini = check_config_file(own, binary, ws, properties, problems)

    # Environment: only what the binary reads.
    env: dict[str, str] = dict(image.env)
    for var, value in (svc.get("environment") or {}).items():
        if value is None:
            problems.add(where, f"{label}: {var} takes its value from the shell running compose")
            continue
        env[var] = value
        if not _reads_env(binary, var):
            problems.add(where, f"{label}: {var} is not read by {program}")
            continue
        for prefix in binary.env_prefixes:
            if var.startswith(prefix) and var not in binary.env:
                key = var[len(prefix) :].lower().replace("_", ".")
                if key not in properties:
                    problems.add(where, f"{label}: {var} sets {key}, which is not a librdkafka property")
        setting = binary.env.get(var)
        if setting:
            _check_setting_value(where, label, var, setting, value, problems)

    def effective(section: str, key: str) -> tuple[str | None, str]:
        for var, setting in binary.env.items():
            if setting == (section, key) and var in env:
                return env[var], var
        if ini is not None and ini.has_option(section, key):
            return ini.get(section, key), f"[{section}] {key}"
        return None, f"[{section}] {key}"

    # Kafka: the bootstrap servers must be an advertised in-network listener.
    bootstrap, source = effective("default", "bootstrap.servers")
    if "LIBRDKAFKA_BOOTSTRAP_SERVERS" in env and "KAFKA_BOOTSTRAP_SERVERS" not in env:
        bootstrap, source = env["LIBRDKAFKA_BOOTSTRAP_SERVERS"], "LIBRDKAFKA_BOOTSTRAP_SERVERS"
    if bootstrap is None:
        problems.add(where, f"{label}: no bootstrap.servers (set KAFKA_BOOTSTRAP_SERVERS)")
    else:
        endpoints = {endpoint for broker in brokers.values() for endpoint in broker.in_network_endpoints()}
        for server in filter(None, (part.strip() for part in bootstrap.split(","))):
            hostport = parse_host_port(server)
            if hostport not in endpoints:
                hint = (
                    " (loopback inside a container is the container itself)"
                    if hostport and hostport[0] in LOOPBACK_HOSTS
                    else ""
                )
                problems.add(
                    where,
                    f"{label}: {source}={server} is not an advertised in-network listener of the "
                    f"broker ({', '.join(f'{h}:{p}' for h, p in sorted(endpoints)) or 'none'}){hint}",
                )
    for broker_name in brokers:
        condition = ((svc.get("depends_on") or {}).get(broker_name) or {}).get("condition")
        if condition != "service_healthy":
            problems.add(where, f"{label}: depends_on {broker_name} should wait for service_healthy")
    if not svc.get("restart") or svc.get("restart") == "no":
        problems.add(where, f"{label}: no restart policy")

    # Topic replication cannot exceed the number of brokers.
    replication, rsource = effective("topics", "replication_factor")
    if replication is not None and replication.strip().isdigit() and brokers and int(replication) > len(brokers):
        problems.add(where, f"{label}: {rsource}={replication} but there is only one broker")

    # Listen addresses: what the binary reads, from env or its config file.
    listen: dict[str, tuple[str, int]] = {}
    listen_keys = sorted({setting for setting in binary.env.values() if setting and setting[1].endswith("listen")})
    if ini is not None:
        for section in ini.sections():
            for key in ini[section]:
                if key.endswith("listen") and (section, key) not in listen_keys:
                    listen_keys.append((section, key))
    for section, key in listen_keys:
        value, vsource = effective(section, key)
        if value is None:
            continue
        hostport = parse_host_port(value)
        if hostport is None:
            problems.add(where, f"{label}: {vsource}={value} is not host:port")
            continue
        listen[f"[{section}] {key}"] = hostport
        if ini is not None and ini.has_option(section, key):
            default = parse_host_port(ini.get(section, key))
            if default and default[1] != hostport[1]:
                problems.add(
                    where,
                    f"{label}: {vsource} uses port {hostport[1]} but the config file's default "
                    f"[{section}] {key} is port {default[1]}; keep the documented port",
                )
    listen_ports = {port: host for host, port in listen.values()}

    for port in svc.get("ports") or []:
        target, published = int(port["target"]), int(port["published"])
        if target not in listen_ports:
            problems.add(
                where,
                f"{label}: publishes container port {target}, but {program} listens on "
                f"{sorted(listen_ports) or 'no port'}",
            )
        elif listen_ports[target] not in WILDCARD_HOSTS:
            problems.add(
                where,
                f"{label}: publishes port {target}, but {program} listens on "
                f"{listen_ports[target]}:{target}, unreachable from outside the container",
            )
        if published != target:
            problems.add(where, f"{label}: publishes {published}:{target}; keep the documented port on the host")

    # Health check: a port it listens on, a route it serves, a program the image has.
    test = (svc.get("healthcheck") or {}).get("test") or []
    if not test or test[0] == "NONE":
        problems.add(where, f"{label}: no health check")
    else:
        words = shlex.split(" ".join(test[1:])) if test[0] == "CMD-SHELL" else list(test[1:])
        if words and not image.has_command(words[0]):
            problems.add(where, f"{label}: the health check runs {words[0]}, which the image does not ship")
        if words and posixpath.basename(words[0]) == "http-probe":
            port = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
            path = words[2] if len(words) > 2 else "/healthz"
            if port not in listen_ports:
                problems.add(where, f"{label}: the health check probes port {port}, but {program} listens on {sorted(listen_ports)}")
            if path not in binary.routes:
                problems.add(where, f"{label}: the health check asks for {path}, which {program} does not serve")
        else:
            for url in re.findall(r"https?://[^\s\"']+", " ".join(words)):
                _check_url(where, label, url, {name: (binary, listen_ports)}, name_of_self=True, problems=problems)

    return AppService(name, binary, env, listen, ini)


def _check_setting_value(
    where: str, label: str, var: str, setting: tuple[str, str], value: str, problems: Problems
) -> None:
    section, key = setting
    if key.endswith("listen"):
        hostport = parse_host_port(value)
        try:
            ok = hostport is not None and (ipaddress.ip_address(hostport[0]) is not None)
        except ValueError:
            ok = False
        if not ok:
            problems.add(where, f"{label}: {var}={value} is not an IP address and port")
    elif key in ("partitions", "replication_factor", "history_limit") or key.endswith("_ms"):
        if not value.strip().isdigit():
            problems.add(where, f"{label}: {var}={value} is not a whole number")


def _check_url(
    where: str,
    label: str,
    url: str,
    targets: dict[str, tuple[Binary, dict[int, str]]],
    name_of_self: bool,
    problems: Problems,
) -> None:
    match = re.match(r"https?://([^/:]+)(?::(\d+))?(/[^?#]*)?", url)
    if not match:
        return
    host, port, path = match.group(1), int(match.group(2) or 80), match.group(3) or "/"
    if name_of_self and host in LOOPBACK_HOSTS:
        (binary, ports), = targets.values()
    elif host in targets:
        binary, ports = targets[host]
    else:
        return
    if port not in ports:
        problems.add(where, f"{label}: {url}: {binary.name} listens on {sorted(ports)}")
    if path not in binary.routes:
        problems.add(where, f"{label}: {url}: {binary.name} does not serve {path}")


def _mount_source(svc: dict, target: str) -> Path | None:
    for volume in svc.get("volumes") or []:
        if volume.get("type") == "bind" and volume.get("target") == target:
            return Path(volume["source"])
    return None


def _check_prometheus(
    services: dict[str, dict], apps: dict[str, AppService], where: str, ws: Workspace, problems: Problems
) -> None:
    for name, svc in services.items():
        if not (svc.get("image") or "").startswith("prom/prometheus"):
            continue
        config = _mount_source(svc, "/etc/prometheus/prometheus.yml")
        if config is None:
            problems.add(where, f"service {name}: mounts no /etc/prometheus/prometheus.yml")
            continue
        if not config.is_file():
            continue  # reported with the bind mounts
        cwhere = ws.rel(config)
        try:
            prometheus = yaml.safe_load(config.read_text()) or {}
        except yaml.YAMLError as error:
            problems.add(cwhere, f"not YAML: {error}")
            continue
        scraped: set[str] = set()
        for job in prometheus.get("scrape_configs") or []:
            path = job.get("metrics_path", "/metrics")
            for static in job.get("static_configs") or []:
                for target in static.get("targets") or []:
                    hostport = parse_host_port(target)
                    if hostport is None:
                        problems.add(cwhere, f"job {job.get('job_name')}: target {target} is not host:port")
                        continue
                    host, port = hostport
                    owner = next(
                        (s for s, definition in services.items() if host in service_names(s, definition)),
                        None,
                    )
                    if owner is None:
                        problems.add(cwhere, f"job {job.get('job_name')}: {host} is no service of the compose file")
                        continue
                    app = apps.get(owner)
                    if app is None:
                        continue
                    scraped.add(owner)
                    ports = {p: h for h, p in app.listen.values()}
                    if port not in ports:
                        problems.add(
                            cwhere,
                            f"job {job.get('job_name')}: {target}, but {app.binary.name} listens on {sorted(ports)}",
                        )
                    elif ports[port] not in WILDCARD_HOSTS:
                        problems.add(
                            cwhere,
                            f"job {job.get('job_name')}: {app.binary.name} listens on {ports[port]}:{port}, "
                            "unreachable from the Prometheus container",
                        )
                    if path not in app.binary.routes:
                        problems.add(cwhere, f"job {job.get('job_name')}: {app.binary.name} does not serve {path}")
        for app_name in sorted(set(apps) - scraped):
            problems.add(cwhere, f"no job scrapes {app_name}")


def _check_grafana(services: dict[str, dict], where: str, ws: Workspace, problems: Problems) -> None:
    for name, svc in services.items():
        if not (svc.get("image") or "").startswith("grafana/grafana"):
            continue
        provisioning = _mount_source(svc, "/etc/grafana/provisioning")
        if provisioning is None or not provisioning.is_dir():
            problems.add(where, f"service {name}: no provisioning directory mounted at /etc/grafana/provisioning")
            continue
        uids: set[str] = set()
        for file in sorted((provisioning / "datasources").glob("*.y*ml")):
            for source in (yaml.safe_load(file.read_text()) or {}).get("datasources") or []:
                uids.add(source.get("uid", ""))
                match = re.match(r"https?://([^/:]+):(\d+)", source.get("url", ""))
                if match and not any(match.group(1) in service_names(s, d) for s, d in services.items()):
                    problems.add(ws.rel(file), f"data source {source.get('name')}: {match.group(1)} is no service")
        for file in sorted((provisioning / "dashboards").glob("*.y*ml")):
            for provider in (yaml.safe_load(file.read_text()) or {}).get("providers") or []:
                path = (provider.get("options") or {}).get("path", "")
                source = next(
                    (
                        Path(volume["source"]) / posixpath.relpath(path, volume["target"])
                        for volume in svc.get("volumes") or []
                        if volume.get("type") == "bind"
                        and (path == volume["target"] or path.startswith(volume["target"].rstrip("/") + "/"))
                    ),
                    None,
                )
                if source is None or not source.is_dir():
                    problems.add(ws.rel(file), f"provider {provider.get('name')}: {path} is not a mounted directory")
                    continue
                boards = sorted(source.glob("*.json"))
                if not boards:
                    problems.add(ws.rel(file), f"provider {provider.get('name')}: no dashboard JSON in {ws.rel(source)}")
                for board in boards:
                    _check_board(board, uids, ws, problems)


def _check_board(path: Path, uids: set[str], ws: Workspace, problems: Problems) -> None:
    try:
        board = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        problems.add(ws.rel(path), f"not JSON: {error}")
        return
    for key in ("uid", "title", "panels"):
        if key not in board:
            problems.add(ws.rel(path), f"no {key}")

    def walk(node: object) -> None:
        if isinstance(node, dict):
            source = node.get("datasource")
            if isinstance(source, dict):
                uid = source.get("uid", "")
                if uid and not uid.startswith("$") and uid not in uids and uid != "-- Grafana --":
                    problems.add(ws.rel(path), f"data source uid {uid} is not provisioned ({sorted(uids)})")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(board)


def export_builder_tree(root: Path, dockerfile: Path, dockerignore: Path, out: Path) -> None:
    """Writes what the `cargo build` stage of the Dockerfile sees in its WORKDIR: its COPY
    instructions applied to the build context as .dockerignore filters it. `cargo check` in that
    tree is the nearest thing to `docker build` without an engine."""
    ignore = DockerIgnore(dockerignore)
    _, stages = parse_dockerfile(dockerfile)
    stage = next(
        s for s in stages if any(i.keyword == "RUN" and "cargo build" in i.args for i in s.instructions)
    )
    workdir = "/"
    for ins in stage.instructions:
        if ins.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, ins.args.strip())
        if ins.keyword != "COPY" or "from" in ins.flags:
            continue
        *sources, dest = ins.words
        dest = posixpath.normpath(posixpath.join(workdir, dest))
        for source in sources:
            relative = posixpath.normpath(source).lstrip("/")
            base = posixpath.relpath(dest, workdir)
            if not (root / relative).is_dir():
                target = base if not (dest.endswith("/") or len(sources) > 1 or base == ".") else posixpath.join(base, posixpath.basename(relative))
                files = [(relative, target)] if not ignore.excluded(relative) else []
            else:
                files = []
                for path in sorted((root / relative).rglob("*")):
                    rel = str(path.relative_to(root))
                    if path.is_file() and not ignore.excluded(rel):
                        files.append((rel, posixpath.join(base, str(path.relative_to(root / relative)))))
            for rel, target in files:
                destination = out / target
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes((root / rel).read_bytes())


# --------------------------------------------------------------------------------------------


def run(
    root: Path,
    compose: Path,
    dockerfile: Path,
    dockerignore: Path,
    compose_bin: str,
    librdkafka_config: Path,
    project_dir: Path | None = None,
    dockerfile_as: Path | None = None,
) -> list[str]:
    """All problems found. `dockerfile_as`: where the compose file expects the Dockerfile, when
    `dockerfile` is a copy elsewhere (the tests check modified copies)."""
    problems = Problems()
    ws = Workspace(root, problems)
    if not librdkafka_config.is_file():
        problems.add(str(librdkafka_config), "librdkafka's CONFIGURATION.md not found")
        properties = {}
    else:
        properties = librdkafka_properties(librdkafka_config)
    ignore = DockerIgnore(dockerignore)
    image = check_dockerfile(dockerfile, ws, ignore, problems)
    model = load_compose(compose_bin, compose, project_dir or root, problems)
    if model:
        check_compose(
            model, ws.rel(compose), ws, image, dockerfile_as or dockerfile, properties, problems
        )
    return problems.items


def main() -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=here.parent, help="the Cargo workspace")
    parser.add_argument("--compose", type=Path, help="default: ROOT/docker-compose.yml")
    parser.add_argument("--dockerfile", type=Path, help="default: ROOT/docker/Dockerfile")
    parser.add_argument("--dockerignore", type=Path, help="default: ROOT/.dockerignore")
    parser.add_argument("--compose-bin", default="docker-compose", help="a Docker Compose v2+ binary")
    parser.add_argument("--librdkafka-config", type=Path, help="librdkafka's CONFIGURATION.md")
    parser.add_argument(
        "--export-builder-tree", type=Path, metavar="DIR",
        help="only write the files the cargo build stage sees into DIR, check nothing",
    )
    args = parser.parse_args()
    root = args.root.resolve()
    if args.export_builder_tree:
        export_builder_tree(
            root,
            (args.dockerfile or root / "docker/Dockerfile").resolve(),
            (args.dockerignore or root / ".dockerignore").resolve(),
            args.export_builder_tree,
        )
        return 0
    if args.librdkafka_config is None:
        parser.error("--librdkafka-config is required")
    problems = run(
        root,
        (args.compose or root / "docker-compose.yml").resolve(),
        (args.dockerfile or root / "docker/Dockerfile").resolve(),
        (args.dockerignore or root / ".dockerignore").resolve(),
        args.compose_bin,
        args.librdkafka_config,
    )
    for problem in problems:
        print(problem)
    if problems:
        print(f"check_consistency: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check_consistency: compose file, Dockerfile and workspace agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
