"""The scoring core: no SMTP, HTTP, store or model registry in here (tests/test_layers.py).

- :mod:`.features`: ParsedMessage + rule hits -> :class:`~.features.Sample` -> hashed
  sparse features (stateless).
- :mod:`.model`: :class:`~.model.SpamModel` (nb / cnb / logreg / blend), ``train_model``.
- :mod:`.persistence`: the model's artifacts (skops, a manifest with its sha256, trusted
  types only); :mod:`.serving`: the fitted arrays a serving process scores with, without
  scikit-learn.
- :mod:`.scorer`: :class:`~.scorer.Scorer` (a model folder + raw message -> Verdict),
  ``load_rules``. Which folder serves is the caller's choice
  (:func:`mailsift.pipeline.registry.serving_model_dir`).
- :mod:`.rules`: the SpamAssassin-syntax rule engine.
- :mod:`.online`: in-place updates of a fitted model from single lessons, and the additive
  corrections of users' lessons (the math; who may teach what is :mod:`mailsift.learning`).

Training (corpus readers, parallel feature extraction, MLflow) is :mod:`mailsift.pipeline`.
"""
