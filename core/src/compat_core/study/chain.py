"""Chain studies: T model generations trained one after the other on a growing class set.

``chain.generations`` lists each generation's classes (and options). Generation 1 is the old model
(one per old seed, as in every study). For each method entry and seed pair (old seed s, new seed t),
generation k >= 2 trains on generation k's classes with ``--old`` = generation k - 1 of the same chain;
the reference entry trains each generation k >= 2 independently (no old model), once per new seed. A
method option whose value is ``"{reference}"`` becomes the reference run of the same generation and new
seed (BT^2's ``new_prime: "{reference}"``), as in single-update studies.

Every (query, gallery) pair of a chain is evaluated, and the report gives, per method, Average
Compatibility and Average Multi-model Accuracy (:func:`compat_core.metrics.compatibility.chain_metrics`)
as mean ± std over the chains, the mean T x T matrix, and new/new at each generation against the
reference's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compat_core.study.plan import with_reference
from compat_core.study.spec import StudySpec
from compat_core.study.stats import paired, summarize

METRICS = ("top1", "mAP")


def generation_run(entry: str, generation: int, new_seed: int, old_seed: int | None) -> str:
    """Run name of generation ``generation`` (2-based: generation 1 is ``old-s{seed}``) of a chain."""
    chain = f"n{new_seed}" if old_seed is None else f"o{old_seed}-n{new_seed}"
    return f"{entry}-g{generation}-{chain}"


def chain_members(spec: StudySpec, entry: str, old_seed: int, new_seed: int) -> list[str]:
    """The run names of one chain, oldest first (the reference's chain starts from the same old model)."""
    from compat_core.study.plan import old_run

    uses_old = spec.methods[entry].old_model
    return [old_run(old_seed)] + [generation_run(entry, k, new_seed, old_seed if uses_old else None)
                                  for k in range(2, len(spec.chain.generations) + 1)]


def plan_chain_runs(spec: StudySpec, study_dir: str | Path, base: dict[str, Any], only: list[str] | None):
    """Every generation k >= 2 of every chain, in training order (each after the generation it builds on)."""
    from compat_core.study.plan import PlannedRun, old_run

    root = Path(study_dir) / "runs"
    generations = spec.chain.generations
    runs = []
    entries = [spec.reference] + [n for n in spec.methods if n != spec.reference]
    for name in entries:
        if only and name not in only and name != spec.reference:
            continue
        entry = spec.methods[name]
        for old_seed in (spec.seeds.old if entry.old_model else [None]):
            for new_seed in spec.seeds.new:
                previous = old_run(old_seed) if old_seed is not None else None
                for k in range(2, len(generations) + 1):
                    run_name = generation_run(name, k, new_seed, old_seed)
                    generation = generations[k - 1]
                    options = {**base, "classes": generation.classes, **spec.new.set, **generation.set,
                               **with_reference(entry.set, root / generation_run(spec.reference, k, new_seed, None)),
                               "seed": new_seed, "out": str(root / run_name)}
                    if previous is not None:
                        options["old"] = [str(root / previous)]
                    runs.append(PlannedRun(run_name, name, entry.method, new_seed, old_seed, new_seed, options))
                    previous = run_name if old_seed is not None else None
    return runs


def plan_chain_pairs(spec: StudySpec, planned: set[str]) -> list:
    """Every (query, gallery) pair within every chain whose runs are planned, on every split."""
    from compat_core.study.plan import Pair

    pairs: dict = {}
    for split in spec.evaluation.splits:
        for entry in spec.methods:
            for old_seed in spec.seeds.old:
                for new_seed in spec.seeds.new:
                    members = chain_members(spec, entry, old_seed, new_seed)
                    if not all(m in planned for m in members[1:]):
                        continue
                    for query in members:
                        for gallery in members:
                            pairs[Pair(query, gallery, split)] = None
    return list(pairs)


def chain_report(spec: StudySpec, results: dict[tuple[str, str], dict]) -> tuple[dict, dict]:
    """``(methods, missing)``: per entry, AC and AM as mean ± std over the chains, the mean matrix, and
    new/new per generation against the reference's (paired by new seed)."""
    from compat_core.metrics.compatibility import chain_metrics

    methods, missing = {}, {}
    for entry in spec.methods:
        chains, absent = [], []
        for old_seed in spec.seeds.old:
            for new_seed in spec.seeds.new:
                members = chain_members(spec, entry, old_seed, new_seed)
                if not all((q, g) in results for q in members for g in members):
                    absent.append(f"{old_seed}/{new_seed}")
                    continue
                score = {m: {(q, g): results[q, g][m] for q in members for g in members} for m in METRICS}
                reference = chain_members(spec, spec.reference, old_seed, new_seed)
                chains.append({"old_seed": old_seed, "new_seed": new_seed, "runs": members,
                               **{m: chain_metrics(members, score[m]) for m in METRICS},
                               "matrix": {m: [[score[m][q, g] for g in members] for q in members] for m in METRICS},
                               "reference_new_new": {m: [results.get((r, r), {}).get(m) for r in reference]
                                                     for m in METRICS}})
        if absent:
            missing[entry] = absent
        if chains:
            methods[entry] = _summary(spec.methods[entry].method, chains)
    return methods, missing


def _summary(method: str, chains: list[dict]) -> dict[str, Any]:
    size = len(chains[0]["runs"])
    summary = {"method": method, "n": len(chains), "generations": size,
               "AC": {m: summarize([c[m]["AC"] for c in chains]) for m in METRICS},
               "AM": {m: summarize([c[m]["AM"] for c in chains]) for m in METRICS},
               "matrix": {m: [[summarize([c["matrix"][m][i][j] for c in chains]) for j in range(size)]
                              for i in range(size)] for m in METRICS}, "chains": chains}
    summary["new_new_vs_reference"] = {m: [
        paired([c["matrix"][m][k][k] for c in chains], [c["reference_new_new"][m][k] for c in chains])
        if all(c["reference_new_new"][m][k] is not None for c in chains) else None
        for k in range(size)] for m in METRICS}
    return summary


def chain_tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The chain report as ``(title, header, rows)`` tables, percent (AC as a share)."""
    from compat_core.study.stats import pm

    methods = report["methods"]
    rows = [[name, str(s["n"]), pm(s["AC"]["top1"], 1), pm(s["AC"]["mAP"], 1), pm(s["AM"]["top1"]),
             pm(s["AM"]["mAP"])] for name, s in methods.items()]
    out = [(f"chain of {report['generations']} generations ({report['split']}): AC = share of (later, earlier) "
            f"pairs with M(later, earlier) > M(earlier, earlier); AM = mean M over later >= earlier; mean ± std "
            f"over the chains", ["method", "n", "AC top-1", "AC mAP", "AM top-1", "AM mAP"], rows)]
    for name, s in methods.items():
        size = s["generations"]
        header = ["query \\ gallery", *(f"g{j + 1}" for j in range(size))]
        rows = [[f"g{i + 1}", *(pm(s["matrix"]["top1"][i][j]) if j <= i else "" for j in range(size))]
                for i in range(size)]
        out.append((f"{name}: top-1 of generation i's queries against generation j's gallery (g1: the old model)",
                    header, rows))
    rows = []
    for name, s in methods.items():
        costs = s["new_new_vs_reference"]["top1"][1:]
        rows.append([name, *("-" if c is None else pm(c["diff"]) for c in costs)])
    size = report["generations"]
    out.append(("new/new top-1 against the reference's, generation by generation (difference): the cost of "
                "compatibility", ["method", *(f"g{k}" for k in range(2, size + 1))], rows))
    return out
