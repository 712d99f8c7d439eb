"""Paper steps shared by several papers (a step's ``module: shared.steps.<name>`` in paper.yaml).

Each module here is run like a paper's ``figures.py`` (:mod:`shared.figure_step`) and imports no
paper statically: it builds methods by name (:func:`shared.explain.build_explainer`).
"""
