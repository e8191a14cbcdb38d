"""compat-adapter: a map between two frozen embedding spaces, fitted on paired embeddings.

``compat train adapter --old OLD --new NEW --kind procrustes|affine|low-rank|mlp --direction old-to-new|
new-to-old``: no backbone is trained. The run is a model every evaluator and index command accepts:
old model + map (a gallery model in the new space, as FCT's) or new model + map (a query model in the
old space: the gallery is never touched).
"""
