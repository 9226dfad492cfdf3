"""The shape of ``results.json``: every top-level key and its type. The run-level keys are
:class:`Results`; each stage declares the types of its own entries (``entry_types``). The pipeline
checks a results dictionary before writing (:func:`check_results`), so a stage cannot add, drop or
retype a key silently, and every command writes the same shape (a stage that did not run leaves its
entries at their ``absent`` values).
"""

from __future__ import annotations

from typing import TypedDict, get_type_hints

SCHEMA_VERSION = 3  # 2: the stage pipeline (the ``stages`` and ``schema`` keys); 3: ``warnings``


class Results(TypedDict):
    """The keys every results file has, whatever stages ran. Each stage adds its own entries, typed
    by its ``entry_types`` (:mod:`stablesal.pipeline.stages`)."""

    schema: int                        # SCHEMA_VERSION
    config: dict                       # the configuration, section by section
    environment: dict                  # versions of stablesal, torch, Python and libraries; machine; code hash
    dataset: dict                      # the data's name, sizes, classes
    stages: list                       # the stages that ran, in order
    timings_s: dict                    # seconds: data, training, each stage, total
    models: list                       # one row per model: main and control models, and a stage's own (folds)
    stability_summary: list            # one row per model set × method × grouping (gradient, then perturbation)
    seeds: dict                        # every configured seed, "section.key" -> value
    intervals: dict                    # table -> how its intervals were computed
    warnings: list                     # what the run warned about (one sentence each), in order


# The lists several stages add rows to, in stage order: the summary (the stability stage's rows,
# then the perturbation stage's) and the models (main and control, then a stage's own, e.g. the
# fold models). Any other key belongs to one stage.
SHARED_LISTS = ("stability_summary", "models")


def _allowed(annotation) -> tuple[type, ...]:
    """The runtime types of an annotation (``dict | None`` → ``(dict, NoneType)``)."""
    args = getattr(annotation, "__args__", None)
    return tuple(args) if args else (annotation,)


def check_results(results: dict, entry_types: dict) -> None:
    """Refuse a results dictionary whose top-level keys or types differ from :class:`Results` plus
    the stages' ``entry_types`` (key -> type), naming each difference."""
    expected = {**get_type_hints(Results), **entry_types}
    problems = [f"missing {key!r}" for key in expected if key not in results]
    problems += [f"unexpected {key!r}" for key in results if key not in expected]
    problems += [f"{key!r} is {type(results[key]).__name__}, expected {expected[key]}" for key in expected
                 if key in results and not isinstance(results[key], _allowed(expected[key]))]
    if problems:
        raise ValueError("results.json does not match its schema (stablesal.pipeline.schema.Results and the "
                         "stages' entry_types): " + "; ".join(problems))
