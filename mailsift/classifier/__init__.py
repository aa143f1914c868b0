"""The scoring core: no SMTP, HTTP or store in here.

- :mod:`.features`: ParsedMessage + rule hits -> :class:`~.features.Sample` -> hashed
  sparse features (stateless).
- :mod:`.model`: :class:`~.model.SpamModel` (nb / cnb / logreg / blend), ``train_model``,
  skops artifacts with a sha256-checked manifest.
- :mod:`.scorer`: :class:`~.scorer.Scorer` (raw message -> Verdict), ``load_rules``.
- :mod:`.rules`: the SpamAssassin-syntax rule engine.
- :mod:`.online`: in-place updates of a fitted model from single lessons, and the additive
  corrections of users' lessons (the math; who may teach what is :mod:`mailsift.learning`).

Training (corpus readers, parallel feature extraction, MLflow) is :mod:`mailsift.pipeline`.
"""
