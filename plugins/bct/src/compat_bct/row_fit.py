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


def row_accuracy(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 kind: str = "linear", scale: float = 1.0) -> torch.Tensor:
    """Per-row accuracy (R,) of the classifier on ``features`` whose correct rows are ``targets``;
    NaN for rows no sample targets."""
    device = features.device
    targets = targets.to(device)
    logits = score(features.float(), weight.float().to(device), bias.float().to(device), kind, scale)
    hits = (logits.argmax(1) == targets).float()
    counts = torch.bincount(targets, minlength=len(weight)).float()
    correct = torch.zeros(len(weight), device=device).index_add_(0, targets, hits)
    accuracy = torch.where(counts > 0, correct / counts.clamp_min(1), torch.full_like(counts, float("nan")))
    return accuracy.cpu()


def score(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, kind: str, scale: float) -> torch.Tensor:
    """Logits of the old classifier: ``scale * cos(f, w)`` (``kind="cosine"``) or ``W f + b``."""
    if kind == "cosine":
        return scale * F.linear(F.normalize(features, dim=1), F.normalize(weight, dim=1))
    return F.linear(features, weight, bias)


def fit_rows(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
             free: torch.Tensor, *, kind: str = "linear", scale: float = 1.0, weight_decay: float = 1e-3,
             max_iter: int = 200, chunk_logits: int = 2**25) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit the rows marked ``free`` (and, for linear logits, their biases) by full-batch L-BFGS on the
    softmax cross-entropy of ``features`` against ``targets``; the other rows stay as they are.

    Starts from the given rows (the class means), so the fit is deterministic. ``weight_decay`` adds
    ``weight_decay * sum ||w_free||^2`` to the mean loss (linear logits only: cosine logits ignore the
    norm): without it, separable classes drive the free rows' norms up without bound, and rows far
    longer than the real ones make the influence loss trivial to satisfy for the new classes.

    Runs on the device of ``features`` (the old model's): at most ``max_iter`` L-BFGS iterations, each a
    few products of the (N, D) features with the (R, D) rows (3 s for 60,000 x 128 x 10 on a 2-core CPU).
    The loss is summed over chunks of samples so that at most ``chunk_logits`` logits exist at once
    (memory stays bounded for many classes; the cost is N x R x D per product whatever the chunking).
    Returns ``(weight, bias)`` as new tensors on the CPU.
    """
    features, targets = features.float(), targets.long().to(features.device)
    weight, bias = weight.float().to(features.device), bias.float().to(features.device)
    free = free.bool().to(features.device)
    if not bool(free.any()) or not len(features):
        return weight.cpu().clone(), bias.cpu().clone()
    n, step = len(features), max(1, chunk_logits // len(weight))
    free_w = weight[free].clone().requires_grad_(True)
    free_b = bias[free].clone().requires_grad_(kind == "linear")
    params = [free_w, free_b] if kind == "linear" else [free_w]
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def assembled() -> tuple[torch.Tensor, torch.Tensor]:
        w, b = weight.clone(), bias.clone()
        w[free], b[free] = free_w, free_b
        return w, b

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        w, b = assembled()
        total = features.new_zeros(())
        for lo in range(0, n, step):  # gradients accumulate chunk by chunk over one shared graph of the rows
            logits = score(features[lo:lo + step], w, b, kind, scale)
            part = F.cross_entropy(logits, targets[lo:lo + step], reduction="sum") / n
            part.backward(retain_graph=True)
            total += part.detach()
        if kind == "linear" and weight_decay:
            penalty = weight_decay * free_w.pow(2).sum()
            penalty.backward()
            total += penalty.detach()
        return total

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        w, b = assembled()
    return w.detach().cpu(), b.detach().cpu()


def fit_and_measure(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    free: torch.Tensor, *, fit: bool, kind: str, scale: float, weight_decay: float
                    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Optionally :func:`fit_rows`, and measure each row's accuracy on ``features`` (before and after).

    Returns ``(weight, bias, report)``; ``report["accuracy_on_old_embeddings"]`` per row (None where no
    sample targets the row), plus ``report["accuracy_before_fit"]`` when ``fit``.
    """
    before = row_accuracy(features, targets, weight, bias, kind, scale)
    if fit:
        weight, bias = fit_rows(features, targets, weight, bias, free, kind=kind, scale=scale,
                                weight_decay=weight_decay)
    report = {"accuracy_on_old_embeddings": _rounded(row_accuracy(features, targets, weight, bias, kind, scale))}
    if fit:
        report["accuracy_before_fit"] = _rounded(before)
    return weight, bias, report


def describe_fit(report: dict, fitted: bool, poor: float = 0.5) -> str:
    """One line on how well the old classifier labels the old model's own training embeddings."""
    acc = report["accuracy_on_old_embeddings"]
    rows = [(a, name) for a, name in zip(acc, report["rows"], strict=True) if a is not None]
    mean = sum(a for a, _ in rows) / max(len(rows), 1)
    if fitted:
        before = [a for a in report["accuracy_before_fit"] if a is not None]
        return (f"old classifier with fitted synthesized rows: labels {mean:.0%} of the old model's training "
                f"embeddings correctly per row on average (class-mean rows: {sum(before) / max(len(before), 1):.0%}).")
    weak = sorted(rows)[:5]
    weak = [f"'{name}' {a:.0%}" for a, name in weak if a < poor]
    if not weak:
        return f"old classifier with synthesized rows: labels {mean:.0%} of the old model's training embeddings correctly per row on average."
    return (f"the old classifier with class-mean synthesized rows labels few of the old model's own training "
            f"embeddings of {', '.join(weak)} correctly: the influence loss will place new queries of those classes "
            f"where few old embeddings of them lie. --fit-synthesized fits the synthesized rows to the old embeddings.")


def _rounded(values: torch.Tensor) -> list[float | None]:
    return [None if v != v else round(float(v), 4) for v in values.tolist()]
