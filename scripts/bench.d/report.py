#!/usr/bin/env python3
"""Renders the results of scripts/bench (NAME<TAB>JSON lines) as one table: figure, measured,
target, ratio, verdict. Targets are those of the performance issue; a miss is marked MISSED."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side  # noqa: E402


def main():
    path, mode, duration = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = {}
    with open(path) as results:
        for line in results:
            name, data = line.rstrip("\n").split("\t", 1)
            rows[name] = json.loads(data)

    def get(name):
        row = rows.get(name)
        return None if row is None or "skipped" in row else row

    def why(name):
        row = rows.get(name)
        return row["skipped"] if row and "skipped" in row else "not measured"

    table = []  # (figure, measured, target, ratio, verdict)

    def add(figure, measured, target="", ratio="", verdict=""):
        table.append((figure, measured, target, ratio, verdict))

    def verdict(ok):
        return "met" if ok else "MISSED"

    def lat(row):
        return f"p50 {row['p50_ms']:.2f} / p99 {row['p99_ms']:.2f} / p99.9 {row['p999_ms']:.2f} / max {row['max_ms']:.1f} ms"

    def problems(row):
        bad = [f"{row[key]} {key}" for key in ("errors", "timeouts", "failed", "dropped") if row.get(key)]
        return f" [{', '.join(bad)}]" if bad else ""

    def cpu(row):
        procs = row.get("processes", {})
        parts = [f"{name} {p['cpu_pct']:.0f}%" for name, p in procs.items()]
        parts.append(f"bench {row['bench_cpu_pct']:.0f}%")
        return f"CPU (of one core): {', '.join(parts)}; machine {row['machine_busy_pct']:.0f}% busy"

    machine = rows.get("machine", {})
    end = rows.get("machine_end", {})

    # Kafka's own figures.
    e2e = get("kafka_e2e")
    if e2e:
        add("Kafka EndToEndLatency, one way (100 B, acks=all)",
            f"p50 {e2e['p50_ms']:g} / p99 {e2e['p99_ms']:g} / p99.9 {e2e['p999_ms']:g} ms (avg {e2e['avg_ms']:.2f})",
            "baseline")
    else:
        add("Kafka EndToEndLatency", why("kafka_e2e"), "baseline")
    one_way = get("rdkafka_e2e")
    if one_way:
        add("Kafka one way through librdkafka (bench e2e, 100 B, linger 0)",
            f"p50 {one_way['p50_ms']:.3f} / p99 {one_way['p99_ms']:.2f} / p99.9 {one_way['p999_ms']:.2f} ms (mean {one_way['mean_ms']:.2f})",
            "baseline")
    else:
        add("Kafka one way through librdkafka", why("rdkafka_e2e"), "baseline")
    produce = get("kafka_produce")
    if produce:
        add("Kafka ProducerPerformance (100 B, acks=all)", f"{produce['rate']:,.0f} msgs/s (p50 {produce['p50_ms']:g} ms)", "baseline")
    else:
        add("Kafka ProducerPerformance", why("kafka_produce"), "baseline")

    # Low load. Kafka's EndToEndLatency prints whole milliseconds, rounded down, so its p50 is
    # 0 or 1 on loopback; the target uses the microsecond one-way p50 of `bench e2e` when there is
    # one (same measurement: one message produced, then consumed), else the Java tool's.
    base_p50 = one_way["p50_ms"] if one_way else (e2e["p50_ms"] if e2e else None)
    base_name = "bench e2e" if one_way else "EndToEndLatency"
    label = "Round trip, low load (library, 1 in flight, defaults)"
    row = get("low")
    if not row:
        add(label, why("low"), "", "", "MISSED")
    else:
        limit = 2 * base_p50 + 1 if base_p50 is not None else None
        ratio = f"p50 = {row['p50_ms'] / base_p50:.1f}x one-way p50" if base_p50 else ""
        ok = (limit is None or row["p50_ms"] <= limit) and row["p99_ms"] <= 20 and not problems(row)
        add(label, lat(row) + problems(row),
            (f"p50 <= 2 x {base_p50:.2f} ({base_name}) + 1 = {limit:.2f} ms; " if limit else "") + "p99 <= 20 ms",
            ratio, verdict(ok))

    def steps(prefix):
        found = sorted(((int(name[len(prefix):]), row) for name, row in rows.items()
                        if name.startswith(prefix) and "throughput" in row))
        return "; ".join(f"{c}: {row['throughput']:,.0f}/s p99 {row['p99_ms']:.0f} ms" for c, row in found)

    # Library path.
    add("Library path, concurrency search (in flight: round trips/s, p99)", steps("lib_step_") or why("lib_step_32"))
    lib = get("lib_sustained")
    if lib:
        ok = lib["throughput"] >= 10_000 and lib["p99_ms"] <= 100 and not problems(lib)
        ratio = f"{lib['throughput'] / produce['rate'] * 100:.1f}% of Kafka's one-way produce rate" if produce else ""
        add(f"Library path, sustained {lib['duration_s']:.0f} s at {lib['concurrency']} in flight",
            f"{lib['throughput']:,.0f} round trips/s (slowest second {lib['throughput_min_1s']:,}); {lat(lib)}{problems(lib)}",
            ">= 10,000/s with p99 <= 100 ms", ratio, verdict(ok))
        add("  where the CPU went", cpu(lib))
    else:
        add("Library path, sustained", why("lib_sustained"), ">= 10,000/s with p99 <= 100 ms", "", "MISSED")

    # Spring Kafka, NestJS and ours on the same broker.
    side_by_side.targets(rows, add, verdict)

    # Exactly-once against at-least-once, the same worker in the same run.
    for in_flight in (1, 256):
        alo, eos = get(f"delivery_alo_{in_flight}"), get(f"delivery_eos_{in_flight}")
        label = f"Exactly-once worker against at-least-once, {in_flight} in flight"
        if not (alo and eos):
            add(label, why(f"delivery_eos_{in_flight}") if alo else why(f"delivery_alo_{in_flight}"), "", "", "MISSED")
            continue
        measured = (f"exactly-once {eos['throughput']:,.0f}/s, {lat(eos)}{problems(eos)}; "
                    f"at-least-once {alo['throughput']:,.0f}/s, {lat(alo)}{problems(alo)}")
        if in_flight == 1:
            extra = eos["p50_ms"] - alo["p50_ms"]
            add(label, measured, "p50 at most 5 ms above at-least-once", f"p50 +{extra:.2f} ms",
                verdict(extra <= 5 and not problems(eos)))
        else:
            share = eos["throughput"] / alo["throughput"] if alo["throughput"] else 0
            add(label, measured, "throughput >= half of at-least-once", f"{share:.2f}x",
                verdict(share >= 0.5 and not problems(eos)))

    # HTTP.
    add("HTTP API, concurrency search (in flight: round trips/s, p99)", steps("http_step_") or why("http_step_16"))
    http = get("http_sustained")
    if http:
        ok = http["throughput"] >= 3_000 and http["p99_ms"] <= 100 and not problems(http)
        ratio = f"{http['throughput'] / lib['throughput'] * 100:.0f}% of the library path" if lib else ""
        add(f"HTTP API, sustained {http['duration_s']:.0f} s at {http['concurrency']} in flight",
            f"{http['throughput']:,.0f} round trips/s (slowest second {http['throughput_min_1s']:,}); {lat(http)}{problems(http)}",
            ">= 3,000/s with p99 <= 100 ms", ratio, verdict(ok))
        add("  where the CPU went", cpu(http))
        same = get("lib_at_http")
        if same:
            share = http["throughput"] / same["throughput"] if same["throughput"] else 0
            add(f"HTTP API against the library path, both {same['concurrency']} in flight",
                f"HTTP {http['throughput']:,.0f}/s; library {same['throughput']:,.0f}/s (over {same['duration_s']:.0f} s)",
                ">= half of the library path", f"{share:.2f}x", verdict(share >= 0.5))
        else:
            add("HTTP API against the library path", why("lib_at_http"), ">= half of the library path", "", "MISSED")
    else:
        add("HTTP API, sustained", why("http_sustained"), ">= 3,000/s with p99 <= 100 ms", "", "MISSED")

    # Drain.
    rust, python = get("drain_rust"), get("drain_python")
    if rust and python and python["rate"] > 0:
        ratio = rust["rate"] / python["rate"]
        add(f"Backlog drain, {rust['expected']:,} plain-text requests, 3 partitions",
            f"ours {rust['rate']:,.0f}/s ({rust['span_s']:.2f} s); Python {python['rate']:,.0f}/s ({python['span_s']:.1f} s)"
            + ("" if rust["complete"] and python["complete"] else " [INCOMPLETE]"),
            ">= 20x Python", f"{ratio:.1f}x", verdict(ratio >= 20 and rust["complete"] and python["complete"]))
    else:
        add("Backlog drain", f"ours: {rust['rate']:,.0f}/s" if rust else why("drain_rust"),
            ">= 20x Python", why("drain_python") if not python else "", "MISSED")

    # A service that waits on I/O.
    concurrent, serial = get("iobound_concurrent"), get("iobound_serial")
    if concurrent:
        kept = concurrent["order_violations"] == 0 and concurrent["errors"] == 0
        ratio = f"{concurrent['throughput'] / serial['throughput']:.0f}x serial" if serial and serial["throughput"] else ""
        add(f"I/O-bound service ({concurrent['wait_ms']:.0f} ms wait), {concurrent['concurrency']} in flight, "
            f"{concurrent['partitions']} partitions, one worker, keyed",
            f"{concurrent['throughput']:,.0f}/s, {concurrent['order_violations']} per-key order violations"
            + problems(concurrent),
            ">= 5,000/s, per-key order kept", ratio, verdict(concurrent["throughput"] >= 5000 and kept))
    else:
        add("I/O-bound service, keyed", why("iobound_concurrent"), ">= 5,000/s", "", "MISSED")
    if serial:
        add(f"same, one request at a time per partition (as NestJS, Spring without concurrency)",
            f"{serial['throughput']:,.0f}/s" + problems(serial),
            f"<= {serial['partitions'] * 1000 / serial['wait_ms']:.0f}/s (partitions / wait)", "", "baseline")
    else:
        add("I/O-bound service, serial per partition", why("iobound_serial"), "baseline")

    # Scaling.
    scale = [(n, get(f"scale_{n}")) for n in (1, 2, 4)]
    base = scale[0][1]
    parts = []
    for n, row in scale:
        if row:
            rel = f" ({row['throughput'] / base['throughput']:.2f}x)" if base and base["throughput"] else ""
            parts.append(f"{n}: {row['throughput']:,.0f}/s p99 {row['p99_ms']:.0f} ms{rel}")
        else:
            parts.append(f"{n}: {why(f'scale_{n}')}")
    add("Scaling, partitions = worker replicas", "; ".join(parts), "", "vs 1 partition, 1 replica")

    # Memory.
    memory = get("dashboard_memory")
    if memory:
        add(f"Dashboard RSS, {memory['history']:,} requests in its history",
            f"{memory['rss_mib']:.1f} MiB (peak {memory['peak_mib']:.1f} MiB)", "<= 64 MiB", "",
            verdict(memory["rss_mib"] <= 64) if memory["history"] >= 100_000 else verdict(memory["rss_mib"] <= 64) + " (short history)")
    else:
        add("Dashboard RSS", why("dashboard_memory"), "<= 64 MiB", "", "MISSED")
    attack = get("dashboard_attack")
    if attack:
        flood = attack["flood"]
        add(f"Dashboard peak RSS under attack ({flood['big_replies']} replies of 900 KB, "
            f"{flood['garbage_replies']:,} garbage replies, {flood['long_id_requests']} requests and "
            "replies with 100 KB correlation IDs; 8 clients loading the home page; history_limit 10,000)",
            f"{attack['peak_mib']:.1f} MiB peak; home page {attack['page_bytes'] / 1024:.0f} KiB",
            "<= 64 MiB", "", verdict(attack["peak_mib"] <= 64))
    else:
        add("Dashboard peak RSS under attack", why("dashboard_attack"), "<= 64 MiB", "", "MISSED")
    restart = get("dashboard_attack_restart")
    if restart:
        add("Dashboard peak RSS after a restart that rebuilds its history from that log",
            f"{restart['peak_mib']:.1f} MiB peak", "<= 64 MiB", "", verdict(restart["peak_mib"] <= 64))
    else:
        add("Dashboard peak RSS after a restart under attack", why("dashboard_attack_restart"),
            "<= 64 MiB", "", "MISSED")
    workers = []
    for name, label in (("lib_sustained", "invoice-generator"), ("score", "score-calculator")):
        row = get(name)
        peak = row and row.get("processes", {}).get("worker", {}).get("peak_rss_mib")
        if peak:
            workers.append((label, peak, row["throughput"]))
    if workers:
        add("Worker peak RSS under load",
            "; ".join(f"{label} {peak:.1f} MiB at {rate:,.0f}/s" for label, peak, rate in workers),
            "<= 32 MiB each", "", verdict(all(peak <= 32 for _, peak, _ in workers)))
    else:
        add("Worker peak RSS", "not measured", "<= 32 MiB each", "", "MISSED")

    # Start-up.
    starts = sorted(row["startup_ms"] for name, row in rows.items() if name.startswith("startup_") and "startup_ms" in row)
    if starts:
        median = starts[len(starts) // 2]
        add("Worker start to first reply (broker up)",
            f"median {median:.0f} ms, max {starts[-1]:.0f} ms ({len(starts)} runs)", "<= 2,000 ms", "",
            verdict(starts[-1] <= 2000))
    else:
        add("Worker start to first reply", why("startup_1"), "<= 2,000 ms", "", "MISSED")

    # Profiles.
    for profile in ("bulk",):
        low_p, high_p = get(f"profile_{profile}_low"), get(f"profile_{profile}_high")
        if low_p or high_p:
            text = []
            if low_p:
                text.append(f"1 in flight p50 {low_p['p50_ms']:.2f} / p99 {low_p['p99_ms']:.2f} ms")
            if high_p:
                text.append(f"{high_p['concurrency']} in flight {high_p['throughput']:,.0f}/s p99 {high_p['p99_ms']:.0f} ms")
            add(f"Profile {profile}", "; ".join(text))

    # Render.
    headers = ("figure", "measured", "target", "ratio", "verdict")
    width = [max(len(str(row[i])) for row in table + [headers]) for i in range(5)]
    width[1] = min(width[1], 100)
    line = "+" + "+".join("-" * (w + 2) for w in width) + "+"
    print()
    print(f"Performance report ({mode} run; sustained runs {duration} s)")
    if machine:
        print(f"machine: {machine.get('cpus')} CPUs ({machine.get('model')}), {machine.get('mem_gib')} GiB, "
              f"Linux {machine.get('kernel')}; Kafka {machine.get('kafka')} single broker on {machine.get('bootstrap')}; "
              f"rev {machine.get('rev')}")
        print(f"load average before: {' '.join(machine.get('loadavg', []))}; after: {' '.join(end.get('loadavg', []))}")
    print(line)
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, width)) + " |")
    print(line)
    for row in table:
        cells = [str(cell) for cell in row]
        # Wrap the measured column so the table stays readable.
        measured = cells[1]
        chunks = []
        while len(measured) > width[1]:
            cut = measured.rfind(" ", 0, width[1])
            cut = cut if cut > 0 else width[1]
            chunks.append(measured[:cut])
            measured = measured[cut:].lstrip()
        chunks.append(measured)
        for index, chunk in enumerate(chunks):
            shown = cells if index == 0 else ["", "", "", "", ""]
            shown = [shown[0], chunk, shown[2], shown[3], shown[4]]
            print("| " + " | ".join(c.ljust(w) for c, w in zip(shown, width)) + " |")
    print(line)
    versus = side_by_side.table(rows)
    if versus:
        print()
        print("Side by side on the same broker (invoice requests, closed loop; scripts/bench.d/versus)")
        print("\n".join(versus))
    missed = [row[0].strip() for row in table if row[4].startswith("MISSED")]
    print(f"{len(missed)} target(s) MISSED: {'; '.join(missed)}" if missed else "every target met")


if __name__ == "__main__":
    main()
