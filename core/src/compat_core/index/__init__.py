"""A real vector index (faiss) with provenance on every vector: ``compat index build|search|info``.

An index folder holds ``index.faiss`` (the faiss index; ids are the items' dataset indices), ``items.npz``
(ids, labels and, per id, the code of the model that made its vector) and ``manifest.json`` (format,
kind, metric, dimension, count, data, split, classes and the models: fingerprint, run, transformation).
The manifest is written last and names the count and dimension of the faiss file it goes with, so a
reader detects a folder whose parts do not belong together.
"""
