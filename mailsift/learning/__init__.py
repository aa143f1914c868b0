"""Learning from users' reports: the store-backed feedback learner the service runs
(:mod:`.feedback`). The math it applies to the model is :mod:`mailsift.classifier.online`."""
