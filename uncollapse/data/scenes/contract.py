"""The scene file contract: synthetic scenes for object-centric (slot attention) training.

A scene file is one NPZ of plain arrays (it loads with ``allow_pickle=False``); scene ``i`` is
row ``i`` of every array. ``images`` holds the RGB pixels, ``masks`` the object each pixel
shows (0 is background, 1..``num_objects[i]`` the objects, each visible), ``num_objects`` how
many objects the scene holds. ``SCENE_ARRAYS`` is the one definition of the arrays; the
builder writes them, ``uncollapse validate scenes`` checks them and ``SceneDataset``
(``uncollapse.data.scenes.dataset``) serves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uncollapse.atomic import atomic_path
from uncollapse.data.npz import check_declared_sizes, why
from uncollapse.data.readable import ZIP, check_input_file
from uncollapse.data.spec import ArraySpec, DocSection
from uncollapse.errors import InputError

__all__ = ["DOC_SECTIONS", "IMAGES", "MASKS", "NUM_OBJECTS", "SCENE_ARRAYS", "SceneSet",
           "load_scenes", "save_scenes"]

IMAGES = "images"
MASKS = "masks"
NUM_OBJECTS = "num_objects"

SCENE_ARRAYS: dict[str, ArraySpec] = {
    IMAGES: ArraySpec("[N, H, W, 3]", "uint8", "RGB pixels of each scene, 0..255"),
    MASKS: ArraySpec("[N, H, W]", "uint8", "the object each pixel shows: 0 background, "
                     "1..num_objects the objects, each one visible"),
    NUM_OBJECTS: ArraySpec("[N]", "int8", "objects in each scene, 1..K"),
}
"""Array name -> its shape, dtype and meaning; N scenes of H x W pixels, at most K objects."""

DOC_SECTIONS = (DocSection("""\
## Scene file

Synthetic scenes for object-centric (slot attention) training: one NPZ, scene `i` is row `i`
of every array. Read by `uncollapse.data.scenes.contract.load_scenes`, written by
`uncollapse build scenes` (`save_scenes`), checked by `uncollapse validate scenes`, served by
`uncollapse.data.scenes.dataset.SceneDataset` (images as float [3, H, W] in [0, 1]).

- Mask labels of scene `i` are exactly `0..num_objects[i]`: no label above `num_objects[i]`,
  and every object `1..num_objects[i]` keeps at least `--min-visible` pixels (default 4), so a
  slot can find it.
- `num_objects` is at least 1.
""", SCENE_ARRAYS),)
"""What docs/data-contracts.md shows of the scene family."""


@dataclass
class SceneSet:
    """Scenes in the scene file layout plus how often the visibility rule had to step in."""

    images: np.ndarray       # [N, H, W, 3] uint8
    masks: np.ndarray        # [N, H, W] uint8, 0 background, 1..num_objects
    num_objects: np.ndarray  # [N] int8
    redrawn: int = 0         # scenes drawn again because an object was hidden
    reduced: int = 0         # scenes whose hidden objects were removed after REDRAW_ROUNDS

    def __len__(self) -> int:
        return len(self.num_objects)


def save_scenes(scenes: SceneSet, path: str | Path, *, compress: bool = True) -> None:
    """Write ``scenes`` as an NPZ of plain arrays (loadable with ``allow_pickle=False``)."""
    with atomic_path(path, suffix=".npz") as tmp:
        writer = np.savez_compressed if compress else np.savez
        writer(tmp, **{IMAGES: scenes.images, MASKS: scenes.masks,
                       NUM_OBJECTS: scenes.num_objects})


def load_scenes(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a scene NPZ, read with ``allow_pickle=False``; keys are not checked here."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a directory; give the scene .npz file")
    check_input_file(path, "a scene NPZ", "write it with `uncollapse build scenes`",
                     require=ZIP)
    check_declared_sizes(path)  # scene files are deflated: bound what they expand to
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise InputError(path, f"holds arrays that need pickle ({exc}); scene files must be "
                         "plain numeric arrays: images, masks, num_objects") from exc
    except Exception as exc:  # zipfile.BadZipFile, OSError, a damaged header, ...
        raise InputError(path, f"not a readable NPZ file ({why(exc)}); write it with "
                               "`uncollapse build scenes` (numpy.savez of images, masks, "
                               "num_objects)") from exc


# Array names, for code that reads one array (``arrays[MASKS]``).
IMAGES = "images"
MASKS = "masks"
NUM_OBJECTS = "num_objects"
