"""The slot-attention recipe (``uncollapse train slots``) on scene files: ``config`` (its
options), ``model`` (the autoencoder and slot initialisations), ``recipe`` (data, loss,
monitors, evaluation), ``plots`` (the grid of images and masks of ``uncollapse report``)."""

__all__: list[str] = []
