"""The consensus study: :mod:`.test` (the consensus test), :mod:`.planner` (pilot and
reliability) and :mod:`.run` (the stage)."""
