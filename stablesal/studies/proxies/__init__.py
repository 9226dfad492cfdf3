"""Stability without retraining: how a proxy's variants of one model compare with independently
retrained models (:mod:`.calibration`), and the estimate a user gets from them (:mod:`.estimate`)."""
