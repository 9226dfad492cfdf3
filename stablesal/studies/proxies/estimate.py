"""The estimate of cross-seed agreement from one trained model (``stablesal estimate``;
docs/methods.md §8).

A proxy's variants of the user's model are explained like retrained models; their mean
between-variant Spearman is moved by the calibration's measured offset (proxy − truth, from
``experiments/results/proxy.json``) to predict the agreement independently retrained models would
show. The interval adds the variants' own design interval and the calibration offset's interval
in quadrature (half-widths). It is an estimate, labelled so, and names the evidence it rests on;
where the input falls outside what was calibrated (another proxy, image size, channel count, method
or grouping) it refuses in one line rather than extrapolate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ...core.intervals import design_interval, pair_mean
from .calibration import pair_arrays


# the calibration stablesal ships: experiments/results/proxy.json, copied (tests keep them equal), and
# how far its correction carried to held-out settings: experiments/results/proxy_transfer.json, copied
SHIPPED_CALIBRATION = Path(__file__).resolve().parent / "calibration.json"
SHIPPED_TRANSFER = Path(__file__).resolve().parent / "transfer.json"
Z95 = 1.959963984540054  # the normal quantile of a 95 % interval


def transfer_spread(transfer: dict | None, proxy: str, method: str, grouping: str) -> float | None:
    """The root-mean-square error of the correction on held-out settings for one proxy × method ×
    grouping (``analysis/proxy_transfer.py``'s rows), or None without any: how much the offset
    itself moves between data sets and architectures, which the calibration's own interval (one
    setting, one parent model) does not contain."""
    errors = [row["error"] for row in (transfer or {}).get("rows", [])
              if (row["proxy"], row["method"], row["grouping"]) == (proxy, method, grouping)]
    return math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else None


def calibration_path(path: Path | str) -> Path:
    """The calibration file a ``[proxy] calibration`` names: ``""`` is the shipped one."""
    return SHIPPED_CALIBRATION if str(path) == "" else Path(path)


def load_calibration(path: Path | str) -> dict:
    """The calibration file written by ``analysis/proxy_calibration.py`` (``""``: the shipped one)."""
    path = calibration_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"[proxy] calibration: no calibration file at {path} (the committed one is "
                                "experiments/results/proxy.json; analysis/proxy_calibration.py writes it)")
    calibration = json.loads(path.read_text())
    if not isinstance(calibration, dict) or "rows" not in calibration:
        raise ValueError(f"[proxy] calibration: {path} is not a proxy calibration file (no 'rows')")
    return calibration


def evidence(calibration: dict, path: Path | str) -> str:
    """One line naming what a calibration rests on: its file, commit, data, architecture and K."""
    path = ("stablesal's shipped calibration, experiments/results/proxy.json" if calibration_path(path) == SHIPPED_CALIBRATION
            else path)
    recorded = calibration.get("commit") or "unknown commit"
    commit = recorded[:10] + (", with uncommitted changes" if recorded.endswith(" dirty") else "")
    dataset = calibration.get("dataset", {}).get("name", "?")
    return (f"{path} (commit {commit}: {dataset} at {calibration.get('image_side')} px, "
            f"{calibration.get('architecture')}, {calibration.get('k_truth')} retrained models vs each proxy's "
            f"variants, beyond {calibration.get('k_null')} {calibration.get('null', 'null')} models)")


# the [proxy] keys each proxy's variants depend on: an estimate with other values than the
# calibration's would apply an offset measured for other variants
PROXY_KEYS = {"finetune": ("k", "finetune_fraction", "finetune_lr"),
              "bootstrap_finetune": ("k", "finetune_fraction", "finetune_lr"),
              "spawn": ("spawn_k", "spawn_epoch"), "dropout": ("k",),
              "swag": ("k", "finetune_lr", "swag_fraction", "swag_snapshots", "bn_images"),
              "laplace": ("k", "laplace_images", "prior_precision")}


def check_calibrated(calibration: dict, proxies: list[str], image_side: int, channels: int,
                     units: list[tuple[str, str]], settings: dict | None = None) -> None:
    """Refuse (one ``ValueError`` line) what the calibration does not cover: a proxy it has no row
    for (or refused), another image side or channel count, no method × grouping in common, or
    (with ``settings``, the ``[proxy]`` section as a dict) a proxy setting other than the one the
    calibration's variants were made with."""
    calibrated = {row["proxy"] for row in calibration["rows"]}
    for proxy in proxies:
        if proxy not in calibrated:
            why = calibration.get("refused", {}).get(proxy)
            raise ValueError(f"[proxy] names: {proxy!r} is not calibrated ("
                             + (f"the calibration refused it: {why}" if why else
                                f"calibrated: {sorted(calibrated)}") + "); an estimate would extrapolate")
    if image_side != calibration.get("image_side") or channels != calibration.get("channels"):
        raise ValueError(f"[data] images of {channels} × {image_side} px: the calibration covers "
                         f"{calibration.get('channels')} × {calibration.get('image_side')} px only; an estimate "
                         "would extrapolate")
    calibrated_settings = (calibration.get("config") or {}).get("proxy")
    if settings is not None and calibrated_settings:
        for proxy in proxies:
            for key in PROXY_KEYS[proxy]:
                if key in calibrated_settings and settings.get(key) != calibrated_settings[key]:
                    raise ValueError(f"[proxy] {key} = {settings.get(key)!r}: the calibration of {proxy!r} was made with "
                                     f"{key} = {calibrated_settings[key]!r}; an estimate with other variants would "
                                     "apply an offset measured for those")
    covered = {(row["method"], row["grouping"]) for row in calibration["rows"]}
    if not covered & set(units):
        raise ValueError(f"[gradient] methods × groupings: none is calibrated (calibrated: {sorted(covered)})")


def _half(low: float, high: float) -> float:
    return (high - low) / 2


def estimate_rows(units: list[dict], calibration: dict, proxy: str, source: str = "",
                  transfer: dict | None = None) -> list[dict]:
    """Per method × grouping of the proxy's study ``units``: the variants' agreement, the
    calibration's offset and the predicted cross-seed agreement, each with its interval; units the
    calibration does not cover get ``refused`` and no prediction. The prediction's half-width adds
    in quadrature the variants' half-width, the offset's and, with ``transfer``
    (:func:`transfer_spread`), 1.96 × the correction's error on held-out settings."""
    by_unit = {(row["proxy"], row["method"], row["grouping"]): row for row in calibration["rows"]}
    rows = []
    for (model_set, method, grouping), values in pair_arrays(units).items():
        if model_set != proxy:
            continue
        row = {"method": method, "grouping": grouping, "proxy": proxy, "kind": "estimate",
               "k_variants": values.shape[1], "n_images": values.shape[0]}
        agreement = design_interval(lambda w: pair_mean(values, w, proxy), values.shape[0],
                                    {proxy: values.shape[1]}, bounds=(-1, 1))
        row.update(agreement.as_dict("proxy_agreement"))
        calibrated = by_unit.get((proxy, method, grouping))
        if calibrated is None:
            row["refused"] = f"{method} × {grouping} is not calibrated for {proxy}"
            rows.append(row)
            continue
        offset = calibrated["difference"]
        spread = transfer_spread(transfer, proxy, method, grouping)
        half = math.hypot(_half(agreement.low, agreement.high),
                          _half(calibrated["difference_ci_low"], calibrated["difference_ci_high"]),
                          Z95 * spread if spread is not None else 0.0)
        row["transfer_rms_error"] = spread
        predicted = agreement.estimate - offset
        row.update({"calibration_difference": offset,
                    "calibration_difference_ci_low": calibrated["difference_ci_low"],
                    "calibration_difference_ci_high": calibrated["difference_ci_high"],
                    "calibration_rank_correlation": calibrated["rank_correlation"],
                    "predicted_cross_seed_agreement": predicted,
                    "predicted_cross_seed_agreement_ci_low": max(-1.0, predicted - half),
                    "predicted_cross_seed_agreement_ci_high": min(1.0, predicted + half),
                    "predicted_half_width": half,  # before the interval is clipped to [−1, 1]
                    "evidence": source})
        rows.append(row)
    return rows
