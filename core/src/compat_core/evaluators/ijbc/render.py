"""Tables of ``compat eval ijbc``: percentages with two decimals, as the insightface tables print."""

from __future__ import annotations

from compat_core.tables import add_column


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def render_ijbc(console, result: dict) -> None:
    """Print the 1:1 table (TAR@FAR, AUC) and, when present, the 1:N table (top-k, TPIR@FPIR)."""
    from rich.table import Table

    settings = result["settings"]
    mode = "cross: old gallery side, new probe side" if result["mode"] == "cross" else "self"
    verification = result["verification"]
    table = Table(title=f"{settings['target'].upper()} 1:1 verification, {mode} (TAR@FAR, percent)")
    keys = list(verification["tar_at_far"])
    for column in ["", *keys, "AUC"]:
        add_column(table, column, right=True)
    table.add_row("TAR", *(_percent(verification["tar_at_far"][k]) for k in keys), _percent(verification["auc"]))
    console.print(table)
    console.print(f"{verification['n_pairs']} pairs ({verification['n_genuine']} genuine), "
                  f"{settings['n_templates']} templates, {settings['n_faces']} faces")
    identification = result.get("identification")
    if not identification:
        return
    fpirs = list(identification["G1"]["tpir_at_fpir"])
    search = Table(title=f"{settings['target'].upper()} 1:N identification, {mode} (percent)")
    for column in ["gallery", "top-1", "top-5", "top-10", *(f"TPIR@{k}" for k in fpirs)]:
        add_column(search, column, right=column != "gallery")
    for name in ("G1", "G2", "mean"):
        row = identification[name]
        search.add_row(name, *(_percent(row[k]) for k in ("top1", "top5", "top10")),
                       *(_percent(row["tpir_at_fpir"][k]) for k in fpirs))
    merged = identification["merged"]
    search.add_row("G1+G2 merged", *(_percent(merged[k]) for k in ("top1", "top5", "top10")), *("" for _ in fpirs))
    console.print(search)
