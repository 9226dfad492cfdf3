"""The studies, one folder each: :mod:`.stability`, :mod:`.folds`, :mod:`.factors`, :mod:`.removal`
and :mod:`.consensus`. A study computes rows; it writes no report."""
