"""The side-by-side part of the performance report: request/reply through Spring Kafka, NestJS
and ours on one broker (scripts/bench.d/versus cells, recorded as `versus/CLIENT/RESPONDER/N`),
as a table, and the targets against Spring's best figures of the same run."""

# (client, responder, what the pair is), in the order of the table.
PAIRS = [
    ("ours", "ours", "ours -> ours (defaults)"),
    ("spring", "spring", "Spring -> Spring (defaults: linger 5, container commits)"),
    ("spring-tuned", "spring-tuned", "Spring -> Spring (linger 0, auto-commit)"),
    ("nest", "nest", "NestJS -> NestJS (defaults)"),
    ("spring-tuned", "ours", "Spring (linger 0) -> our worker"),
    ("ours", "spring-tuned", "our requester -> Spring (linger 0, auto-commit)"),
    ("nest", "ours", "NestJS -> our worker"),
    ("ours", "nest", "our requester -> NestJS"),
]
SPRING = [("spring", "spring"), ("spring-tuned", "spring-tuned")]


def cells(rows):
    """{(client, responder, in_flight): row} of the measured cells, and {same: why} of the others."""
    found, skipped = {}, {}
    for name, row in rows.items():
        if not name.startswith("versus/"):
            continue
        _, client, responder, in_flight = name.split("/")
        key = (client, responder, int(in_flight))
        if "skipped" in row:
            skipped[key] = row["skipped"]
        else:
            found[key] = row
    return found, skipped


def table(rows):
    """The side-by-side table as text lines (empty when no cell was run)."""
    found, skipped = cells(rows)
    in_flights = sorted({key[2] for key in list(found) + list(skipped)})
    if not in_flights:
        return []
    headers = ("pair", "in flight", "round trips/s", "p50 ms", "p99 ms", "p99.9 ms",
               "CPU us/round trip: client + responder + broker = total", "responder RSS")
    lines = []
    for in_flight in in_flights:
        for client, responder, label in PAIRS:
            key = (client, responder, in_flight)
            row = found.get(key)
            if row is None:
                if key in skipped:
                    lines.append((label, str(in_flight), f"not measured: {skipped[key]}", "", "", "", "", ""))
                continue
            cpu = row["cpu_us_per_round_trip"]
            problems = [f"{row[k]} {k}" for k in ("errors", "timeouts") if row.get(k)]
            lines.append((
                label, str(in_flight),
                f"{row['per_second']:,.0f}" + (f" [{', '.join(problems)}]" if problems else ""),
                f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.1f}", f"{row['p999_ms']:.1f}",
                " + ".join(f"{cpu[k]:.0f}" for k in ("client", "responder", "broker")) + f" = {cpu['total']:.0f}",
                f"{row['responder_rss_mib']:.0f} MiB",
            ))
    width = [max(len(line[i]) for line in lines + [headers]) for i in range(len(headers))]
    rule = "+" + "+".join("-" * (w + 2) for w in width) + "+"
    out = [rule, "| " + " | ".join(h.ljust(w) for h, w in zip(headers, width)) + " |", rule]
    for line in lines:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(line, width)) + " |")
    out.append(rule)
    return out


def targets(rows, add, verdict):
    """Adds the issue's targets, each against the better of the two Spring -> Spring cells of
    the same run for that figure, through `add(figure, measured, target, ratio, verdict)`."""
    found, skipped = cells(rows)
    if not found and not skipped:
        return

    def ours(in_flight):
        row = found.get(("ours", "ours", in_flight))
        if row is None:
            why = skipped.get(("ours", "ours", in_flight), "not measured")
            add(f"Side by side, {in_flight} in flight", why, "", "", "MISSED")
        return row

    def best(in_flight, key, lowest=True):
        values = [found[(c, r, in_flight)][key] for c, r in SPRING if (c, r, in_flight) in found]
        if not values:
            return None
        return min(values) if lowest else max(values)

    def cpu_total(row):
        return row["cpu_us_per_round_trip"]["total"]

    def clean(row):
        return not row["errors"] and not row["timeouts"]

    row = ours(1)
    if row:
        spring_p50 = best(1, "p50_ms")
        limit = min(0.7, spring_p50) if spring_p50 is not None else 0.7
        add("Side by side, 1 in flight: ours -> ours p50",
            f"{row['p50_ms']:.2f} ms; Spring's best {spring_p50:.2f} ms" if spring_p50 is not None
            else f"{row['p50_ms']:.2f} ms; Spring not measured",
            "p50 <= Spring's and <= 0.7 ms", f"{row['p50_ms'] / spring_p50:.2f}x Spring's" if spring_p50 else "",
            verdict(row["p50_ms"] <= limit and clean(row) and spring_p50 is not None))

    row = ours(64)
    if row:
        rate = best(64, "per_second", lowest=False)
        p99 = best(64, "p99_ms")
        cpus = [cpu_total(found[(c, r, 64)]) for c, r in SPRING if (c, r, 64) in found]
        cpu = min(cpus) if cpus else None
        if rate is None:
            add("Side by side, 64 in flight", "Spring not measured", "", "", "MISSED")
        else:
            add("Side by side, 64 in flight: ours -> ours round trips/s",
                f"{row['per_second']:,.0f}/s; Spring's best {rate:,.0f}/s", ">= 1.5x Spring's",
                f"{row['per_second'] / rate:.2f}x", verdict(row["per_second"] >= 1.5 * rate and clean(row)))
            add("Side by side, 64 in flight: ours -> ours p99",
                f"{row['p99_ms']:.1f} ms; Spring's best {p99:.1f} ms", "<= Spring's",
                f"{row['p99_ms'] / p99:.2f}x", verdict(row["p99_ms"] <= p99))
            add("Side by side, 64 in flight: ours -> ours CPU per round trip (client + responder + broker)",
                f"{cpu_total(row):.0f} us; Spring's best {cpu:.0f} us", "<= 2/3 of Spring's",
                f"{cpu_total(row) / cpu:.2f}x", verdict(cpu_total(row) <= cpu * 2 / 3))

    row = ours(256)
    if row:
        add("Side by side, 256 in flight: ours -> ours (library path)",
            f"{row['per_second']:,.0f}/s, p99 {row['p99_ms']:.1f} ms", ">= 40,000/s", "",
            verdict(row["per_second"] >= 40_000 and clean(row)))
