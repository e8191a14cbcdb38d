"""What a study computes: its runs (with their exact training options) and its evaluations.

Runs are ordered old models first, then the teachers some entries train against (ELODI's ensemble),
then the reference, then method by method over every seed pair, so a study stopped early holds
complete methods rather than a little of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compat_core.study.spec import StudySpec

SPLIT_FILE = "split.json"
#: A method option with this value is the reference run of the same new seed (BT^2's ``new_prime``).
REFERENCE_TOKEN = "{reference}"


@dataclass(frozen=True)
class PlannedRun:
    """One training run of the study, a normal compat run directory under ``DIR/runs/``."""

    name: str
    entry: str  # "old" or the study's method entry name
    method: str
    seed: int
    old_seed: int | None  # the old model it trains against (None: none)
    new_seed: int | None
    options: dict[str, Any] = field(hash=False, compare=False)  # every training option, flags included

    @property
    def role(self) -> str:
        return self.entry if self.entry in ("old", "teacher") else "method"

    @property
    def against(self) -> str:
        """The runs it trains against, in words: ``old-s1``, ``old-s1 + 8 teachers``, ``8 teachers``,
        ``old-s1 + independent-n2`` (a transformation), ``-``."""
        olds = [Path(path).name for path in self.options.get("old") or []]
        teachers = sum(name.startswith("teacher-s") for name in olds)
        words = [name for name in olds if not name.startswith("teacher-s")]
        if teachers:
            words.append(f"{teachers} teacher{'s' if teachers > 1 else ''}")
        if self.options.get("new"):  # a transformation between the old model and this reference
            words.append(Path(self.options["new"]).name)
        return " + ".join(words) or "-"


@dataclass(frozen=True)
class Pair:
    """One evaluation on ``split``: ``query`` run searched against ``gallery`` run (retrieval), or new
    classifier ``query`` scored against old classifier ``gallery`` (classification)."""

    query: str
    gallery: str
    split: str


def old_run(seed: int) -> str:
    return f"old-s{seed}"


def with_reference(values: dict[str, Any], reference: Path) -> dict[str, Any]:
    """``values`` with every ``"{reference}"`` replaced by the path of ``reference``."""
    return {k: (str(reference) if v == REFERENCE_TOKEN else v) for k, v in values.items()}


def teacher_run(seed: int) -> str:
    return f"teacher-s{seed}"


def new_run(entry: str, new_seed: int, old_seed: int | None) -> str:
    return f"{entry}-n{new_seed}" if old_seed is None else f"{entry}-o{old_seed}-n{new_seed}"


def split_spec(study_dir: str | Path, split: str) -> str:
    """The dataset split name of ``split`` in this study: ``val`` and ``train`` come from the holdout."""
    return split if split == "test" else f"@{Path(study_dir) / SPLIT_FILE}:{split}"


def plan_runs(spec: StudySpec, study_dir: str | Path, only: list[str] | None = None) -> list[PlannedRun]:
    """Every run the study needs (restricted to the entries in ``only`` and what they depend on).

    Example:
        >>> spec = load_study("studies/digits-smoke.yaml")  # doctest: +SKIP
        >>> [r.name for r in plan_runs(spec, "runs/s")][:3]  # doctest: +SKIP
        ['old-s1', 'old-s3', 'independent-n2']
    """
    train_split = split_spec(study_dir, "train")
    base = {"data": spec.data, "split": train_split, **spec.common}
    first = spec.chain.generations[0] if spec.chain else None
    old_classes = first.classes if first else spec.old.classes
    old_set = {**(first.set if first else {}), **spec.old.set}
    runs = [PlannedRun(old_run(s), "old", spec.old.method, s, None, None, {
        **base, "classes": old_classes, **old_set, "seed": s,
        "out": str(Path(study_dir) / "runs" / old_run(s))}) for s in spec.seeds.old]
    if spec.chain:
        from compat_core.study.chain import plan_chain_runs

        return runs + plan_chain_runs(spec, study_dir, base, only)
    entries = [n for n in [spec.reference, *spec.methods] if not only or n in only or n == spec.reference]
    entries = list(dict.fromkeys(entries))
    runs += _teacher_runs(spec, study_dir, base, entries)
    for name in entries:
        entry = spec.methods[name]
        old_seeds = spec.seeds.old if entry.old_model else [None]
        for old_seed in old_seeds:
            for new_seed in spec.seeds.new:
                run_name = new_run(name, new_seed, old_seed)
                reference = Path(study_dir) / "runs" / new_run(spec.reference, new_seed, None)
                options = {**base, "classes": spec.new.classes, **spec.new.set, **with_reference(entry.set, reference),
                           "seed": new_seed, "out": str(Path(study_dir) / "runs" / run_name)}
                if entry.transforms:  # it maps between the old model and this new seed's reference
                    options["new"] = str(reference)
                olds = ([old_run(old_seed)] if old_seed is not None else []) + list(map(teacher_run, entry.teachers))
                if olds:
                    options["old"] = [str(Path(study_dir) / "runs" / run) for run in olds]
                runs.append(PlannedRun(run_name, name, entry.method, new_seed, old_seed, new_seed, options))
    return runs


def _teacher_runs(spec: StudySpec, study_dir: str | Path, base: dict[str, Any],
                  entries: list[str]) -> list[PlannedRun]:
    """The teachers the ``entries`` train against: models trained like the reference, each seed once."""
    reference = spec.methods[spec.reference]
    seeds = dict.fromkeys(seed for name in entries for seed in spec.methods[name].teachers)
    return [PlannedRun(teacher_run(seed), "teacher", reference.method, seed, None, None, {
        **base, "classes": spec.new.classes, **spec.new.set, **reference.set, "seed": seed,
        "out": str(Path(study_dir) / "runs" / teacher_run(seed))}) for seed in seeds]


def seed_pairs(spec: StudySpec, entry: str) -> list[tuple[int, int, str]]:
    """``(old seed, new seed, new run name)`` for every seed pair of method entry ``entry``.

    An entry trained without the old model (the reference) has one run per new seed, which is
    evaluated against every old model.
    """
    uses_old = spec.methods[entry].old_model
    return [(s, t, new_run(entry, t, s if uses_old else None)) for s in spec.seeds.old for t in spec.seeds.new]


def plan_pairs(spec: StudySpec, runs: list[PlannedRun]) -> list[Pair]:
    """Every (query, gallery, split) evaluation the report needs, each once.

    Classification studies compare each new model (the reference's included) with its old model only:
    ``Pair(new run, old run)``; the old model's accuracy comes with every such pair.
    """
    planned = {run.name for run in runs}
    if spec.chain:
        from compat_core.study.chain import plan_chain_pairs

        return plan_chain_pairs(spec, planned)
    pairs: dict[Pair, None] = {}
    if spec.evaluation.task == "classification":
        for split in spec.evaluation.splits:
            for entry in spec.methods:
                for old_seed, _, name in seed_pairs(spec, entry):
                    if name in planned:
                        pairs[Pair(name, old_run(old_seed), split)] = None
        return list(pairs)
    for split in spec.evaluation.splits:
        for seed in spec.seeds.old:
            pairs[Pair(old_run(seed), old_run(seed), split)] = None
        for entry in spec.methods:
            for old_seed, new_seed, name in seed_pairs(spec, entry):
                if name in planned:
                    for query, gallery in retrieval_pairs(spec, entry, old_seed, new_seed).values():
                        pairs[Pair(query, gallery, split)] = None
    return list(pairs)


def retrieval_pairs(spec: StudySpec, entry: str, old_seed: int, new_seed: int) -> dict[str, tuple[str, str]]:
    """The (query run, gallery run) behind each number of one seed pair of a retrieval study: ``old_old``,
    ``new_old`` (the method's compatibility), ``new_new`` (the deployed new model alone) and ``reference``.

    A ``transforms: gallery`` entry is scored as the reference's queries against its transformed old
    gallery, a ``transforms: queries`` entry as its mapped queries against the old gallery; the deployed new
    model of both is the reference itself.
    """
    transforms = spec.methods[entry].transforms
    run = new_run(entry, new_seed, old_seed if spec.methods[entry].old_model else None)
    old, reference = old_run(old_seed), new_run(spec.reference, new_seed, None)
    new_old = (reference, run) if transforms == "gallery" else (run, old)
    new_new = (reference, reference) if transforms else (run, run)
    return {"old_old": (old, old), "new_old": new_old, "new_new": new_new, "reference": (reference, reference)}
