"""Fitting the synthesized rows of the old classifier to the old model's own embeddings.

The paper's synthesized row of a new class is the mean of its normalised old embeddings. When the old
model embeds unseen classes close to one of its own (Fashion-MNIST: sneakers, sandals and bags near its
T-shirts), those mean rows claim the old classes' region: the extended classifier then labels the old
model's *own* T-shirt embeddings as sneakers, and the influence loss drives new T-shirt queries to a
region of the old space where few old T-shirts lie. Fitting the synthesized rows (and their biases) by
softmax regression on the old training embeddings, real rows frozen, gives the extended classifier whose
decision regions are where the old embeddings of each class actually are.

Example:
    >>> feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> weight, bias = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.zeros(2)
    >>> w, b = fit_rows(feats, torch.tensor([0, 0, 1, 1]), weight, bias, torch.tensor([False, True]))
    >>> bool(w[1, 1] > 0), w[0].tolist()  # the synthesized row learns class 1; the real row is untouched
    (True, [1.0, 0.0])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from compat_bct.row_sampling import BlockLayout, resolve_block, row_blocks, stratified_subsample

LBFGS_MEMORY = 2**31  # bytes L-BFGS's history may take (2 GiB)
FIT_WORK = 2_500_000_000  # iterations x fitted values of --fit-max-iter auto (measured: README)
PROBE_SAMPLES = 2048  # samples that judge a block fit against every row (standard error ~1 point)


def row_accuracy(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 kind: str = "linear", scale: float = 1.0, *, chunk_logits: int = 2**25) -> torch.Tensor:
    """Per-row accuracy (R,) of the classifier on ``features`` whose correct rows are ``targets``;
    NaN for rows no sample targets. Scored in chunks of at most ``chunk_logits`` logits."""
    targets = targets.to(features.device)
    hits = sample_hits(features, targets, weight, bias, kind, scale, chunk_logits=chunk_logits)
    counts = torch.bincount(targets, minlength=len(weight)).float()
    correct = torch.zeros(len(weight), device=features.device).index_add_(0, targets, hits)
    accuracy = torch.where(counts > 0, correct / counts.clamp_min(1), torch.full_like(counts, float("nan")))
    return accuracy.cpu()


def sample_hits(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                kind: str = "linear", scale: float = 1.0, *, chunk_logits: int = 2**25) -> torch.Tensor:
    """1.0 where the classifier's top row (over all R rows) is the sample's target row, else 0.0.

    Example:
        >>> sample_hits(torch.tensor([[1.0, 0.0], [1.0, 0.1]]), torch.tensor([0, 1]), torch.eye(2), torch.zeros(2))
        tensor([1., 0.])
    """
    device = features.device
    targets = targets.to(device)
    weight, bias = weight.float().to(device), bias.float().to(device)
    hits = torch.zeros(len(features), device=device)
    step = max(1, chunk_logits // max(len(weight), 1))
    for lo in range(0, len(features), step):
        logits = score(features[lo:lo + step].float(), weight, bias, kind, scale)
        hits[lo:lo + step] = (logits.argmax(1) == targets[lo:lo + step]).float()
    return hits


def score(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, kind: str, scale: float) -> torch.Tensor:
    """Logits of the old classifier: ``scale * cos(f, w)`` (``kind="cosine"``), ``scale * n(f) . w`` with the rows
    as they are (``kind="feature-normalized"``, BT^2's BCT baseline) or ``W f + b``."""
    if kind == "cosine":
        return scale * F.linear(F.normalize(features, dim=1), F.normalize(weight, dim=1))
    if kind == "feature-normalized":
        return scale * F.linear(F.normalize(features, dim=1), weight)
    return F.linear(features, weight, bias)


def fit_rows(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
             free: torch.Tensor, *, kind: str = "linear", scale: float = 1.0, weight_decay: float = 1e-3,
             max_iter: int = 200, chunk_logits: int = 2**25, blocks: list[torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit the rows marked ``free`` (and, for linear logits, their biases) by full-batch L-BFGS on the
    softmax cross-entropy of ``features`` against ``targets``; the other rows stay as they are.

    Starts from the given rows (the class means), so the fit is deterministic. ``weight_decay`` adds
    ``weight_decay * sum ||w_free||^2`` to the mean loss (linear logits only: cosine logits ignore the
    norm): without it, separable classes drive the free rows' norms up without bound, and rows far
    longer than the real ones make the influence loss trivial to satisfy for the new classes.

    Runs on the device of ``features`` (the old model's): at most ``max_iter`` L-BFGS iterations (and
    1.25 x as many evaluations), each evaluation a few products of the (N, D) features with the (R, D)
    rows (3 s in all for 60,000 x 128 x 10 on a 2-core CPU). The loss is summed over chunks of samples
    so that at most ``chunk_logits`` logits exist at once; the rows are assembled and normalised once
    per evaluation and the chunks' gradients flow back through that once (per chunk, it would cost an
    R x D pass each: minutes per evaluation at 93,000 rows). ``blocks``
    (:func:`compat_bct.row_sampling.row_blocks`) scores each sample against the rows of its target
    row's block only: N x S x D per evaluation instead of N x R x D. Returns ``(weight, bias)`` on the CPU.
    """
    if not bool(free.any()) or not len(features):
        return weight.float().cpu().clone(), bias.float().cpu().clone()
    objective = RowFitObjective(features, targets, weight, bias, free, kind=kind, scale=scale,
                                weight_decay=weight_decay, chunk_logits=chunk_logits, blocks=blocks)
    optimizer = torch.optim.LBFGS(objective.params, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                  history_size=lbfgs_history(sum(p.numel() for p in objective.params)))

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        return objective()

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        w, b = objective.assembled()
    return w.detach().cpu(), b.detach().cpu()


def resolve_max_iter(option: int | str, num_values: int, work: int = FIT_WORK) -> int:
    """``--fit-max-iter``: a number as given, or ``"auto"``: 200, fewer (10 at least) when
    iterations x ``num_values`` (the fitted row values) would exceed ``work``. Each iteration passes
    over every fitted value some 60 times (the objective and L-BFGS's own vector updates), so at
    93,000 x 512 rows that is about 3 s per iteration on a 2-core CPU.

    Example:
        >>> resolve_max_iter("auto", 10 * 128), resolve_max_iter("auto", 93_000 * 512), resolve_max_iter(7, 10)
        (200, 52, 7)
    """
    if option != "auto":
        return int(option)
    return max(10, min(200, work // max(num_values, 1)))


def lbfgs_history(num_params: int, memory: int = LBFGS_MEMORY) -> int:
    """L-BFGS's history size: its default 100 while the 2 x history vectors of ``num_params`` floats
    fit in ``memory`` bytes, fewer (at least 5) beyond: 100 pairs of 93,000 x 512 rows would be 38 GB.

    Example:
        >>> lbfgs_history(1_280), lbfgs_history(93_000 * 512)
        (100, 5)
    """
    return max(5, min(100, memory // (2 * 4 * max(num_params, 1))))


class RowFitObjective:
    """The loss of :func:`fit_rows` as a function of the free rows; one call is one L-BFGS evaluation:
    it returns the loss and adds its gradient to ``params`` (``free_w``, and ``free_b`` for linear logits).

    Example:
        >>> objective = RowFitObjective(torch.eye(2), torch.tensor([0, 1]), torch.zeros(2, 2), torch.zeros(2),
        ...                             torch.tensor([True, True]), kind="linear")
        >>> round(objective().item(), 4), objective.free_w.grad.tolist()  # ln 2 at all-zero rows
        (0.6931, [[-0.25, 0.25], [0.25, -0.25]])
    """

    def __init__(self, features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 free: torch.Tensor, *, kind: str = "linear", scale: float = 1.0, weight_decay: float = 1e-3,
                 chunk_logits: int = 2**25, blocks: list[torch.Tensor] | None = None):
        device = features.device
        self.features, self.targets = features.float(), targets.long().to(device)
        self.weight, self.bias = weight.float().to(device), bias.float().to(device)
        self.free = free.bool().to(device)
        self.kind, self.scale, self.weight_decay, self.chunk_logits = kind, scale, weight_decay, chunk_logits
        self.layout = None if blocks is None else BlockLayout(blocks, self.targets)
        if self.layout is not None:  # normalised and arranged by block once, not per evaluation
            self.arranged = self.layout.arranged(F.normalize(self.features, dim=1) if kind == "cosine"
                                                 else self.features)
        self.free_w = self.weight[self.free].clone().requires_grad_(True)
        self.free_b = self.bias[self.free].clone().requires_grad_(kind == "linear")
        self.params = [self.free_w, self.free_b] if kind == "linear" else [self.free_w]

    def assembled(self) -> tuple[torch.Tensor, torch.Tensor]:
        w, b = self.weight.clone(), self.bias.clone()
        w[self.free], b[self.free] = self.free_w, self.free_b
        return w, b

    def __call__(self) -> torch.Tensor:
        with torch.enable_grad():
            w, b = self.assembled()
            rows = F.normalize(w, dim=1) if self.kind == "cosine" else w
            # leaves for the chunks: their gradients add up here and go back through rows -> w once
            rows_leaf = rows.detach().requires_grad_(True)
            bias_leaf = b.detach().requires_grad_(self.kind == "linear")
            total = self._dense(rows_leaf, bias_leaf) if self.layout is None else self._blocks(rows_leaf, bias_leaf)
            outputs, grads = [rows], [rows_leaf.grad]
            if self.kind == "linear":
                outputs.append(b)
                grads.append(bias_leaf.grad)
            torch.autograd.backward(outputs, grads)
            if self.kind == "linear" and self.weight_decay:
                penalty = self.weight_decay * self.free_w.pow(2).sum()
                penalty.backward()
                total += penalty.detach()
        return total

    def _dense(self, rows: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over every row, by autograd into the leaves, chunk by chunk."""
        n, total = len(self.features), self.features.new_zeros(())
        step = max(1, self.chunk_logits // len(rows))
        for lo in range(0, n, step):
            features, targets = self.features[lo:lo + step], self.targets[lo:lo + step]
            if self.kind == "cosine":
                logits = self.scale * F.linear(F.normalize(features, dim=1), rows)
            else:
                logits = F.linear(features, rows, bias)
            part = F.cross_entropy(logits, targets, reduction="sum") / n
            part.backward()
            total += part.detach()
        return total

    def _blocks(self, rows: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over each sample's block, gradient by hand (d loss / d logit = softmax -
        onehot): dense batched products, no autograd graph of the gathers."""
        layout, n = self.layout, len(self.features)
        rows.grad, bias.grad = torch.zeros_like(rows), torch.zeros_like(bias)
        total = self.features.new_zeros(())
        s = self.scale if self.kind == "cosine" else 1.0
        step = layout.blocks_per_chunk(self.chunk_logits)
        for lo in range(0, len(layout.rows), step):
            log_p = layout.logits(self.arranged, rows.detach(), bias.detach(), self.kind, self.scale, lo,
                                  lo + step).log_softmax(-1)
            own, samples, block_rows = layout.own[lo:lo + step], layout.samples[lo:lo + step], layout.rows[lo:lo + step]
            real = (samples >= 0).to(log_p.dtype)
            total -= (log_p.gather(-1, own[..., None]).squeeze(-1) * real).sum() / n
            d_logits = log_p.exp()
            d_logits.scatter_add_(-1, own[..., None], -real[..., None])  # softmax - onehot, padding rows 0
            # the padding samples' features are 0, so only the bias needs their d_logits masked
            d_rows = torch.bmm(d_logits.transpose(1, 2), self.arranged[lo:lo + step]).mul_(s / n)
            kept = block_rows >= 0
            rows.grad[block_rows[kept]] = d_rows[kept]
            if self.kind == "linear":
                bias.grad[block_rows[kept]] = (d_logits * real[..., None]).sum(1)[kept] / n
        return total


def fit_and_measure(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    free: torch.Tensor, *, fit: bool, kind: str, scale: float, weight_decay: float,
                    max_samples: int | None = None, block: int | str = 0, max_iter: int | str = 200, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Optionally :func:`fit_rows`, and measure each row's accuracy on ``features`` (before and after).

    The fit sees a stratified subsample of at most ``max_samples`` samples (``None``: all; seeded by
    ``seed``), at most ``max_iter`` iterations and, when ``block`` resolves to a block size (see
    :func:`compat_bct.row_sampling.resolve_block`), the block softmax, guarded: see :func:`_blocked`.
    Returns ``(weight, bias, report)``; ``report["accuracy_on_old_embeddings"]`` per row (None where
    no sample targets the row; on the fit's samples, or on the block fit's probe),
    ``report["accuracy_before_fit"]`` when ``fit``, and ``report["fit"]``: what the fit saw and did.
    """
    if not fit:
        return weight, bias, {"accuracy_on_old_embeddings": _rounded(row_accuracy(features, targets, weight, bias,
                                                                                  kind, scale))}
    subset = stratified_subsample(targets, max_samples, seed) if max_samples else None
    fit_features, fit_targets = (features, targets) if subset is None else (
        features[subset.to(features.device)], targets[subset.to(targets.device)])
    max_iter = resolve_max_iter(max_iter, int(free.sum()) * (weight.shape[1] + (kind == "linear")))
    block = resolve_block(block, len(fit_targets), len(weight), weight.shape[1], max_iter)
    plan = {"samples": len(fit_targets), "of_samples": len(features), "max_iter": max_iter}
    fit_args = {"kind": kind, "scale": scale, "weight_decay": weight_decay, "max_iter": max_iter}
    if block:
        return _blocked(features, targets, fit_features, fit_targets, weight, bias, free, block, seed, plan, fit_args)
    # measured on the fit's own samples: all of them unless subsampled, when all would cost more than the fit
    before = row_accuracy(fit_features, fit_targets, weight, bias, kind, scale)
    weight, bias = fit_rows(fit_features, fit_targets, weight, bias, free, **fit_args)
    after = row_accuracy(fit_features, fit_targets, weight, bias, kind, scale)
    report = {"accuracy_on_old_embeddings": _rounded(after), "accuracy_before_fit": _rounded(before),
              "fit": {**plan, "form": "exact"}}
    return weight, bias, report


def _blocked(features, targets, fit_features, fit_targets, weight, bias, free, block, seed, plan, fit_args):
    """The block fit, kept only if it labels a random probe of the samples (scored over *all* rows)
    at least as well as the starting rows: restricting the softmax lets rows drift into the regions of
    rows outside their block, which cost up to half the accuracy in our synthetic measurements
    (``plugins/bct/README.md``). The per-row accuracies reported are the probe's."""
    kind, scale = fit_args["kind"], fit_args["scale"]
    blocks = row_blocks(weight.to(features.device), block, seed)
    probe = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed + 1))[:PROBE_SAMPLES]
    probe = torch.sort(probe).values.to(features.device)
    x, y = features[probe], targets[probe.to(targets.device)]
    before = sample_hits(x, y, weight, bias, kind, scale)
    fitted_w, fitted_b = fit_rows(fit_features, fit_targets, weight, bias, free, blocks=blocks, **fit_args)
    after = sample_hits(x, y, fitted_w, fitted_b, kind, scale)
    kept = bool(after.mean() >= before.mean())
    out_w, out_b = (fitted_w, fitted_b) if kept else (weight.float().cpu().clone(), bias.float().cpu().clone())
    probe_report = {"samples": len(probe), "accuracy_before": round(float(before.mean()), 4),
                    "accuracy_after": round(float(after.mean()), 4), "kept": "fitted rows" if kept else "class means"}
    report = {"accuracy_on_old_embeddings": _rounded(row_accuracy(x, y, out_w, out_b, kind, scale)),
              "accuracy_before_fit": _rounded(row_accuracy(x, y, weight, bias, kind, scale)),
              "fit": {**plan, "form": "blocks", "blocks": len(blocks), "largest_block": max(len(b) for b in blocks),
                      "probe": probe_report}}
    return out_w, out_b, report


def describe_fit(report: dict, fitted: bool, poor: float = 0.5) -> str:
    """One line on how well the old classifier labels the old model's own training embeddings."""
    acc = report["accuracy_on_old_embeddings"]
    rows = [(a, name) for a, name in zip(acc, report["rows"], strict=True) if a is not None]
    mean = sum(a for a, _ in rows) / max(len(rows), 1)
    if fitted:
        before = [a for a in report["accuracy_before_fit"] if a is not None]
        return (f"old classifier with fitted synthesized rows: labels {mean:.0%} of the old model's training "
                f"embeddings correctly per row on average (class-mean rows: {sum(before) / max(len(before), 1):.0%})"
                f"{_bounds(report.get('fit') or {})}.")
    weak = sorted(rows)[:5]
    weak = [f"'{name}' {a:.0%}" for a, name in weak if a < poor]
    if not weak:
        return f"old classifier with synthesized rows: labels {mean:.0%} of the old model's training embeddings correctly per row on average."
    return (f"the old classifier with class-mean synthesized rows labels few of the old model's own training "
            f"embeddings of {', '.join(weak)} correctly: the influence loss will place new queries of those classes "
            f"where few old embeddings of them lie. --fit-synthesized fits the synthesized rows to the old embeddings.")


def _bounds(fit: dict) -> str:
    """How the fit was bounded (--fit-max-samples, --fit-block), or nothing when it was not."""
    parts = []
    if fit.get("samples", 0) < fit.get("of_samples", 0):
        parts.append(f"fitted on a stratified {fit['samples']:,} of {fit['of_samples']:,} samples")
    if fit.get("form") == "blocks":
        probe = fit["probe"]
        parts.append(f"each sample scored against its row's block ({fit['blocks']:,} blocks of at most "
                     f"{fit['largest_block']} rows); on {probe['samples']:,} probe samples scored over all rows "
                     f"the fit gave {probe['accuracy_after']:.0%} against {probe['accuracy_before']:.0%}, so the "
                     f"{probe['kept']} are used (accuracies above: the probe's)")
    return "; " + "; ".join(parts) if parts else ""


def _rounded(values: torch.Tensor) -> list[float | None]:
    return [None if v != v else round(float(v), 4) for v in values.tolist()]
