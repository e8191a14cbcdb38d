"""Core's built-in plugin: registered through the same hooks, and the same entry-point group, as
any third-party plugin. Keep this module light: no torch or timm at import time."""

from __future__ import annotations

from compat_core.hookspecs import hookimpl


@hookimpl
def compat_register_methods(register):
    register(
        "baseline",
        config="compat_core.methods.configs:BaselineConfig",
        factory="compat_core.methods.baseline:Baseline",
        summary="Plain training with the chosen head; trains old models and independent new models.",
    )


@hookimpl
def compat_register_losses(register):
    register("cross_entropy", factory="compat_core.losses:cross_entropy_terms",
             summary="Softmax cross-entropy with optional label smoothing.")


@hookimpl
def compat_register_backbones(register):
    register("timm", factory="compat_core.models.backbone:create_timm_backbone",
             summary="Any timm model name, created with pretrained=False (never downloads).")
    for depth in (18, 34, 50, 100):
        register(f"iresnet{depth}", factory=f"compat_core.models.iresnet:iresnet{depth}",
                 summary=f"insightface-style IResNet-{depth} face backbone: 112x112 input, BN-dropout-FC-BN head, "
                         f"512-d (use --image-size 112 --embedding-dim 0).")
    register("test_iresnet", factory="compat_core.models.iresnet:test_iresnet",
             summary="A tiny IResNet for tests: one block per stage, 32x32 input, 64-d.")


@hookimpl
def compat_register_presets(register):
    for name, summary in (("mixbct-face", "the MixBCT repository's face recipe for new models (iresnet50)"),
                          ("mixbct-face-old", "the MixBCT repository's face recipe for old models (iresnet18)")):
        register(name, path=f"compat_core:presets/{name}.yaml", summary=summary)


@hookimpl
def compat_register_datasets(register):
    formats = "compat_core.data.formats"
    register("imagefolder", factory=f"{formats}.imagefolder:open_imagefolder",
             detect="compat_core.data.detect:is_imagefolder",
             summary="Folder with train/ and val/ or test/, one sub-folder per class.")
    register("imagelist", factory=f"{formats}.imagelist:open_imagelist",
             detect="compat_core.data.detect:is_imagelist",
             summary="Text files of `path label` lines (train.txt, test.txt / val.txt).")
    register("cifar", factory=f"{formats}.cifar:open_cifar", detect="compat_core.data.detect:is_cifar",
             summary="CIFAR-10/100 python pickles (cifar-10-batches-py, cifar-100-python).")
    register("idx", factory=f"{formats}.idx:open_idx", detect="compat_core.data.detect:is_idx",
             summary="MNIST-style IDX files, gzipped or not (MNIST, Fashion-MNIST, KMNIST...).")
    register("recordio", factory=f"{formats}.recordio:open_recordio", detect="compat_core.data.detect:is_recordio",
             summary="MXNet RecordIO face sets (insightface train.rec + train.idx), read without mxnet.")
    register("digits", factory=f"{formats}.named:open_digits",
             summary="scikit-learn's bundled 8x8 digits (1,797 images), fixed disjoint splits: "
                     "train 1,077, val 270, test 450.")
    register("fashion-mnist", factory=f"{formats}.named:open_fashion_mnist",
             summary="Fashion-MNIST from /usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist).")


@hookimpl
def compat_register_backfill_orders(register):
    register("random", factory="compat_core.backfill.orders:random_order",
             summary="A seeded random permutation (--seed): the baseline every other order must beat.")
    register("distance", factory="compat_core.backfill.orders:distance_order",
             summary="Largest distance between the stored vector and the new model's first (an oracle: needs "
                     "--new, which embeds the whole gallery).")


@hookimpl
def compat_register_evaluators(register):
    register("retrieval", config="compat_core.evaluators.retrieval:RetrievalOptions",
             run="compat_core.evaluators.retrieval:run_retrieval",
             summary="Cross-model retrieval: CMC top-1/top-5 and mAP of a query model against a gallery model.")
    register("matrix", config="compat_core.evaluators.matrix:MatrixOptions",
             run="compat_core.evaluators.matrix:run_matrix",
             render="compat_core.evaluators.matrix:render_matrix",
             summary="Every query/gallery pair of several model generations, with the BCT criterion.")
    register("ijbc", config="compat_core.evaluators.ijbc.options:IjbcOptions",
             run="compat_core.evaluators.ijbc.run:run_ijbc",
             render="compat_core.evaluators.ijbc.render:render_ijbc",
             summary="IJB-C / IJB-B faces: 1:1 TAR@FAR and (-N) 1:N search; cross test with an old model "
                     "on the gallery side.")
    register("regression", config="compat_core.evaluators.regression:RegressionOptions",
             run="compat_core.evaluators.regression:run_regression",
             render="compat_core.evaluators.regression:render_regression",
             summary="Classifier update: accuracy, negative/positive flip rate and impact (NFR, NFI, PFR, PFI), "
                     "BTC, BEC, flips per class; several --old runs form an ensemble.")
