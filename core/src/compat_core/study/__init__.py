"""Multi-seed studies: one protocol, many methods, every old seed paired with every new seed.

``spec`` reads the study file, ``plan`` lists its runs and evaluations, ``runner`` carries them out
(resumably), ``report`` summarises the results as mean ± std, ``render`` prints, writes Markdown and
plots them.
"""
