"""Argument checks shared by the public API: each error names the argument and what was expected."""

from __future__ import annotations

import warnings

import torch
from torch import nn


def check_images(images: torch.Tensor, name: str = "inputs", channels: int | None = None) -> torch.Tensor:
    """Check a batch of images ``[B, C, H, W]`` of a floating dtype with finite values."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, C, H, W], got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape [B, C, H, W], got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(images.shape)})")
    if min(images.shape[1:]) == 0:
        raise ValueError(f"{name} has an empty channel or spatial dimension (shape {tuple(images.shape)})")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (pixel values in [0, 1]), got dtype {images.dtype}")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got {images.shape[1]}")
    if not torch.isfinite(images).all():
        bad = (~torch.isfinite(images)).sum().item()
        raise ValueError(f"{name} contains {bad} NaN or infinite values")
    return images


def check_targets(target, batch_size: int, num_classes: int | None, name: str = "target") -> torch.Tensor:
    """Turn ``target`` (int, sequence or tensor) into a LongTensor ``[B]`` and range-check it."""
    if target is None:
        raise ValueError(f"{name} is required: the class index to explain for each image")
    if isinstance(target, int):
        target = torch.full((batch_size,), target, dtype=torch.long)
    else:
        target = torch.as_tensor(target)
        if target.is_floating_point():
            raise TypeError(f"{name} must hold integer class indices, got dtype {target.dtype}")
        target = target.long().reshape(-1)
        if target.numel() == 1 and batch_size > 1:
            target = target.expand(batch_size).clone()
    if target.numel() != batch_size:
        raise ValueError(f"{name} must have one class index per image ({batch_size}), got {target.numel()}")
    if (target < 0).any() or (num_classes is not None and (target >= num_classes).any()):
        expected = f"0 <= {name} < {num_classes}" if num_classes is not None else "class indices >= 0"
        raise ValueError(f"{name} out of range: got values in [{int(target.min())}, {int(target.max())}], "
                         f"expected {expected}")
    return target


def check_maps(maps: torch.Tensor, images: torch.Tensor, name: str = "maps") -> torch.Tensor:
    """Check attribution maps against their images ``[B, C, H, W]``: ``[B, H, W]``, ``[B, 1, H, W]``
    or ``[B, C, H, W]``, finite."""
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(maps).__name__}")
    batch, channels, height, width = images.shape
    allowed = [(batch, height, width), (batch, 1, height, width), (batch, channels, height, width)]
    if tuple(maps.shape) not in allowed:
        raise ValueError(f"{name} must have shape [B, H, W], [B, 1, H, W] or [B, C, H, W] matching the images "
                         f"{tuple(images.shape)}, got {tuple(maps.shape)}")
    if not torch.isfinite(maps).all():
        raise ValueError(f"{name} contains {(~torch.isfinite(maps)).sum().item()} NaN or infinite values")
    return maps


def check_model_inputs(model, images: torch.Tensor, target, maps: torch.Tensor | None = None,
                       images_name: str = "images", maps_name: str = "maps") -> torch.Tensor:
    """The checks of a metric that runs ``model`` on ``images`` (and reads ``maps``): a model in eval
    mode (set, with a warning, when it is not) that returns logits on them, finite images ``[B, C, H, W]``, maps of matching shape, and
    one class index per image within the model's classes. Returns the targets as ``[B]`` longs on
    the images' device. Costs one forward pass of one image."""
    ensure_eval(model)
    check_images(images, images_name)
    if maps is not None:
        check_maps(maps, images, maps_name)
    with torch.inference_mode():
        num_classes = forward_checked(model, images[:1], images_name).shape[1]
    return check_targets(target, images.shape[0], num_classes).to(images.device)


def check_eval_model(model: nn.Module, name: str = "model") -> nn.Module:
    """Refuse models in training mode: dropout and batch-norm statistics would make maps random."""
    if not isinstance(model, nn.Module):
        if callable(model):
            return model
        raise TypeError(f"{name} must be a torch.nn.Module or a callable, got {type(model).__name__}")
    if model.training:
        raise ValueError(f"{name} is in training mode; call {name}.eval() first (dropout and batch-norm would make its outputs random)")
    return model


def ensure_eval(model, name: str = "model"):
    """Put a model found in training mode into eval mode, with a warning that says so (dropout and
    batch-norm statistics would otherwise make every score random); other callables pass."""
    if not isinstance(model, nn.Module):
        if callable(model):
            return model
        raise TypeError(f"{name} must be a torch.nn.Module or a callable, got {type(model).__name__}")
    if model.training:
        warnings.warn(f"{name} was in training mode; stablesal set it to eval mode (dropout and batch-norm would "
                      "make its outputs random)", stacklevel=3)
        model.eval()
    return model


def model_device(model) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for parameter-free callables)."""
    if isinstance(model, nn.Module):
        for tensor in model.parameters():
            return tensor.device
        for tensor in model.buffers():
            return tensor.device
    return torch.device("cpu")


def forward_checked(model, inputs: torch.Tensor, name: str = "inputs") -> torch.Tensor:
    """The model's logits ``[B, classes]`` on ``inputs``; a model that cannot run on them (wrong
    channels, too small an image) or returns something else gets an error naming the input shape."""
    try:
        logits = model(inputs)
    except RuntimeError as error:
        raise ValueError(f"the model cannot run on {name} of shape {tuple(inputs.shape)} (check channels and image "
                         f"size): {str(error).splitlines()[0]}") from error
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != inputs.shape[0]:
        raise ValueError(f"the model must return logits [B, classes] for {name} of shape {tuple(inputs.shape)}, got "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    return logits
