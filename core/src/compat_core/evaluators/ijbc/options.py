"""Options of ``compat eval ijbc`` (each field becomes a flag). Light: no torch, no numpy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from compat_core.config import Options


class IjbcOptions(Options):
    """What to evaluate and how; the flag names are a contract (``compat eval ijbc --help``)."""

    root: str = Field(..., description="IJB folder holding loose_crop/ and meta/ (e.g. IJB_release/IJBC).")
    target: Literal["ijbc", "ijbb"] = Field("ijbc", description="Which benchmark's meta files to read.")
    model: str | None = Field(None, description="Run directory of the (new) model: faces are aligned and embedded.")
    features: str | None = Field(None, description="Image features of the (new) model instead of --model: .npz "
                                                   "with `features`, one row per line of the face file.")
    old_model: str | None = Field(None, description="Old model for the cross test: it encodes the gallery side.")
    old_features: str | None = Field(None, description="Old image features (.npz) for the cross test.")
    align: Literal["auto", "truncate", "zero-pad"] = Field(
        "auto", description="Cross test with models of different dimensions: truncate to the shorter (BT^2's "
                            "old-compatible prefix), zero-pad the shorter, or auto (what the new model recorded).")
    one_to_n: bool = Field(False, description="Also run 1:N identification (G1, G2, mean, merged).",
                           json_schema_extra={"aliases": ["-N"]})
    flip: bool = Field(True, description="With --model: add the embedding of the mirrored face.")
    detector_score: bool = Field(True, description="Weight each face by its detector score.")
    normalize_image_features: bool = Field(False, description="L2-normalise each face's feature before pooling.")
    batch_size: int = Field(128, ge=1, description="Faces per forward pass (with --model).")
    workers: int = Field(0, ge=0, description="Image decoding and alignment worker processes (with --model).")
    device: str = Field("auto", description="cpu, cuda or auto (with --model).")
