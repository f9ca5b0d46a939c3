#!/usr/bin/env python3
"""Medians, goal ratios and RSS from `bench/matrix.sh` output (markdown).

usage: python3 bench/summarize.py RESULT_FILE [...]

Cells are the median over runs; "(min–max)" where runs disagree by more
than 15 % (the machine's noise; see ../shared/peers/README.md).
"""
import json
import statistics
import sys
from collections import defaultdict

rows = defaultdict(list)  # (target, workload) -> [json]
notes = defaultdict(dict)  # target -> {key: value}
for path in sys.argv[1:]:
    for line in open(path):
        parts = line.rstrip("\n").split(" ", 3)
        if len(parts) < 3 or line.startswith("#"):
            continue
        if len(parts) == 4 and parts[3].startswith("{"):
            try:
                rows[(parts[0], parts[1])].append(json.loads(parts[3]))
            except json.JSONDecodeError:
                pass
        elif parts[1] == "stats":
            try:
                notes[parts[0]]["stats"] = json.loads(line.split(" ", 2)[2])
            except json.JSONDecodeError:
                pass
        elif len(parts) == 3:
            notes[parts[0]][parts[1]] = parts[2]


def med(target, workload, key, sub=None):
    vals = []
    for d in rows.get((target, workload), []):
        v = d.get(sub, {}).get(key) if sub else d.get(key)
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None


def spread(target, workload, key):
    vals = [d[key] for d in rows.get((target, workload), []) if d.get(key) is not None]
    if len(vals) < 2 or min(vals) <= 0 or max(vals) / min(vals) <= 1.15:
        return ""
    return f" ({fmt(min(vals))}–{fmt(max(vals))})"


def total(target, workload, key, sub=None):
    return sum((d.get(sub, {}) if sub else d).get(key, 0) for d in rows.get((target, workload), []))


def fmt(v, nd=0):
    if v is None:
        return "–"
    if nd == 0:
        return f"{v:,.0f}".replace(",", " ")
    return f"{v:.{nd}f}"


def ratio(a, b, nd=2):
    return "–" if a is None or not b else f"{a / b:.{nd}f}×"


targets = [t for t in dict.fromkeys(t for t, _ in rows) if t != "machine" and not t.startswith("raw-")]

print("\n## HTTP workloads (medians; server on cpu0, load on cpu1)\n")
print("| target | W1 req/s | W1 CPU µs/req | W1 p50/p99 ms @½ | W2 req/s | W2 CPU µs/req | W2 p50/p99 ms @½ "
      "| W3 logins/s | W3 CPU ms/login | W1 p99 ms in login flood | W4 req/s (errors) | W4 p99 ms @½ get/refresh/login (errors) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for t in targets:
    w3cpu = med(t, "w3", "server_cpu_us_per_req")
    kinds = []
    for k in ("get", "refresh", "login"):
        vals = [d["by_kind"][k]["p99_ms"] for d in rows.get((t, "w4_half"), []) if "by_kind" in d]
        kinds.append(fmt(statistics.median(vals), 1) if vals else "–")
    print(
        f"| {t} | {fmt(med(t, 'w1', 'rps'))}{spread(t, 'w1', 'rps')} | {fmt(med(t, 'w1', 'server_cpu_us_per_req'))} "
        f"| {fmt(med(t, 'w1_half', 'p50_ms'), 2)} / {fmt(med(t, 'w1_half', 'p99_ms'), 2)} "
        f"| {fmt(med(t, 'w2', 'rps'))}{spread(t, 'w2', 'rps')} | {fmt(med(t, 'w2', 'server_cpu_us_per_req'))} "
        f"| {fmt(med(t, 'w2_half', 'p50_ms'), 2)} / {fmt(med(t, 'w2_half', 'p99_ms'), 2)} "
        f"| {fmt(med(t, 'w3', 'rps'))} | {fmt(w3cpu / 1000 if w3cpu else None, 1)} "
        f"| {fmt(med(t, 'w1_during_login_flood', 'p99_ms'), 1)} "
        f"| {fmt(med(t, 'w4', 'rps'))} ({total(t, 'w4', 'errors')}) "
        f"| {' / '.join(kinds)} ({total(t, 'w4_half', 'errors')}) |"
    )

print("\n## Ceilings measured in the same run\n")
print("| what | median | runs |")
print("|---|---|---|")
a = med("machine", "argon2id", "per_second")
if a:
    print(f"| Argon2id m=19 MiB t=2 p=1, one core | {a:.1f}/s ({med('machine', 'argon2id', 'median_ms'):.1f} ms) | {len(rows[('machine', 'argon2id')])} |")
for b in ("sqlite", "postgres", "mariadb", "redis"):
    for op in ("read", "update"):
        v = med(f"raw-{b}", op, "rps")
        if v:
            print(f"| {b} raw {op} (64 tasks, Sesame's pool) | {fmt(v)}/s{spread(f'raw-{b}', op, 'rps')} "
                  f"| {len(rows[(f'raw-{b}', op)])} |")

print("\n## Goals as ratios (same run)\n")
print("| goal | measured | target |")
print("|---|---|---|")
bare_cpu = med("resource-server", "w1_bare_half", "server_cpu_us_per_req")
prot_cpu = med("resource-server", "w1_half", "server_cpu_us_per_req")
if bare_cpu:
    print(f"| resource server: CPU/req protected ÷ bare, same load | {ratio(prot_cpu, bare_cpu)} ({fmt(prot_cpu, 1)} / {fmt(bare_cpu, 1)} µs) | ≤ 1.25× |")
    for peer in ("express", "express-keyobj"):
        if med(peer, "w1", "rps"):
            print(f"| resource server W1 ÷ {peer} /me | {ratio(med('resource-server', 'w1', 'rps'), med(peer, 'w1', 'rps'), 1)} | ≥ 10× |")
    print(f"| resource server p99 @½ | {fmt(med('resource-server', 'w1_half', 'p99_ms'), 2)} ms (from send: {fmt(med('resource-server', 'w1_half', 'service_p99_ms'), 2)} ms) | < 2 ms |")
    st = notes.get("resource-server", {}).get("stats")
    if st:
        print(f"| verified-token cache hit rate | {st.get('cache_hits', 0) / max(1, st.get('cache_hits', 0) + st.get('cache_misses', 0)):.2%} | reported |")
for b in ("sqlite", "postgres", "mariadb", "redis"):
    t = f"sesame-{b}"
    if not rows.get((t, "w1")):
        continue
    print(f"| {b}: W1 /auth/me ÷ raw PK read | {ratio(med(t, 'w1', 'rps'), med(f'raw-{b}', 'read', 'rps'))} | ≥ 0.5× |")
    print(f"| {b}: W2 refresh ÷ raw update | {ratio(med(t, 'w2', 'rps'), med(f'raw-{b}', 'update', 'rps'))} | ≥ 0.5× |")
    for peer in ("express", "express-keyobj"):
        if med(peer, "w2", "rps"):
            print(f"| {b}: W2 ÷ {peer} refresh | {ratio(med(t, 'w2', 'rps'), med(peer, 'w2', 'rps'), 1)} | ≥ 3× |")
    print(f"| {b}: W2 p99 @½ | {fmt(med(t, 'w2_half', 'p99_ms'), 2)} ms | < 5 ms (SQLite) |")
    print(f"| {b}: W3 ÷ Argon2id rate | {ratio(med(t, 'w3', 'rps'), a)} | ≥ 0.9× |")
    fl = rows.get((t, "login_flood"), [])
    print(f"| {b}: W1 p99 during login flood | {fmt(med(t, 'w1_during_login_flood', 'p99_ms'), 1)} ms, "
          f"{total(t, 'w1_during_login_flood', 'errors')} errors; flood: {sum(d['ok'] for d in fl)} logins, "
          f"{sum(d['errors'] for d in fl)} refused | < 20 ms, no timeouts |")

print("\n## RSS (KiB)\n")
for t, kv in notes.items():
    r = {k: v for k, v in kv.items() if k.startswith("rss")}
    if r:
        print(f"- {t}: " + ", ".join(f"{k.removeprefix('rss_').removesuffix('_kib')} {v}" for k, v in r.items()))
