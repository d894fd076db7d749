"""A torch Dataset over a scene file, for object-centric (slot attention) training."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from uncollapse.data.scenes.contract import SCENE_ARRAYS, SceneSet, load_scenes
from uncollapse.errors import InputError

__all__ = ["SceneDataset", "contract_problems"]


def contract_problems(arrays: Mapping[str, np.ndarray]) -> list[str]:
    """Every way ``arrays`` break the scene contract's keys, dtypes and shapes; empty if none."""
    problems = [f"array {key!r} ({spec.shape} {spec.dtype}) is missing"
                for key, spec in SCENE_ARRAYS.items() if key not in arrays]
    if problems:
        return problems
    for key, spec in SCENE_ARRAYS.items():
        if arrays[key].dtype != np.dtype(spec.dtype):
            problems.append(f"array {key!r} is {arrays[key].dtype}, expected {spec.dtype}")
    images, masks, num_objects = (arrays[k] for k in SCENE_ARRAYS)
    if images.ndim != 4 or images.shape[-1] != 3:
        problems.append(f"images has shape {list(images.shape)}, expected [N, H, W, 3]")
    elif masks.shape != images.shape[:3]:
        problems.append(f"masks has shape {list(masks.shape)}, expected [N, H, W] = "
                        f"{list(images.shape[:3])} as images")
    if num_objects.shape != images.shape[:1]:
        problems.append(f"num_objects has shape {list(num_objects.shape)}, expected [N] = "
                        f"[{images.shape[0]}] as images")
    return problems


class SceneDataset(Dataset):
    """The scenes of a scene file as items for object-centric training.

    Item ``i`` is a dict: ``image`` (float32 [3, H, W], values in [0, 1]), ``mask`` (int64
    [H, W]: 0 background, 1..num_objects the objects), ``num_objects`` (int64) and ``index``.

    Args:
        scenes: the path of a scene NPZ (read without pickle), a ``SceneSet`` (what
            ``uncollapse.pipeline.scenes.generate_scenes`` returns) or a mapping of the arrays
            ``images``, ``masks``, ``num_objects``.

    Raises:
        InputError: the file is missing, unreadable, or breaks the scene contract.
        ValueError: the arrays given break the contract (every problem is named).

    Example:
        >>> data = SceneDataset("scenes.npz")
        >>> loader = DataLoader(data, batch_size=64, shuffle=True, num_workers=4)
        >>> batch = next(iter(loader))  # batch["image"]: [64, 3, H, W], batch["mask"]: [64, H, W]

    ``__getitems__`` reads a whole batch with one gather per array (``DataLoader`` uses it);
    ``dataset[list_of_indices]`` returns the batch as one dict of stacked tensors.
    """

    def __init__(self, scenes: str | Path | SceneSet | Mapping[str, np.ndarray]):
        path = None
        if isinstance(scenes, SceneSet):
            arrays = {"images": scenes.images, "masks": scenes.masks,
                      "num_objects": scenes.num_objects}
        elif isinstance(scenes, Mapping):
            arrays = dict(scenes)
        else:
            path = Path(scenes)
            arrays = load_scenes(path)
        if problems := contract_problems(arrays):
            message = (f"breaks the scene file contract: {'; '.join(problems)}. Write images, "
                       "masks and num_objects as `uncollapse build scenes` does")
            if path is not None:
                raise InputError(path, message)
            raise ValueError(f"the scene arrays {message}")
        self.images = arrays["images"]
        self.masks = arrays["masks"]
        self.num_objects = arrays["num_objects"]

    def __len__(self) -> int:
        return len(self.num_objects)

    def batch(self, index) -> dict[str, torch.Tensor]:
        """The scenes ``index`` as one dict of tensors stacked along dim 0."""
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(index) and (index.min() < -n or index.max() >= n):
            raise IndexError(f"scene index out of range for {n} scenes")
        index = index % n if len(index) else index
        images = torch.from_numpy(self.images[index]).permute(0, 3, 1, 2)
        images = images.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
        return {"image": images,
                "mask": torch.from_numpy(self.masks[index].astype(np.int64)),
                "num_objects": torch.from_numpy(self.num_objects[index].astype(np.int64)),
                "index": torch.from_numpy(index.copy())}

    def __getitem__(self, index):
        """One scene as a dict (an int) or a batch as one dict (a list, array or tensor)."""
        if isinstance(index, (int, np.integer)) or (
                isinstance(index, torch.Tensor) and index.ndim == 0):
            return {key: value[0] for key, value in self.batch([int(index)]).items()}
        return self.batch(index)

    def __getitems__(self, indices) -> list[dict[str, torch.Tensor]]:
        """The scenes ``indices`` as a list of item dicts, gathered as one batch."""
        batch = self.batch(indices)
        columns = {key: value.unbind(0) for key, value in batch.items()}
        return [dict(zip(columns, values, strict=True))
                for values in zip(*columns.values(), strict=True)]
