"""``compat study run``: train every planned run once, extract features once, evaluate every pair once.

Everything the runner writes is written atomically and is a checkpoint of the study: a finished run
(``model.json`` present) is never retrained, a run killed mid-way resumes from its last epoch (the
engine's exact ``--resume``), and feature files and pair results are reused. A study killed at any
point and started again with ``--resume`` therefore ends with the results of an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compat_core.errors import CompatError
from compat_core.io import write_json
from compat_core.study.plan import Pair, PlannedRun, plan_pairs, plan_runs, split_spec
from compat_core.study.spec import StudySpec

STATE_FILE = "study.json"
STATE_FORMAT = "compat-study/1"


def study_paths(study_dir: str | Path) -> dict[str, Path]:
    root = Path(study_dir)
    return {"root": root, "state": root / STATE_FILE, "runs": root / "runs", "features": root / "features",
            "results": root / "results"}


def feature_path(study_dir: str | Path, run: str, split: str) -> Path:
    return Path(study_dir) / "features" / split / f"{run}.npz"


def result_path(study_dir: str | Path, pair: Pair) -> Path:
    return Path(study_dir) / "results" / pair.split / f"{pair.query}--{pair.gallery}.json"


def run_status(run: PlannedRun) -> str:
    """``done`` (model exported), ``partial`` (a checkpoint to resume) or ``todo``."""
    from compat_core.engine.checkpoint import checkpoint_path

    out = Path(run.options["out"])
    if (out / "model.json").is_file() and (out / "model.safetensors").is_file():
        return "done"
    return "partial" if checkpoint_path(out).is_file() else "todo"


def check_study_dir(spec: StudySpec, study_dir: str | Path, *, resume: bool) -> None:
    """Refuse a ``DIR`` that holds another study or other files, and a rerun without ``--resume``;
    check that ``DIR`` is writable before any long work."""
    paths = study_paths(study_dir)
    root = paths["root"]
    if root.exists() and not root.is_dir():
        raise CompatError(f"--out {root} is a file. Choose a folder for the study.")
    if paths["state"].is_file():
        state = _read_state(paths["state"])
        if state.get("fingerprint") != spec.fingerprint():
            raise CompatError(
                f"--out {root} holds another study ({state.get('name', '?')}, protocol fingerprint "
                f"{state.get('fingerprint', '?')}; this file is {spec.name}, {spec.fingerprint()}): its data, "
                f"holdout, common or old/new options or seeds differ, so its runs would not match this protocol. "
                f"Choose another --out, or restore the study file it was made from (a copy is in "
                f"{root / 'study.yaml'}). Adding method entries is allowed; changing these is not.")
        if not resume:
            raise CompatError(f"--out {root} already holds this study. Pass --resume to continue it (finished "
                              f"runs are kept and never retrained), or choose another --out.")
    elif root.is_dir() and any(root.iterdir()):
        raise CompatError(f"--out {root} already exists and holds other files, not a study. Choose a new or "
                          f"empty folder.")
    from compat_core.io import check_writable_folder

    check_writable_folder(root, "--out")  # a probe of this process alone: two --only processes may share DIR
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CompatError(f"--out {root} cannot be created ({exc.strerror}). Choose a folder you can write.") from None


def _read_state(path: Path) -> dict[str, Any]:
    from compat_core.io import read_json

    state = read_json(path, "It marks a study folder: restore it, or choose another --out.")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CompatError(f"{path} is not a {STATE_FORMAT} study state. Choose another --out.")
    return state


def read_study_dir(study_dir: str | Path) -> StudySpec:
    """The study spec recorded in ``DIR`` (for ``compat study report``)."""
    paths = study_paths(study_dir)
    if not paths["state"].is_file():
        raise CompatError(f"{study_dir} is not a study folder (no {STATE_FILE}). Pass the --out folder of "
                          f"`compat study run`.")
    return StudySpec.model_validate(_read_state(paths["state"])["spec"])


def resolve_runs(runs: list[PlannedRun]) -> dict[str, tuple[Any, Any]]:
    """Validate every run's options before anything is trained: a bad option in the last method must not
    surface after an hour of training."""
    from compat_core.config import resolve_config
    from compat_core.plugins import get_host

    resolved = {}
    for run in runs:
        config_cls = get_host().methods.lookup(run.method).get("config")
        try:
            resolved[run.name] = resolve_config(run.method, config_cls, flags=run.options)
        except CompatError as exc:
            raise CompatError(f"study run {run.name} ({run.method}): {exc}") from None
    return resolved


def check_trained_runs(runs: list[PlannedRun], resolved: dict[str, tuple[Any, Any]]) -> None:
    """A run already in ``DIR/runs`` must have been trained with the options the study file gives it now:
    a method entry whose options changed would otherwise report results of the old options."""
    import yaml

    from compat_core.config import config_differences, dump_resolved

    for run in runs:
        saved_file = Path(run.options["out"]) / "config.yaml"
        if not saved_file.is_file():
            continue
        saved = yaml.safe_load(saved_file.read_text()) or {}
        wanted = yaml.safe_load(dump_resolved(run.method, *resolved[run.name]))
        differing = config_differences(saved, wanted, {"device", "workers"})
        if differing:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in differing[:3])
            raise CompatError(f"study run {run.name} was trained with other options than the study file now gives "
                              f"it ({details}). Give the changed method entry a new name (its runs are then "
                              f"trained afresh), or delete {saved_file.parent} to retrain it.")


class StudyRunner:
    """Carries out a study in ``study_dir``; ``log`` receives plain progress lines."""

    def __init__(self, spec: StudySpec, study_dir: str | Path, *, only: list[str] | None = None,
                 log: Callable[[str], None] = print, reporter_factory: Callable[[], Any] | None = None):
        self.spec, self.dir, self.log = spec, Path(study_dir), log
        self.reporter_factory = reporter_factory
        if only:
            unknown = [name for name in only if name not in spec.methods]
            if unknown:
                raise CompatError(f"--only {unknown[0]}: not a method entry of study {spec.name} "
                                  f"({', '.join(spec.methods)}). Name entries of the study file.")
        self.runs = plan_runs(spec, self.dir, only)
        self.pairs = plan_pairs(spec, self.runs)

    def run(self, *, resume: bool) -> None:
        from compat_core.engine import train

        check_study_dir(self.spec, self.dir, resume=resume)
        resolved = resolve_runs(self.runs)
        check_trained_runs(self.runs, resolved)
        self._write_state()
        self._write_split()
        todo = [run for run in self.runs if run_status(run) != "done"]
        self.log(f"study {self.spec.name}: {len(self.runs)} runs ({len(self.runs) - len(todo)} done), "
                 f"{len(self.pairs)} evaluations -> {self.dir}")
        for number, run in enumerate(todo, 1):
            status = run_status(run)
            against = f", against {run.against}" if run.options.get("old") else ""
            self.log(f"[{number}/{len(todo)}] train {run.name} ({run.method}, seed {run.seed}{against})"
                     + (" - resuming" if status == "partial" else ""))
            common, own = resolved[run.name]
            reporter = self.reporter_factory() if self.reporter_factory else None
            started = time.perf_counter()
            train(run.method, common, own, resume=status == "partial", overwrite=status == "todo",
                  reporter=reporter)
            self.log(f"  {run.name} done in {time.perf_counter() - started:.0f} s")
        self.evaluate()

    def evaluate(self) -> None:
        todo = [pair for pair in self.pairs if not result_path(self.dir, pair).is_file()]
        if todo:
            self.log(f"evaluate {len(todo)} (query, gallery, split) pairs")
        cache: dict[tuple[str, str], Any] = {}
        for pair in todo:
            query, gallery = (self._features(name, pair.split, cache) for name in (pair.query, pair.gallery))
            metrics = self._score(pair, query, gallery)
            write_json(result_path(self.dir, pair), {"query": pair.query, "gallery": pair.gallery,
                                                     "split": pair.split, **_plain(metrics)})

    def _score(self, pair: Pair, query: Any, gallery: Any) -> dict[str, Any]:
        if self.spec.evaluation.task == "retrieval":
            from compat_core.evaluators.retrieval import retrieval_between

            return retrieval_between(query, gallery, self.spec.evaluation.metric)
        from compat_core.metrics.regression import regression_report

        for run, feats in ((pair.query, query), (pair.gallery, gallery)):
            if feats.logits is None:
                raise CompatError(f"study run {run} has no classifier head, so a classification study cannot "
                                  f"score it. Train classifiers (every compat method has a head unless its "
                                  f"options remove it), or use `evaluation: {{task: retrieval}}`.")
        if not (len(query.labels) == len(gallery.labels) and (query.index == gallery.index).all()):
            raise CompatError(f"study runs {pair.query} and {pair.gallery} were scored on different images of "
                              f"{pair.split}. Delete {self.dir / 'features' / pair.split} and resume the study.")
        report = regression_report(gallery.logits, query.logits, query.labels, gallery.logit_classes,
                                   query.logit_classes, query.classes)
        report.pop("per_class", None)  # the study reports whole-set numbers; per class: compat eval regression
        return report

    def _features(self, run: str, split: str, cache: dict) -> Any:
        from compat_core.engine.distributed import resolve_device
        from compat_core.features import features_of, load, save

        key = (run, split)
        if key not in cache:
            path = feature_path(self.dir, run, split)
            if not path.is_file():
                device = str(resolve_device(str(self.spec.common.get("device", "auto"))))
                feats = features_of(str(self.dir / "runs" / run), data=self.spec.data,
                                    split=split_spec(self.dir, split), device=device,
                                    with_logits=self.spec.evaluation.task == "classification")
                save(path, feats)
            cache[key] = load(path)
        return cache[key]

    def _write_state(self) -> None:
        # Rewritten on every run: the latest file's method entries are what the report lists.
        import yaml

        from compat_core.io import write_text

        paths = study_paths(self.dir)
        write_json(paths["state"], {"format": STATE_FORMAT, "name": self.spec.name,
                                    "fingerprint": self.spec.fingerprint(),
                                    "spec": self.spec.model_dump(mode="json")})
        write_text(self.dir / "study.yaml", yaml.safe_dump(self.spec.model_dump(mode="json"), sort_keys=False))

    def _write_split(self) -> None:
        from compat_core.data import open_dataset
        from compat_core.data.selection import make_split

        path = self.dir / "split.json"
        if path.is_file():
            return
        validation = self.spec.validation
        dataset = open_dataset(self.spec.data, split="train", image_size=8)
        manifest = make_split(dataset, 0.5, by="class", seed=validation.seed, validation=validation.fraction)
        write_json(path, manifest)


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe copy (numpy scalars to Python numbers)."""
    return json.loads(json.dumps(metrics, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
