"""Device and dtype settings of the model stages, resolved one way everywhere."""

from __future__ import annotations

from fakeclue_builder.config import ConfigError


def resolve_device_dtype(device: str, dtype: str, key: str, gpu_dtype: str) -> tuple[str, str]:
    """("cuda" | "cpu" | "cuda:N", dtype name) for a stage's `device` / `dtype` settings.

    `auto` picks cuda when a GPU is visible, else cpu; dtype `auto` is `gpu_dtype` on a GPU and float32 on
    CPU. Asking for cuda without a GPU is a config error that says what to change (`key` is the config path).
    """
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}.device={device} but no GPU is visible; use --set {key}.device=cpu")
    if dtype == "auto":
        dtype = gpu_dtype if device.startswith("cuda") else "float32"
    return device, dtype
