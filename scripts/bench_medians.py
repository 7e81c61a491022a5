#!/usr/bin/env python3
"""Medians per tool over the repetitions of one benchmark run, and each tool's ratio to restic.

usage: bench_medians.py OUTDIR RUN_ID      (OUTDIR holds run_anchors.sh's timings.csv and sizes.csv)
Steps are grouped as in ../shared/bench/summarize.py: first = snap1+backup1+sync1, incremental = snap2+backup2+sync2,
restore = restore+sync3, check = check. Ratio = restic's median / the tool's median (above 1 = faster than restic).
"""
import csv
import os
import statistics
import sys
from collections import defaultdict

out, run = sys.argv[1], sys.argv[2]
GROUPS = {"first": ["snap1", "backup1", "sync1"], "incremental": ["snap2", "backup2", "sync2"],
          "restore": ["restore", "sync3"], "check": ["check"]}
steps = defaultdict(lambda: defaultdict(dict))  # tool -> rep -> step -> row
for r in csv.DictReader(open(os.path.join(out, "timings.csv"))):
    if r["run_id"] == run:
        steps[r["tool"]][r["rep"]][r["step"]] = r
sizes = defaultdict(lambda: defaultdict(dict))
for r in csv.DictReader(open(os.path.join(out, "sizes.csv"))):
    if r["run_id"] == run:
        sizes[r["tool"]][r["rep"]][r["what"]] = int(r["bytes"])


def med(xs):
    return statistics.median(xs) if xs else float("nan")


table = {}
for tool, reps in steps.items():
    row = {}
    for g, names in GROUPS.items():
        row[g] = med([sum(float(s[n]["wall_s"]) for n in names if n in s) for s in reps.values() if all(n in s or n.startswith("snap") for n in names)])
    row["rss"] = max(int(s[n]["maxrss_kb"]) for s in reps.values() for n in ("backup1", "backup2", "restore", "check") if n in s) / 1024
    row["repo1"] = med([sz.get("repo_after_backup1", 0) for sz in sizes[tool].values()]) / 1e6
    row["repo2"] = med([sz.get("repo_after_backup2", 0) for sz in sizes[tool].values()]) / 1e6
    row["verify"] = all(s.get("verify", {}).get("rc") == "0" for s in reps.values())
    row["rc"] = all(s[n]["rc"] == "0" for s in reps.values() for n in ("backup1", "backup2", "restore", "check") if n in s)
    table[tool] = row

print("| tool | first backup s | second backup s | restore s | check s | repo after 1st / 2nd MB | 2nd adds MB | peak RSS MB | restore equal |")
print("|---|---|---|---|---|---|---|---|---|")
for tool, r in table.items():
    print(f"| {tool} | {r['first']:.2f} | {r['incremental']:.2f} | {r['restore']:.2f} | {r['check']:.2f} | "
          f"{r['repo1']:.0f} / {r['repo2']:.0f} | {r['repo2'] - r['repo1']:.1f} | {r['rss']:.0f} | "
          f"{'yes' if r['verify'] else 'NO'}{'' if r['rc'] else ' (a step failed)'} |")
if "restic" in table and "clinicvault" in table:
    rs, cv = table["restic"], table["clinicvault"]
    print()
    print("ClinicVault against restic (restic's median / ClinicVault's; target in brackets):")
    for g, target in (("first", 2.0), ("incremental", 2.0), ("restore", 1.5), ("check", 1.5)):
        ratio = rs[g] / cv[g] if cv[g] else float("nan")
        print(f"  {g:12s} {ratio:5.2f}x  [{target}x]  {'met' if ratio >= target else 'NOT met'}")
    print(f"  vault size after two backups: {cv['repo2']:.0f} MB vs restic {rs['repo2']:.0f} MB  "
          f"{'met' if cv['repo2'] <= rs['repo2'] else 'NOT met'}")
    print(f"  peak memory: {cv['rss']:.0f} MB [< 200]  {'met' if cv['rss'] < 200 else 'NOT met'}")
