"""Reliability checks of the training run: kill and resume it (:mod:`.chaos`), read back what it left on disk and
in MLflow (:mod:`.checks`), on the smallest policy and discriminator pair (:mod:`.tiny`)."""
